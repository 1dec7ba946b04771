"""Ctrl-C and SIGTERM: the first one during a run asks every running scenario to stop now (they
end within seconds as interrupted, and the reports are written for what finished); a second one
exits at once (the reaper cleans up). Outside a run, the first one exits by unwinding."""
import contextlib
import os
import signal
import threading
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: Optional[int] = None
        self._graceful = 0  # runs in progress that stop scenarios on the first signal

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def reason(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}" if self.signum else ""

    def why_stop(self) -> Optional[str]:
        """For watch loops: the reason to stop the workload now, or None."""
        return self.reason() if self.requested else None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    def request(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def handle(self, signum: int, frame: object = None) -> None:
        if self.requested:
            os._exit(128 + signum)  # the second signal: at once; the reaper's pipe closes with us
        self.request(signum)
        if not self._graceful:
            raise SystemExit(128 + signum)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                signal.signal(signum, self.handle)

    @contextlib.contextmanager
    def graceful(self) -> Iterator[None]:
        """While inside, the first signal stops scenarios instead of raising."""
        self._graceful += 1
        try:
            yield
        finally:
            self._graceful -= 1

    def reset(self) -> None:
        self._event.clear()
        self.signum = None


INTERRUPTS = Interrupts()

