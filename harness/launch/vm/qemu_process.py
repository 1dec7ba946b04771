"""A running QEMU process driven over QMP with the qemu.qmp library.

The harness listens on the QMP socket before QEMU starts and QEMU connects to it, so no event
is missed. A private event loop runs in a thread; the methods here are synchronous, for the
VM family and for tests (see vmtests' `machine` fixture). Events are read through qemu.qmp's
own listeners: one records the events of interest, and each wait registers its own."""
import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from qemu.qmp import EventListener, QMPClient

from ...system.process import Child, Exit
from ...system.retry import poll
from ...core import log
from ...core.errors import ComponentError

LOG = log.get(__name__)
WATCHED_EVENTS = ("SHUTDOWN", "GUEST_PANICKED", "STOP", "RESET", "POWERDOWN")


def event_record(event: Any) -> dict:
    data = event.get("data")
    return {"event": event["event"], "data": dict(data) if isinstance(data, dict) else {}}


class QemuError(ComponentError):
    """QEMU could not be started or controlled; the message says why."""


class QemuProcess:
    def __init__(self, argv: List[str], env: Dict[str, str], qmp_socket: str, log_path: str,
                 serial_log: str,
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
        self._recorder = EventListener(WATCHED_EVENTS)
        self._record_task: Optional[asyncio.Future] = None

    def _call(self, coro, timeout: Optional[float] = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> float:
        """Start QEMU and wait for its QMP connection; returns the seconds it took."""
        started = time.monotonic()
        self._thread.start()
        self._qmp = QMPClient("gpu-harness")
        self._qmp.register_listener(self._recorder)
        self._call(self._qmp.start_server(self.qmp_socket))
        self.child = Child(self.argv, self.env, self.log_path)
        accept = asyncio.run_coroutine_threadsafe(self._qmp.accept(), self._loop)
        child = self.child
        poll(accept.done, self.connect_timeout_s, interval_s=0.01,
             give_up=lambda: child.poll() is not None)
        if not accept.done():
            accept.cancel()
            if child.poll() is not None:
                raise QemuError(f"QEMU exited before QMP connected ({child.stop().describe()})")
            raise QemuError(f"QEMU did not connect to QMP within {self.connect_timeout_s:g} s")
        accept.result()
        self._record_task = self._call(self._spawn(self._record_events()))
        LOG.debug("QEMU pid %d connected to QMP %s after %.2f s", child.pid, self.qmp_socket,
                  time.monotonic() - started)
        return time.monotonic() - started

    @staticmethod
    async def _spawn(coro) -> asyncio.Future:
        return asyncio.ensure_future(coro)

    async def _record_events(self) -> None:
        async for event in self._recorder:
            self.events.append(event_record(event))
            LOG.debug("QMP event %s %s", self.events[-1]["event"], self.events[-1]["data"] or "")

    def qmp(self, command: str, **arguments):
        if self._qmp is None:
            raise QemuError("QMP is not connected")
        return self._call(self._qmp.execute(command, arguments or None), timeout=30)

    def status(self) -> str:
        return self.qmp("query-status")["status"]

    def screendump(self, path: str) -> None:
        self.qmp("screendump", filename=str(path))

    def event(self, name: str) -> Optional[dict]:
        return next((e for e in self.events if e["event"] == name), None)

    def wait_for_event(self, name: str, timeout_s: float) -> Optional[dict]:
        """The first `name` event, already seen or arriving within `timeout_s`; None if none
        came."""
        if self._qmp is None:
            return self.event(name)
        listener = EventListener(name)
        self._qmp.register_listener(listener)
        try:
            seen = self.event(name)
            if seen is not None:
                return seen
            try:
                event = self._call(asyncio.wait_for(listener.get(), timeout_s),
                                   timeout=timeout_s + 5)
            except (asyncio.TimeoutError, TimeoutError):
                LOG.debug("waited %g s for QMP event %s: none came", timeout_s, name)
                return None
            return event_record(event)
        finally:
            self._qmp.remove_listener(listener)

    def console(self) -> str:
        try:
            return Path(self.serial_log).read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def sample_rss(self) -> None:
        if self.child is not None:
            self.peak_rss_kb = max(self.peak_rss_kb, self.child.peak_rss_kb())

    def wait_for_console(self, text: str, timeout_s: float) -> bool:
        seen = bool(poll(lambda: text in self.console(), timeout_s,
                         give_up=lambda: not self.running()))
        LOG.debug("waited for %r on the console (%g s at most): %s", text, timeout_s, "seen"
                  if seen else "not seen")
        return seen

    def quit(self) -> None:
        if self.running() and self._qmp is not None:
            LOG.debug("QMP quit")
            try:
                self.qmp("quit")
            except Exception:  # QEMU may already be going away; stop() below kills it anyway
                pass

    def stop(self, grace_s: float = 2.0) -> Optional[Exit]:
        """Quit over QMP, kill what is left, close QMP. Safe to call twice."""
        result = None
        if self.child is not None:
            self.sample_rss()
            self.quit()
            child = self.child
            poll(lambda: child.poll() is not None, grace_s, interval_s=0.01)
            result = child.stop(grace_s=0.5)
        if self._thread.is_alive():
            try:
                self._call(self._close_qmp(), timeout=5)
            except Exception:  # a QMP that is already gone has nothing to close
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
        return result

    async def _close_qmp(self) -> None:
        if self._record_task is not None:
            self._record_task.cancel()
        if self._qmp is not None:
            await self._qmp.disconnect()
            self._qmp = None
