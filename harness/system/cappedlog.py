"""A log a process writes without bound (a client looping on a dead socket): written as it
comes up to a size, then only its last part kept, and at its end the cut said and that part
appended, so the file holds the head and the tail and never more than both."""
import collections
import os
import select
import threading
from typing import Deque, Optional

# written as it comes: a log under this is the whole log, readable while it grows
HEAD_BYTES = 4 * 2**20
TAIL_BYTES = 1 * 2**20  # beyond the head, the last this many bytes are kept for the end
CHUNK = 65536
# after its writers ended: a descendant that kept the pipe open is not waited for longer
JOIN_S = 5.0


class CappedLog:
    """A pipe whose write end a process gets as its stdout/stderr, read by a thread into `path`."""

    def __init__(self, path: str, head_bytes: int = HEAD_BYTES, tail_bytes: int = TAIL_BYTES):
        self.path = path
        self.head_bytes, self.tail_bytes = head_bytes, tail_bytes
        self.read_fd, self.write_fd = os.pipe()
        self.written = 0
        self.cut = 0
        self._tail: Deque[bytes] = collections.deque()
        self._tail_size = 0
        self._file = open(path, "wb")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"log {os.path.basename(path)}",
                                        daemon=True)
        self._thread.start()

    def started(self) -> None:
        """The process has its copy of the write end: ours goes, so its exit ends the log."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(self.read_fd, CHUNK)
            if not data:
                break
            self._take(data)

    def _take(self, data: bytes) -> None:
        room = max(0, self.head_bytes - self.written)
        if room:
            self._file.write(data[:room])
            self._file.flush()
            self.written += min(room, len(data))
            data = data[room:]
        if data:
            self._tail.append(data)
            self._tail_size += len(data)
            while self._tail_size - len(self._tail[0]) >= self.tail_bytes:
                self.cut += len(self._tail[0])
                self._tail_size -= len(self._tail.popleft())

    def close(self, timeout_s: Optional[float] = JOIN_S) -> None:
        """Wait for the writers' end (at most `timeout_s`), then write the cut and the tail."""
        self.started()  # a process that never started holds no write end: ours goes now
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join()
        os.close(self.read_fd)  # a writer still holding the pipe gets EPIPE from now on
        tail = b"".join(self._tail)
        extra = max(0, len(tail) - self.tail_bytes)  # the oldest chunk held may reach past the tail
        self.cut += extra
        if self.cut:
            self._file.write(f"\n[gpu-harness: {self.cut} bytes of this log cut here; its first "
                             f"{self.head_bytes} "
                             f"and last {self.tail_bytes} bytes are kept]\n".encode())
        self._file.write(tail[extra:])
        self._file.close()
