"""A child's stop leaves none of its process group running, also a member that is no longer its
descendant (orphaned to us or init) and would outlive SIGTERM: real processes, no mocks."""
import os
import signal
import sys
import time

from harness.system.process import Child, stat_fields

# The child forks one that forks the member and exits: the member is in the child's group but
# no descendant of it. The member ignores SIGTERM (as a process busy with a client may be late to).
SCRIPT = r"""
import os, signal, sys, time
if os.fork() == 0:
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def test_a_group_member_that_left_the_tree_and_ignores_sigterm_is_gone_when_stop_returns(tmp_path):
    said = tmp_path / "member.pid"
    child = Child([sys.executable, "-c", SCRIPT, str(said)], dict(os.environ),
                  str(tmp_path / "log"))
    deadline = time.monotonic() + 10
    while not (said.exists() and said.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    member = int(said.read_text())
    assert os.getpgid(member) == child.pgid and alive(member)
    assert member in child.group_members()
    exit = child.stop(grace_s=0.2)
    assert exit.signal == signal.SIGTERM or exit.code is not None
    assert not alive(member), stat_fields(member)
