"""What a test looks for after a run: processes that name a folder on their command line or run
in it (an observation only; the harness itself finds its processes by pid, group, cgroup or
mark)."""
import os
from typing import List


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def processes_in(folder: str) -> List[int]:
    """Processes that name `folder` on their command line or have their root or working folder in
    it."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if folder.encode() in handle.read():
                    found.append(int(pid))
                    continue
            for link in ("root", "cwd"):
                if inside(os.readlink(f"/proc/{pid}/{link}"), folder):
                    found.append(int(pid))
                    break
        except OSError:
            continue
    return found
