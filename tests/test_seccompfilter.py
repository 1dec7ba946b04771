"""The confined server's seccomp filter: compiled by libseccomp's real binding and loaded by real
bwrap, a program under it is refused what the rules say and allowed the rest."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.system import seccompfilter, serverconfine

SYSTEM_PYTHON = "/usr/bin/python3"  # scripts/setup installs python3-seccomp for it


def has_binding(python: str) -> bool:
    return subprocess.run([python, "-c", "import seccomp"], capture_output=True).returncode == 0


needs_binding = pytest.mark.skipif(not has_binding(SYSTEM_PYTHON),
                                   reason=f"{SYSTEM_PYTHON} has no libseccomp binding "
                                          "(scripts/setup installs python3-seccomp)")
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bwrap is not installed (scripts/setup)")

TRY = r"""
import ctypes, errno, socket, sys
def attempt(call):
    try:
        call()
        return "allowed"
    except OSError as exc:
        return errno.errorcode[exc.errno]
def unshare():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
print(attempt(lambda: socket.socket(socket.AF_INET).close()),
      attempt(lambda: socket.socket(socket.AF_UNIX).close()), attempt(unshare),
      attempt(lambda: open("/proc/self/status").read()))
"""


@needs_binding
def test_every_rule_compiles_on_this_architecture(tmp_path):
    made = seccompfilter.compile_filter(SYSTEM_PYTHON, tmp_path / "f.bpf")
    assert set(made.added) == {rule.syscall for rule in seccompfilter.RULES} and not made.absent
    size = made.bpf.stat().st_size
    assert size > 0 and size % 8 == 0, size  # struct sock_filter: 8 bytes an instruction
    assert made.describe().startswith(f"seccomp: {len(seccompfilter.RULES)} rules")


@needs_binding
def test_a_syscall_the_architecture_has_not_is_said_not_a_failure(tmp_path):
    rules = (seccompfilter.Rule("no_such_call_anywhere", errno.EPERM),
             seccompfilter.Rule("keyctl", errno.EPERM))
    made = seccompfilter.compile_filter(SYSTEM_PYTHON, tmp_path / "f.bpf", rules)
    assert made.added == ("keyctl",) and made.absent == ("no_such_call_anywhere",)
    assert "not on this architecture: no_such_call_anywhere" in made.describe()


def test_a_python_without_the_binding_says_what_to_install(tmp_path):
    assert not has_binding(sys.executable)  # the harness's own environment has none, by design
    with pytest.raises(seccompfilter.SeccompUnavailable,
                       match="has no libseccomp binding .*python3-seccomp"):
        seccompfilter.compile_filter(sys.executable, tmp_path / "f.bpf")
    with pytest.raises(seccompfilter.SeccompUnavailable, match="could not run"):
        seccompfilter.compile_filter(str(tmp_path / "nothing"), tmp_path / "f.bpf")


@needs_bwrap
def test_confined_without_a_filter_runs_and_says_why(tmp_path):
    confined = serverconfine.confine(shutil.which("bwrap") or "", sys.executable, [SYSTEM_PYTHON,
                                                                                   "-c", TRY],
                                     str(tmp_path), None, tmp_path, "t")
    assert (confined.fds == () and "--seccomp" not in confined.argv
            and "no libseccomp binding" in confined.seccomp)
    done = subprocess.run(confined.argv, capture_output=True, text=True, timeout=60)
    # No filter: an inet socket in the sandbox's own network; a user namespace in it where bwrap
    # made one.
    assert done.stdout.split()[0] == "allowed", done


@needs_binding
@needs_bwrap
def test_under_bwrap_the_filter_refuses_what_it_says_and_allows_the_rest(tmp_path):
    confined = serverconfine.confine(shutil.which("bwrap") or "", SYSTEM_PYTHON, [SYSTEM_PYTHON,
                                                                                  "-c", TRY],
                                     str(tmp_path), None, tmp_path, "t")
    try:
        assert (len(confined.fds) == 1
                and confined.argv[confined.argv.index("--seccomp") + 1] == str(confined.fds[0]))
        done = subprocess.run(confined.argv, capture_output=True, text=True, timeout=60,
                              pass_fds=confined.fds)
    finally:
        for fd in confined.fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["EAFNOSUPPORT", "allowed", "EPERM", "allowed"], done.stdout
    assert Path(tmp_path / "t.bpf").is_file()
