"""Containers for real: rootful podman over the built runtimes, with all of podman's state in
the scenario's temp folder. A run, a timeout and a SIGKILLed harness leave no podman state, no
mount, no cgroup folder and no process behind."""
import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from harness import reaper, runner, verdict
from harness.families.container import STATE_PARENT, STATE_PREFIX
from harness.outcomes import FailureKind
from harness.retry import poll

from .conftest import (describe, harness_in_subprocess, on_runtimes, outcome_or_skip,
                       skip_unless_required)

GLOBAL_STATE = ("/var/lib/containers", "/run/containers")


def podman_matrix(paths, runtimes=("bookworm",), **settings):
    return on_runtimes(paths, runtimes, **settings)


def cgroups(prefix):
    """Cgroup folders whose name starts with `prefix` (tests run side by side: each checks its own)."""
    return sorted(str(p) for p in Path(reaper.CGROUP_ROOT).glob(f"*/{prefix}*"))


def left_of(result):
    """What a finished container scenario left: its cgroups, podman state and mounts."""
    facts = result.launch.facts
    return (cgroups(facts["cgroup"]) + [facts["podman_state"]] * os.path.exists(facts["podman_state"])
            + [line for line in open("/proc/self/mountinfo") if facts["podman_state"] in line])


def global_state():
    return {path: sorted(os.listdir(path)) if os.path.isdir(path) else None for path in GLOBAL_STATE}


def need_podman(toolset):
    if toolset.missing(["podman", "runc"]):
        skip_unless_required("podman-vtest", "podman", "needs podman and runc (apt-get install podman runc)")


def test_podman_vtest_renders_and_capdrop_shows_what_still_works(run_scenarios, toolset):
    need_podman(toolset)
    before = global_state()
    results = {r.scenario.path_id: r for r in run_scenarios(podman_matrix(["podman-vtest", "podman-vtest-capdrop"],
                                                                          ("bookworm", "trixie")))}
    for result in results.values():
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        facts = result.report.raw["isolation"]
        assert facts["dri_nodes"] == [] and facts["seccomp_mode"] == 2
        assert result.exposure.host_sockets == ["/tmp/.virgl_test"] and result.exposure.host_files == []
    assert results["podman-vtest"].report.raw["isolation"]["capabilities"] > 0
    assert results["podman-vtest-capdrop"].report.raw["isolation"]["capabilities"] == 0
    assert global_state() == before and all(left_of(r) == [] for r in results.values())


def test_podman_dri_passes_the_render_node_with_device(tmp_path, toolset):
    """With a stand-in node (/dev/null, as podman accepts): the container sees one render node at
    /dev/dri/renderD128 and nothing else of /dev/dri; Mesa cannot use it, and the verdict says so."""
    need_podman(toolset)
    fake = dataclasses.replace(toolset, render_nodes=["/dev/null"])
    (scenario,) = podman_matrix(["podman-dri"])
    (result,) = runner.run([scenario], fake, runner.RunOptions(out_dir=tmp_path / "out"))
    assert "/dev/null:/dev/dri/renderD128" in result.launch.argv
    assert result.report is not None, describe(result)
    assert result.report.raw["isolation"]["dri_nodes"] == ["/dev/dri/renderD128"]
    assert result.verdict.outcome == verdict.FAIL
    assert result.verdict.failure_kind == FailureKind.SILENT_SOFTWARE_FALLBACK, describe(result)
    assert left_of(result) == []


def test_a_container_that_outlives_its_timeout_is_stopped_and_leaves_nothing(run_scenarios, toolset):
    need_podman(toolset)
    (scenario,) = podman_matrix(["podman-vtest"], timeout_s=3, probe_args=["--hold", "60"])
    started = time.monotonic()
    (result,) = run_scenarios([scenario])
    assert result.verdict.failure_kind == FailureKind.TIMEOUT, describe(result)
    assert time.monotonic() - started < 30
    assert left_of(result) == []


def podman_states(run):
    return sorted(Path(STATE_PARENT).glob(f"{STATE_PREFIX}{run}-*"))


def conmons(run):
    return [pid for pid in reaper.processes_in(f"{STATE_PARENT}/{STATE_PREFIX}{run}-")
            if open(f"/proc/{pid}/comm").read().strip() == "conmon"]


def test_harness_sigkilled_during_a_container_leaves_nothing(tmp_path, toolset):
    need_podman(toolset)
    harness, scratch = harness_in_subprocess(tmp_path, """
        [matrix]
        paths = ["podman-vtest"]
        runtimes = ["bookworm"]
        probes = ["gl"]
        [runtimes.bookworm]
        kind = "debootstrap"
        [defaults]
        timeout_s = 60
        probe_args = ["--hold", "30"]
    """)
    poll(lambda: list(scratch.iterdir()) and conmons(next(scratch.iterdir()).name), 60, 0.1)
    (run,) = [entry.name for entry in scratch.iterdir()]  # the run's temp root: gh-<token>
    assert conmons(run), "the container never started"
    harness.send_signal(signal.SIGKILL)
    harness.wait()

    def left():
        return (conmons(run) + podman_states(run) + list(scratch.iterdir()) + cgroups(f"gpu-harness-{run}-")
                + [line for line in open("/proc/self/mountinfo") if f"{STATE_PREFIX}{run}-" in line])

    poll(lambda: not left(), 20, 0.1)
    assert left() == []


@pytest.mark.parametrize("bad", ["/tmp/a:b", "/tmp/a,b"])
def test_a_path_podman_would_split_is_refused(bad):
    from harness.families.container import ContainerError, volume

    with pytest.raises(ContainerError, match="podman splits"):
        volume(bad, "/x")
