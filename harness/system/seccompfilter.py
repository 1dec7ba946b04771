"""The confined server's seccomp filter: Flatpak's syscall blocklist, and sockets of AF_UNIX only.

The filter is compiled to BPF (what bwrap's --seccomp FD loads) by libseccomp's own Python
binding (Debian's python3-seccomp, nixpkgs' python3Packages.seccomp), run as a child of the
toolset's python3, so that the harness's own environment needs no binding. A python without it
is a filter not made, with the reason, never a silent filter-less "confined" server."""
import errno
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple
from ..core.errors import ToolMissing
from . import process

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
AF_UNIX = 1
INSTALL = "Debian: apt-get install python3-seccomp; Nix: python3Packages.seccomp"


@dataclass(frozen=True)
class Rule:
    """A syscall the filter refuses with `error`, where its argument matches `arg` (or always)."""

    syscall: str
    error: int
    # (index, libseccomp operator name, datum a, datum b)
    arg: Optional[Tuple[int, str, int, int]] = None


# Flatpak's blocklist (common/flatpak-run.c, setup_seccomp: its base list and the one it drops in
# --devel mode), which a GPU server needs none of; and, where Flatpak allows the network's
# families, AF_UNIX only: a vtest server serves one unix socket.
RULES: Tuple[Rule, ...] = (
    *(Rule(name, errno.EPERM) for name in (
        "syslog", "uselib", "acct", "modify_ldt", "quotactl", "add_key", "keyctl", "request_key",
        "move_pages", "mbind", "get_mempolicy", "set_mempolicy", "migrate_pages", "unshare",
                                           "setns",
        "mount", "umount", "umount2", "pivot_root", "chroot", "perf_event_open", "ptrace")),
    Rule("clone", errno.EPERM, (0, "MASKED_EQ", CLONE_NEWUSER, CLONE_NEWUSER)),
    Rule("ioctl", errno.EPERM, (1, "MASKED_EQ", 0xFFFFFFFF, TIOCSTI)),
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc fall back to clone.
    *(Rule(name, errno.ENOSYS) for name in (
        "clone3", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
                                            "mount_setattr")),
    Rule("socket", errno.EAFNOSUPPORT, (0, "NE", AF_UNIX, 0)),
)

# Run by the toolset's python3: the rules as JSON, the BPF file to write; prints what it added.
COMPILER = r"""
import json, sys
import seccomp
rules, out = json.loads(sys.argv[1]), sys.argv[2]
bpf = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
added, absent = [], []
for name, error, arg in rules:
    conditions = [seccomp.Arg(arg[0], getattr(seccomp, arg[1]), arg[2], arg[3])] if arg else []
    try:
        bpf.add_rule(seccomp.ERRNO(error), name, *conditions)
        added.append(name)
    except (ValueError, RuntimeError):
        absent.append(name)  # a syscall this architecture has not
with open(out, "wb") as handle:
    bpf.export_bpf(handle)
print(json.dumps({"added": added, "absent": absent}))
"""


class SeccompUnavailable(ToolMissing):
    """No filter could be made here; the message says why and what to install."""


@dataclass(frozen=True)
class Filter:
    """A compiled filter: its BPF file and what it holds."""

    bpf: Path
    added: Tuple[str, ...]
    absent: Tuple[str, ...]

    def describe(self) -> str:
        return (f"seccomp: {len(self.added)} rules (Flatpak's blocklist, sockets AF_UNIX only)"
                + (f"; not on this architecture: {', '.join(self.absent)}" if self.absent else ""))


def compile_filter(python: str, out: Path, rules: Tuple[Rule, ...] = RULES) -> Filter:
    """`rules` compiled to BPF at `out` by `python`'s libseccomp binding."""
    encoded = json.dumps([[rule.syscall, rule.error, list(rule.arg) if rule.arg else None]
                          for rule in rules])
    try:
        done = process.run_program([python, "-c", COMPILER, encoded, str(out)], capture_output=True,
                                   text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise SeccompUnavailable(f"no seccomp filter: {python} could not run "
                                 f"({exc.strerror or exc})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'seccomp'" in last:
            raise SeccompUnavailable(f"no seccomp filter: {python} has no libseccomp binding "
                                     f"({INSTALL})")
        raise SeccompUnavailable(f"no seccomp filter: compiling it failed: {last}")
    said = json.loads(done.stdout.strip().splitlines()[-1])
    return Filter(out, tuple(said["added"]), tuple(said["absent"]))
