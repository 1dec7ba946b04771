"""VM paths: guest faults end in the right verdict within seconds, and nothing survives."""
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.launch.families import registry
from harness import matrix as matrix_mod
from harness.judging import verdict

from .conftest import describe, outcome_or_skip, skip_unless_required
from .test_faults import processes_mentioning


def vm_scenario(path="vm-headless", timeout_s=120, **settings):
    return matrix_mod.expand({"matrix": {"paths": [path]}, "defaults": {"timeout_s": timeout_s,
                                                                        **settings}},
                             "<test>").scenarios


def test_guest_kernel_panic_fails_fast_with_the_reason(run_scenarios):
    (result,) = run_scenarios(vm_scenario(kernel_args=["gpu_harness.fault=panic"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL, describe(result)
    assert result.verdict.reason.startswith("guest kernel panic: sysrq triggered crash")
    assert result.wall_s < 30, (f"{result.wall_s:.1f} s: the panic should end the run, not the 120 "
                                "s timeout")


def test_guest_init_failure_fails_with_the_reason(run_scenarios):
    (result,) = run_scenarios(vm_scenario(kernel_args=["gpu_harness.fault=init-fail"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "guest init failed: fault injected" in result.verdict.reason
    assert result.wall_s < 30


def test_hung_guest_times_out_and_qemu_is_gone(run_scenarios, tmp_path):
    (result,) = run_scenarios(vm_scenario(timeout_s=8, kernel_args=["gpu_harness.fault=hang"]))
    outcome_or_skip(result)
    assert result.verdict.outcome == verdict.FAIL
    assert "timed out after 8 s" in result.verdict.reason
    assert processes_mentioning(str(result.result_dir)) == []


def test_vm_result_records_acceleration_and_console(run_scenarios):
    (result,) = run_scenarios(vm_scenario())
    if outcome_or_skip(result) != verdict.PASS:
        pytest.fail(describe(result))
    assert result.launch.facts["accel"] in ("kvm", "tcg") and result.launch.facts["accel_reason"]
    assert "gpu-harness: probe exited 0" in (result.result_dir / "console.log").read_text()
    assert result.launch.rss_kb["qemu"] > 0
    assert result.report.raw["isolation"]["dri_nodes"] == []


def test_harness_sigkilled_during_a_vm_scenario_leaves_nothing(tmp_path, toolset):
    """QEMU and the Xvfb it draws on are reaped, and Xvfb's display lock and socket removed,
    when the harness dies without running any cleanup of its own."""
    scenario = vm_scenario("vm-virgl")[0]
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if reason:
        skip_unless_required("vm-virgl", "vm-virgl", reason)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text('[matrix]\npaths = ["vm-virgl"]\n[defaults]\ntimeout_s = '
                           '120\nprobe_args = ["--hold", "60"]\n')
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--matrix",
                                str(matrix_file),
                                "--out", str(tmp_path / "out")], env=dict(os.environ,
                                                                          TMPDIR=str(scratch)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    console = tmp_path / "out" / "scenarios" / scenario.slug / "console.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (console.exists()
                                               and "probe starting" in console.read_text()):
        time.sleep(0.1)
    launched = processes_mentioning(str(scratch))
    names = {open(f"/proc/{pid}/comm").read().strip() for pid in launched}
    assert {"qemu-system-x86", "Xvfb"} <= names, f"QEMU and Xvfb never both ran: {names}"
    xvfb = next(pid for pid in launched if open(f"/proc/{pid}/comm").read().strip() == "Xvfb")
    display = next(arg for arg in open(f"/proc/{xvfb}/cmdline").read().split("\0")
                   if arg.startswith(":"))
    harness.kill()
    harness.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (processes_mentioning(str(scratch))
                                           or any(scratch.iterdir())):
        time.sleep(0.05)
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []
    # Other workers may start their own Xvfb, even on the freed number: only this one's lock counts.
    assert lock_owner(f"/tmp/.X{display[1:]}-lock") != xvfb, ("the killed Xvfb's lock on "
                                                              f"{display} "
                                                              "survived")


def lock_owner(lock_path):
    try:
        return int(open(lock_path).read().strip())
    except (FileNotFoundError, ValueError):
        return None


# A program in the guest that polls its stdin and says what it got, on stdout (the result share:
# the host reads it as it is written).
POLLS_ITS_STDIN = """
import os, select, sys
print("ready", flush=True)
lines = 0
while True:
    if not select.select([0], [], [], 120)[0]:
        print("no input for 120 s", flush=True)
        sys.exit(1)
    chunk = os.read(0, 4096)
    if not chunk:
        print("eof after", lines, "lines", flush=True)
        break
    lines += chunk.count(b"\\n")
    print("got", chunk.decode().strip(), flush=True)
"""


def said(output: Path, line: str, process: subprocess.Popen, errors: Path,
         timeout_s: float) -> float:
    """Seconds until the guest's program has written `line` to its stdout; fails at the deadline
    or if exec ended first."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and line in output.read_text().splitlines():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"the guest's program did not say {line!r} in {timeout_s:g} s (exec exit "
                f"{process.poll()}): "
                f"{output.read_text() if output.exists() else 'no output'}\n{errors.read_text()}")


# An arm64 guest's machine (virt) has no second serial port: the same virtio-serial port serves it.
STREAMS = [("pipe", "host"), ("terminal", "host"),
           pytest.param("pipe", "bookworm-arm64", marks=pytest.mark.full("other-architectures"))]


@pytest.mark.parametrize("stdin_kind, runtime", STREAMS, ids=["pipe-host", "terminal-host",
                                                              "pipe-bookworm-arm64"])
def test_exec_streams_stdin_into_the_guest_as_it_comes(toolset, tmp_path, stdin_kind, runtime):
    """The guest starts while the host's stdin is still open; a line the host writes only after
    the program in the guest is running reaches it while it runs, a second one too (no end after
    the first), and the end of the host's stdin is the end (EOF) of the program's."""
    scenario = vm_scenario()[0]
    reason = registry.of(scenario.spec).available(scenario.spec, toolset)
    if runtime != "host" and not toolset.found("qemu-system-aarch64"):
        reason = toolset.why_missing("qemu-system-aarch64")
    if reason:
        skip_unless_required("vm-headless", f"exec through vm-headless on {runtime}", reason)
    keep = tmp_path / "keep"
    if stdin_kind == "pipe":
        read_end, writer = os.pipe()
    else:
        # the terminal's line discipline: lines on newline, EOF on ^D
        writer, read_end = pty.openpty()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as out_file, open(err, "wb") as err_file:
        harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "exec", "--path",
                                    "vm-headless", "--keep",
                                    str(keep), "--runtime", runtime, "--timeout", "300", "--",
                                    "python3", "-c",
                                    POLLS_ITS_STDIN], stdin=read_end, stdout=out_file,
                                   stderr=err_file)
    os.close(read_end)
    output = keep / "probe" / "probe.stdout"
    try:
        # The host's stdin is still open: nothing waits for its end (an arm64 runtime is built
        # first where the cache has none: minutes).
        said(output, "ready", harness, err, 600)
        os.write(writer, b"late-line\n")
        took = said(output, "got late-line", harness, err, 30)
        os.write(writer, b"second\n")
        said(output, "got second", harness, err, 30)
        if stdin_kind == "terminal":
            os.write(writer, b"\x04")  # ^D: the terminal's end of input
        os.close(writer)
        writer = -1
        harness.wait(timeout=60)
    finally:
        if writer >= 0:
            os.close(writer)
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    assert harness.returncode == 0, err.read_text()
    assert out.read_text().splitlines() == ["ready", "got late-line", "got second",
                                            "eof after 2 lines"]
    assert took < 10, f"the line took {took:.1f} s to reach the guest's program"
