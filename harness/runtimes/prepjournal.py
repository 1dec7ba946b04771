"""Where preparation time goes across processes: each slow step a process does before a
scenario can run (a runtime built, an image written, a Flatpak export, an initramfs, a kernel
unpacked, or a wait for another process building one), as one JSON line in the file that
GPU_HARNESS_PREPARATION_LOG names; nothing where it names none. The test suite reads it back to
say, at its end, which steps its time went to."""
import json
import os
import time
from contextlib import contextmanager
from typing import Iterator, List

JOURNAL_VAR = "GPU_HARNESS_PREPARATION_LOG"


def note(step: str, what: str, seconds: float, how: str = "built") -> None:
    """One step done: `how` is "built" (this process did it) or "waited" (for another one's)."""
    path = os.environ.get(JOURNAL_VAR)
    if not path:
        return
    line = json.dumps({"step": step, "what": what, "seconds": round(seconds, 2), "how": how,
                       "pid": os.getpid()})
    try:  # a short line in append mode: lines of parallel processes do not interleave
        with open(path, "a") as journal:
            journal.write(line + "\n")
    except OSError:
        pass


@contextmanager
def timed(step: str, what: str, how: str = "built") -> Iterator[None]:
    """Note the step with the seconds the block took (also when it raised: the time was spent)."""
    started = time.monotonic()
    try:
        yield
    finally:
        note(step, what, time.monotonic() - started, how)


def read(path: str) -> List[dict]:
    """The journal's steps, slowest first (lines that are not whole are left out)."""
    steps = []
    try:
        with open(path) as journal:
            for line in journal:
                try:
                    steps.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        return []
    return sorted(steps, key=lambda step: -float(step.get("seconds", 0)))
