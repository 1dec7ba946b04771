"""Faults the kernel reported for named programs while something ran: their lines in /dev/kmsg.

A program with no handler of its own that faults (virgl_render_server: Venus's decoder) leaves
no line in any log of ours; the kernel's log has one (`virgl_render_se[1234]: segfault at 0 ip
... error 6 in ...`, the name cut to 15 characters). A watch seeks to the log's end when it
starts and reads what came after when it stops, so only faults during the watch count (of any
process by that name on this machine: the kernel's log is the machine's)."""
import errno
import os
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

KMSG = "/dev/kmsg"
COMM_LEN = 15  # TASK_COMM_LEN less its NUL: the kernel names a process by that much of its name
# The unhandled-fault lines: x86's page fault (show_signal_msg), general protection and traps,
# arm64's and riscv64's unhandled signal lines.
FAULT = re.compile(r"^(?P<comm>[^\[\]]{1,15})\[(?P<pid>\d+)\]: (?P<what>segfault at|general "
                   r"protection fault|"
                   r"trap \w+|unhandled signal \d+|potentially unexpected fatal signal)")


@dataclass(frozen=True)
class Fault:
    program: str  # the name as the kernel has it (cut to 15 characters)
    pid: int
    line: str


def message(record: str) -> str:
    """A /dev/kmsg record's text: what follows `prefix;` on its first line."""
    first = record.split("\n", 1)[0]
    return first.split(";", 1)[1] if ";" in first else first


def faults(records: Iterable[str], programs: Sequence[str]) -> List[Fault]:
    """The fault lines among `records` of a program named in `programs` (by path or name)."""
    names = {os.path.basename(program)[:COMM_LEN] for program in programs}
    found = []
    for record in records:
        text = message(record)
        matched = FAULT.match(text)
        if matched and matched["comm"] in names:
            found.append(Fault(matched["comm"], int(matched["pid"]), text.strip()))
    return found


class Watch:
    """The kernel's log from now until stop(); `unreadable` says why there is none to read."""

    def __init__(self, path: str = KMSG) -> None:
        self.records: List[str] = []
        self.unreadable: Optional[str] = None
        self.fd: Optional[int] = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            self.close()
            self.unreadable = (f"the kernel's log is not readable here ({path}: "
                               f"{exc.strerror or exc})")

    def stop(self) -> List[str]:
        """Every record logged since the watch began (read once; later calls give the same)."""
        while self.fd is not None:
            try:
                self.records.append(os.read(self.fd, 8192).decode("utf-8", "replace"))
            except BlockingIOError:
                break
            except OSError as exc:
                # EPIPE: records overwritten before we read them; go on
                if exc.errno != errno.EPIPE:
                    self.unreadable = f"reading the kernel's log failed: {exc.strerror or exc}"
                    break
        self.close()
        return self.records

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def faults(self, programs: Sequence[str]) -> List[Fault]:
        return faults(self.stop(), programs)
