"""The sync pipe between a supervised service and the sandbox (harness/system/supervisor.py): the
service's end is handed to the supervisor, the sandbox's end to bwrap (--sync-fd); the harness
closes its copies once each is handed over, so the kernel's closing of the last one is the
signal. Each end is closed once, whatever happens."""
import os
import select
import threading
from typing import Optional


class SyncPipe:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._lock = threading.Lock()
        self._open = {self.read_fd, self.write_fd}

    def ready(self) -> bool:
        """The supervisor wrote its byte: its server's socket accepts connections."""
        with self._lock:
            if self.read_fd not in self._open:
                return False
            readable, _, _ = select.select([self.read_fd], [], [], 0)
            return bool(readable) and os.read(self.read_fd, 1) == b"R"

    def close(self, fd: Optional[int]) -> None:
        with self._lock:
            if fd in self._open:
                self._open.discard(fd)
                os.close(fd)

    def close_all(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            self.close(fd)
