"""A running QEMU machine driven over QMP with the qemu.qmp library.

The harness listens on the QMP socket before QEMU starts and QEMU connects to it, so no event
is missed. A private event loop runs in a thread; the methods here are synchronous, for the
launcher and for tests (see vmtests' `machine` fixture)."""
import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from qemu.qmp import QMPClient

from ..process import Child, Exit

logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
WATCHED_EVENTS = ("SHUTDOWN", "GUEST_PANICKED", "STOP", "RESET", "POWERDOWN")


class MachineError(Exception):
    """QEMU could not be started or controlled; the message says why."""


class Machine:
    def __init__(self, argv: List[str], env: Dict[str, str], qmp_socket: str, log_path: str, serial_log: str,
                 connect_timeout_s: float = 20.0):
        self.argv, self.env = argv, env
        self.qmp_socket, self.log_path, self.serial_log = qmp_socket, log_path, serial_log
        self.connect_timeout_s = connect_timeout_s
        self.events: List[dict] = []
        self.peak_rss_kb = 0
        self.child: Optional[Child] = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._qmp: Optional[QMPClient] = None
        self._event_task = None

    def _call(self, coro, timeout: Optional[float] = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> float:
        """Start QEMU and wait for its QMP connection; returns the seconds it took."""
        started = time.monotonic()
        self._thread.start()
        self._qmp = QMPClient("gpu-harness")
        self._call(self._qmp.start_server(self.qmp_socket))
        self.child = Child(self.argv, self.env, self.log_path)
        accept = asyncio.run_coroutine_threadsafe(self._qmp.accept(), self._loop)
        while not accept.done():
            if self.child.poll() is not None:
                accept.cancel()
                raise MachineError(f"QEMU exited before QMP connected ({self.child.stop().describe()})")
            if time.monotonic() - started > self.connect_timeout_s:
                accept.cancel()
                raise MachineError(f"QEMU did not connect to QMP within {self.connect_timeout_s:g} s")
            time.sleep(0.01)
        accept.result()
        self._event_task = self._call(self._spawn_event_task())
        return time.monotonic() - started

    async def _spawn_event_task(self):
        return asyncio.ensure_future(self._collect_events())

    async def _collect_events(self):
        async for event in self._qmp.events:
            if event["event"] in WATCHED_EVENTS:
                self.events.append({"event": event["event"], "data": dict(event.get("data", {}))})

    def qmp(self, command: str, **arguments):
        return self._call(self._qmp.execute(command, arguments or None), timeout=30)

    def status(self) -> str:
        return self.qmp("query-status")["status"]

    def screendump(self, path: str) -> None:
        self.qmp("screendump", filename=str(path))

    def event(self, name: str) -> Optional[dict]:
        return next((e for e in self.events if e["event"] == name), None)

    def console(self) -> str:
        try:
            return Path(self.serial_log).read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def wait_for_console(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.console():
                return True
            if not self.running():
                return text in self.console()
            time.sleep(0.02)
        return False

    def quit(self) -> None:
        if self.running() and self._qmp is not None:
            try:
                self.qmp("quit")
            except Exception:  # QEMU may already be going away; stop() below kills it anyway
                pass

    def stop(self, grace_s: float = 2.0) -> Optional[Exit]:
        """Quit over QMP, kill what is left, close QMP. Safe to call twice."""
        result = None
        if self.child is not None:
            self.quit()
            deadline = time.monotonic() + grace_s
            while self.child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            result = self.child.stop(grace_s=0.5)
        if self._thread.is_alive():
            try:
                self._call(self._close_qmp(), timeout=5)
            except Exception:  # a QMP that is already gone has nothing to close
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
        return result

    async def _close_qmp(self):
        if self._event_task is not None:
            self._event_task.cancel()
        if self._qmp is not None:
            await self._qmp.disconnect()
            self._qmp = None
