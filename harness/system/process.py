"""Child processes the harness launches: each in its own process group, known to the reaper,
killed as a group, measured (peak RSS) before it goes."""
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import IO, Callable, Dict, Iterator, List, Optional, Tuple, Union, cast

from ..core import log
from . import reaper
from .cappedlog import CappedLog
from .retry import poll

LOG = log.get(__name__)


@dataclass
class Exit:
    code: Optional[int]  # exit status, or None when killed by a signal
    signal: Optional[int]
    timed_out: bool = False
    stopped_because: str = ""  # why the harness ended it early, if it did

    def describe(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.signal:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exit code {self.code}"


# (pid, start time): a pid the kernel has given to another process is not it
Process = Tuple[int, str]


def stat_fields(pid: int) -> Optional[List[str]]:
    """/proc/PID/stat after the command name: state, ppid, ... (field 22 of stat is index 19)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> List[Process]:
    """Every process below `pid` now, from each process's parent in /proc."""
    parents: Dict[int, List[Process]] = {}
    for entry in os.listdir("/proc"):
        fields = stat_fields(int(entry)) if entry.isdigit() else None
        if fields and len(fields) > 19:
            parents.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    found: List[Process] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += [child for child, _ in children]
    return found


def running(process: Process) -> bool:
    fields = stat_fields(process[0])
    return fields is not None and len(fields) > 19 and fields[19] == process[1] and fields[0] != "Z"


def end_all(processes: List[Process], timeout_s: float = 5.0) -> None:
    """SIGKILL each of `processes` still running and wait until none runs (zombies are the
    kernel's and their parents' to reap)."""
    for process in processes:
        if running(process):
            try:
                os.kill(process[0], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    poll(lambda: not any(running(process) for process in processes), timeout_s, 0.02)


def marked_processes(mark: str) -> List[Process]:
    """Processes that carry `mark` in their environment (reaper.carries): what a process we
    started left behind, also outside its group and tree (a sandbox's own session, a fork
    orphaned as its parent was killed)."""
    found = ((pid, stat_fields(pid)) for pid in reaper.marked([mark]))
    return [(pid, fields[19]) for pid, fields in found if fields and len(fields) > 19]


class Child:
    """A process we start, in its own group, with a mark of its own in its environment
    (reaper.MARK_VAR; `mark`, else a new one): stopping it ends its group, its tree and every
    process that carries its mark, and nothing else."""

    def __init__(self, argv: List[str], env: Dict[str, str], log_path: str,
                 stdout_path: Optional[str] = None, inherit_stdio: bool = False,
                 cwd: Optional[str] = None,
                 pass_fds: Tuple[int, ...] = (), mark: Optional[str] = None, capped: bool = False):
        """`capped`: its log is a CappedLog (head and tail kept), for a process that may write
        without end."""
        self.argv = argv
        self.mark = mark or reaper.new_mark()
        env = {**env, reaper.MARK_VAR: reaper.mark_value(self.mark)}
        self.log_path = log_path
        self._capped = CappedLog(log_path) if capped and not inherit_stdio else None
        self._log: Optional[IO[bytes]] = None if self._capped else open(log_path, "wb")
        self._out = open(stdout_path, "wb") if stdout_path else None
        log: Union[int, IO[bytes]] = self._capped.write_fd if self._capped else cast(IO[bytes],
                                                                                     self._log)
        stdout = None if inherit_stdio else (self._out or log)
        stderr = None if inherit_stdio else log
        try:
            self.proc = subprocess.Popen(argv, env=env, stdin=None if inherit_stdio
                                         else subprocess.DEVNULL,
                                         stdout=stdout, stderr=stderr, start_new_session=True,
                                         cwd=cwd,
                                         pass_fds=pass_fds)
        except BaseException:
            self._close_logs()
            raise
        if self._capped:
            self._capped.started()
        LOG.debug("started pid %d (group, mark %s): %s; log %s", self.proc.pid, self.mark,
                  shown_argv(argv), log_path)
        self.pgid = self.proc.pid
        reaper.get().track_group(self.pgid)
        self.started = time.monotonic()
        self.result: Optional[Exit] = None  # set once the child is reaped

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def group_members(self) -> List[int]:
        return [pid for pid, stat in process_stats() if stat.pgid == self.pgid]

    def group_processes(self) -> List[Process]:
        """The group's members now, each with its start time."""
        members = ((pid, stat_fields(pid)) for pid in self.group_members())
        return [(pid, fields[19]) for pid, fields in members if fields and len(fields) > 19]

    def peak_rss_kb(self) -> int:
        """Largest VmHWM among the group's live processes (the server forks one per client)."""
        peak = 0
        for pid in self.group_members():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                continue
        return peak

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def end_group(self) -> None:
        """SIGKILL the group and wait until none of its members runs (one killed is not gone at
        once: a caller that looks at once would find it exiting)."""
        members = self.group_processes() + marked_processes(self.mark)
        self.kill_group(signal.SIGKILL)
        end_all(members)

    def stop(self, grace_s: float = 1.0, leader_first: bool = False) -> Exit:
        """SIGTERM the group (only its leader with `leader_first`: a server that ends its own
        clients and calls one that died of the signal first a failure, as weston does), SIGKILL
        what is left after the grace period, reap, forget. The
        child's descendants that left its group (a sandbox's own session and pid namespace) are
        gone too before this returns: the kernel ends them when the sandbox's init dies, a
        moment later, and a caller that looks at once must not find them."""
        if self.result is not None:
            return self.result
        family = descendants(self.proc.pid)
        if self.proc.poll() is None:
            if leader_first:
                self.proc.terminate()
            else:
                self.kill_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # And what joined the group since (a server's process for a client it accepted late, such
        # as the readiness check's): killed with the group, waited for like the rest.
        family += self.group_processes() + marked_processes(self.mark)
        self.kill_group(signal.SIGKILL)
        self.proc.wait()
        end_all(family + marked_processes(self.mark))
        return self._finish(exit_of(self.proc.returncode))

    def wait(self, timeout_s: float, watch: Callable[[], Optional[str]] = lambda: None,
             watch_grace_s: float = 2.0, abort: Callable[[], Optional[str]] = lambda: None) -> Exit:
        """Wait for exit; kill the group on timeout, `watch_grace_s` after `watch` reports a
        problem (a service it depends on died) if the process has not exited by itself, or at
        once when `abort` gives a reason (the run was interrupted)."""
        deadline = self.started + timeout_s
        problem, problem_at = "", None
        while True:
            try:
                self.proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if not problem:
                problem = watch() or ""
                problem_at = now if problem else None
            stop_now = abort()
            if stop_now:
                problem, problem_at = stop_now, now - watch_grace_s
            if now >= deadline or (problem_at and now - problem_at >= watch_grace_s):
                self.end_group()
                self.proc.wait()
                result = exit_of(self.proc.returncode)
                result.timed_out = now >= deadline and not problem
                result.stopped_because = problem
                return self._finish(result)
        # The leader is gone; anything it left in its group goes too, and is gone on return.
        self.end_group()
        result = exit_of(self.proc.returncode)
        result.stopped_because = problem
        return self._finish(result)

    def _finish(self, result: Exit) -> Exit:
        self.result = result
        LOG.debug("pid %d (%s) ended after %.2f s: %s%s", self.proc.pid,
                  os.path.basename(self.argv[0]),
                  time.monotonic() - self.started, result.describe(),
                  f" (stopped: {result.stopped_because})" if result.stopped_because else "")
        reaper.get().untrack_group(self.pgid)
        self._close_logs()
        return result

    def _close_logs(self) -> None:
        for handle in (self._log, self._out):
            if handle:
                handle.close()
        if self._capped:
            self._capped.close()


def exit_of(returncode: int) -> Exit:
    if returncode < 0:
        return Exit(None, -returncode)
    return Exit(returncode, None)


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()[-8192:]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans of what we launch (a server's forked children, bwrap's inner init) are reparented
    to us instead of PID 1, which may never reap them; reap_children() collects them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class ProcStat:
    ppid: int
    pgid: int


def process_stats() -> Iterator[Tuple[int, ProcStat]]:
    """(pid, parent and group) of every process we can read in /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            yield int(entry), ProcStat(ppid=int(fields[1]), pgid=int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue


def children() -> List[int]:
    """Pids whose parent is this process (our own and adopted orphans)."""
    me = os.getpid()
    return [pid for pid, stat in process_stats() if stat.ppid == me]


def reap_children(timeout_s: float = 5.0) -> None:
    """At exit, when nothing of ours is running any more: kill what is left of our tree and
    collect every child, so none is left as a zombie."""
    for pid in children():
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    poll(reaped_all, timeout_s, interval_s=0.01)


def reaped_all() -> bool:
    """Collect every child that has exited; True once none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def shown_argv(argv) -> str:
    """A command line as the log shows it: each argument quoted as a shell would take it."""
    import shlex

    return " ".join(shlex.quote(str(arg)) for arg in argv)


def run_program(argv, **kwargs) -> "subprocess.CompletedProcess":
    """subprocess.run of a short-lived helper (a version query, ldconfig, podman rm, cpio), with
    its argv, exit and seconds in the log."""
    started = time.monotonic()
    LOG.debug("running %s", shown_argv(argv))
    try:
        done = subprocess.run(argv, **kwargs)
    except (OSError, subprocess.SubprocessError) as exc:
        LOG.debug("%s: %s after %.2f s", os.path.basename(str(argv[0])), type(exc).__name__,
                  time.monotonic() - started)
        raise
    LOG.debug("%s exited %s after %.2f s", os.path.basename(str(argv[0])), done.returncode,
              time.monotonic() - started)
    return done


def start_program(argv, **kwargs) -> "subprocess.Popen":
    """subprocess.Popen of a helper the caller waits for itself, with its argv in the log."""
    process = subprocess.Popen(argv, **kwargs)
    LOG.debug("started pid %d: %s", process.pid, shown_argv(argv))
    return process


def run_tracked(argv: List[str], timeout_s: float,
                cwd: Optional[str] = None) -> "subprocess.CompletedProcess[bytes]":
    """subprocess.run for a short-lived helper (nix-instantiate, git): its own process group,
    known to the reaper from the moment it exists, killed with SIGKILL on timeout (nix-instantiate
    ignores SIGTERM while it evaluates). Raises OSError if it cannot start, TimeoutExpired."""
    guardian = reaper.get()  # up before the helper starts, so it is registered at once
    process = start_program(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True, cwd=cwd)
    guardian.track_group(process.pid)
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        finally:
            end_group(process)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def end_group(process: "subprocess.Popen") -> None:
    """A helper started in its own session (start_new_session=True, tracked by the reaper): its
    whole process group killed if it still runs, waited for, and forgotten by the reaper."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    reaper.get().untrack_group(process.pid)
