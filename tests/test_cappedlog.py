"""A workload's log is capped: a process that writes without end leaves its head and its tail
with the cut said, one that writes little leaves its log whole. Real processes."""
import os
import sys

from harness.system.cappedlog import HEAD_BYTES, TAIL_BYTES
from harness.system.process import Child

# Writes numbered lines to stderr, `count` of them, then a last line: as a client looping on an
# error does.
LOOPER = r"""
import sys
for n in range(int(sys.argv[1])):
    sys.stderr.write(f"line {n:09d}: lost connection to rendering server\n")
sys.stderr.write("the last words\n")
"""


def test_a_log_past_its_cap_keeps_its_head_and_its_tail_and_says_the_cut(tmp_path):
    log = tmp_path / "probe.log"
    lines = 400_000  # about 21 MB
    child = Child([sys.executable, "-c", LOOPER, str(lines)], dict(os.environ), str(log),
                  capped=True)
    assert child.wait(60).code == 0
    data = log.read_bytes()
    assert len(data) <= HEAD_BYTES + TAIL_BYTES + 200
    assert data.startswith(b"line 000000000: lost connection")
    assert data.endswith(b"the last words\n")
    assert b"bytes of this log cut here" in data
    said = data.split(b"[gpu-harness: ", 1)[1].split(b" bytes", 1)[0]
    written = sum(len(f"line {n:09d}: lost connection to rendering server\n")
                  for n in range(lines)) + 15
    assert int(said) == written - HEAD_BYTES - TAIL_BYTES


def test_a_log_under_its_cap_is_whole(tmp_path):
    log = tmp_path / "probe.log"
    child = Child([sys.executable, "-c", LOOPER, "1000"], dict(os.environ), str(log), capped=True)
    assert child.wait(60).code == 0
    expected = "".join(f"line {n:09d}: lost connection to rendering server\n"
                       for n in range(1000)) + "the last words\n"
    assert log.read_text() == expected


def test_a_process_that_cannot_start_leaves_its_log_closed_and_empty(tmp_path):
    log = tmp_path / "probe.log"
    try:
        Child([str(tmp_path / "no-such-program")], dict(os.environ), str(log), capped=True)
    except OSError:
        pass
    else:
        raise AssertionError("a missing program started")
    assert log.read_bytes() == b""
