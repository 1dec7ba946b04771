"""exec's stdin streamed into a VM guest as it comes, over a virtio-serial port.

QEMU's `virtserialport` is given a socket chardev that connects, as QEMU starts, to a unix socket
the harness listens on; the guest's init finds the port by its name and makes it the command's
stdin. The harness writes each chunk of its own stdin into the socket as it arrives (from a pipe,
a terminal or a file), and when its stdin ends it shuts down its sending side: QEMU reads that end
after the last byte, tells the guest the host's side closed, and the guest's reads of the port
then end (EOF) once what was sent has been read. Before the host's side of a port is connected a
guest's read of it ends at once too, so the host's first byte (HELLO, which init reads and drops)
says it is connected; nothing else is added to the stream. Every architecture the VM paths boot has
PCI on its machine, so the port is a virtio-serial-pci device on each (no second serial port
needed).
"""
import os
import select
import socket
import sys
import threading
from typing import Optional

from . import modules as modules_mod
from ...core.errors import ToolMissing

PORT_NAME = "gpu-harness.stdin"
# init streams the command's stdin from the port named so
KERNEL_ARG = f"gpu_harness.stdin={PORT_NAME}"
MODULES = ("virtio_console",)
HELLO = b"H"
CHUNK = 65536
NO_SOURCE = -1  # a harness started with its stdin closed: the guest's ends at once


def harness_stdin() -> int:
    """The harness's own stdin, or NO_SOURCE where it started without one (fd 0 may be another
    file of its own by now)."""
    return NO_SOURCE if sys.__stdin__ is None else 0


def unavailable(modules_dir: str) -> Optional[str]:
    """Why a guest of this kernel cannot read a streamed stdin, or None."""
    try:
        modules_mod.resolve_for_kernel(modules_dir, MODULES)
    except (ToolMissing, OSError) as exc:
        return (f"the guest kernel ({modules_dir}) has no virtio_console, so the command's stdin "
                "cannot be "
                f"streamed into the guest ({exc})")
    return None


class StdinStream:
    """The host's end: listens on `path` (before QEMU starts), then sends HELLO and every byte read
    from `source` as it comes, and half-closes at the source's end. stop() ends it wherever it
    is."""

    def __init__(self, path: str, source: int):
        self.path, self.source = path, source
        self.sent = 0  # bytes of the source sent so far
        self.ended = False  # the source ended (QEMU is told next)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(path)
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="guest stdin", daemon=True)
        self._thread.start()

    def _ready(self, fd: int, events: int) -> bool:
        """Wait until `fd` is ready for `events` (or hung up, or invalid); False once stop() is
        called."""
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        poller.register(fd, events)
        ready = dict(poller.poll())
        return self._wake_read not in ready

    def _run(self) -> None:
        try:
            if not self._ready(self._listener.fileno(), select.POLLIN):
                return
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            connection.setblocking(False)
            try:
                if not self._send(connection, HELLO):
                    return
                while True:
                    data = self._read()
                    if data is None:
                        return
                    if not data:
                        break
                    if not self._send(connection, data):
                        return
                    self.sent += len(data)
                self.ended = True
                connection.shutdown(socket.SHUT_WR)
                # Held open until QEMU has read the end and closed its side (or the launch ends):
                # a connection closed at once would hang up, and QEMU drops one that hangs up
                # with whatever it had not yet read.
                while self._ready(connection.fileno(), select.POLLIN):
                    try:
                        if not connection.recv(CHUNK):
                            return
                    except BlockingIOError:
                        continue
            except OSError:  # QEMU went away: nothing more reaches the guest
                return

    def _read(self) -> Optional[bytes]:
        """The next chunk of the source as it comes; b"" at its end (or if it cannot be read);
        None once stop() is called."""
        while self.source != NO_SOURCE:
            if not self._ready(self.source, select.POLLIN):
                return None
            try:
                return os.read(self.source, CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return b""
        return b""

    def _send(self, connection: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                view = view[connection.send(view, socket.MSG_NOSIGNAL):]
            except BlockingIOError:
                if not self._ready(connection.fileno(), select.POLLOUT):
                    return False
        return True

    def stop(self) -> None:
        """End the stream (safe to call twice); the source stays open."""
        if self._wake_write < 0:
            return
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=10)
        self._listener.close()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        self._wake_read = self._wake_write = -1
        try:
            os.unlink(self.path)
        except OSError:
            pass
