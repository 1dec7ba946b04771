"""Only what is ours: the harness signals a process only by its pid, its group, a cgroup it made
or the mark it put into the process's environment, never by what its command line says. Real
processes: a child that escapes its group and tree, and decoys that name the child's folders."""
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.system import reaper
from harness.system.process import Child, stat_fields
from harness.system.retry import poll

# The child's grandchild leaves its session and group (setsid) and its tree (its parent exits),
# as a sandbox's inner process does when bwrap is stopped mid-setup; it says its pid.
ESCAPES = r"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".partial", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".partial", sys.argv[1])
        time.sleep(300)
    os._exit(0)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def decoy(folder: Path) -> subprocess.Popen:
    """A process of somebody else's whose command line names `folder` (and runs in it)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(folder)],
                            cwd=folder,
                            start_new_session=True)


def sleeper(env: dict) -> subprocess.Popen:
    """A process with `env`, returned once it runs with it (it says so from its final program: no
    exec is under way while the test reads its environment)."""
    process = subprocess.Popen([sys.executable, "-c",
                                "import time; print('ready', flush=True); time.sleep(300)"],
                               env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def said_pid(path: Path) -> int:
    assert poll(path.exists, 10, 0.01), "the escaping process never started"
    return int(path.read_text())


def test_stop_ends_a_process_that_left_the_childs_group_and_tree_and_spares_a_decoy(tmp_path):
    other = decoy(tmp_path)
    try:
        child = Child([sys.executable, "-c", ESCAPES, str(tmp_path / "escaped.pid")],
                      dict(os.environ),
                      str(tmp_path / "child.log"))
        escaped = said_pid(tmp_path / "escaped.pid")
        assert os.getpgid(escaped) != child.pgid and escaped not in child.group_members()
        assert reaper.carries(escaped, [child.mark]) and not reaper.carries(other.pid, [child.mark])
        child.stop(grace_s=0.2)
        assert not alive(escaped)
        assert other.poll() is None, "a process that only named the child's folder was killed"
    finally:
        other.kill()
        other.wait()


def test_a_mark_is_found_exactly_never_by_a_prefix_of_another_mark(tmp_path):
    process = sleeper({**os.environ, reaper.MARK_VAR: "run-1/12"})
    try:
        assert reaper.carries(process.pid, ["run-1/12"]) and reaper.carries(process.pid, ["run-1"])
        assert not reaper.carries(process.pid, ["run-1/1"]) and not reaper.carries(process.pid,
                                                                                   ["run-"])
    finally:
        process.kill()
        process.wait()


def test_a_harness_inside_another_keeps_the_outer_mark_on_what_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv(reaper.MARK_VAR, "outer-1/3")
    assert reaper.mark_value("inner-2/1") == "outer-1/3:inner-2/1"
    process = sleeper({**os.environ, reaper.MARK_VAR: reaper.mark_value("inner-2/1")})
    try:
        assert reaper.carries(process.pid, ["outer-1/3"]) and reaper.carries(process.pid,
                                                                             ["inner-2"])
    finally:
        process.kill()
        process.wait()


# A harness that starts the escaping child and is then killed (SIGKILL: none of its own cleanup
# runs).
HARNESS = r"""
import os, sys
from harness.system import reaper
from harness.system.process import Child
Child([sys.executable, "-c", sys.argv[1], sys.argv[2]], dict(os.environ), sys.argv[3])
print(reaper.get()._proc.pid, flush=True)
import time; time.sleep(300)
"""


def test_the_reaper_of_a_killed_harness_ends_what_carries_its_mark_and_spares_a_decoy(tmp_path):
    other = decoy(tmp_path)
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, ESCAPES,
                                str(tmp_path / "escaped.pid"),
                                str(tmp_path / "child.log")], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        guardian = int(harness.stdout.readline())
        escaped = said_pid(tmp_path / "escaped.pid")
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        assert poll(lambda: not alive(guardian), 30, 0.05), "the reaper did not finish"
        assert not alive(escaped), "the reaper left a process with the run's mark"
        assert other.poll() is None, "the reaper killed a process that only named the run's folder"
    finally:
        other.kill()
        other.wait()
        if harness.poll() is None:
            harness.kill()


def test_after_a_killed_run_the_next_removes_only_what_that_run_began_to_write(tmp_path):
    """A run killed in a folder leaves its manifest unfinished (what it found, nothing about what
    it made): the next run removes the names a run writes that were not there before, and keeps
    the rest, named like a product or not."""
    from harness.report import outdir

    out = tmp_path / "out"
    with outdir.claimed(out, "--out", ("scenarios", "results.json")):
        pass
    (out / "results.json").write_text("{}")
    outdir.release(out)
    (out / "notes.txt").write_text("mine")
    with outdir.claimed(out, "--out", ("scenarios", "results.json")):
        pass
    (out / "scenarios" / "a").mkdir(parents=True)  # the run is killed here: no release
    outdir._held.clear()  # the killed run's lock went with its process
    with outdir.claimed(out, "--out", ("scenarios", "results.json")):
        pass
    assert sorted(p.name for p in out.iterdir()) == [".gpu-harness-made", ".gpu-harness.lock",
                                                     "notes.txt"]
    outdir.release(out)
    assert (out / "notes.txt").read_text() == "mine"
