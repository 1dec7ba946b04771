"""CDI for real: podman applies the harness's spec for the host's driver (written into the
scenario's own /var/run/cdi, in podman's private mount namespace) over bookworm, trixie and
bullseye; a spec made stale by an upgrade of the driver's files fails with its class, named by
cdi check before the run; nothing is left: no spec outside the scenario, no podman state."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.judging import verdict
from harness.launch.families.container import PRIVATENS
from harness.scenario.outcomes import FailureKind

from .conftest import describe, on_runtimes, outcome_or_skip
from .test_containers import global_state, left_of, need_podman

HOST_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")


@pytest.mark.full("every-runtime")
def test_podman_applies_the_harness_spec_and_a_stale_one_is_named(run_scenarios, toolset):
    need_podman(toolset)
    before = global_state(), {d: os.path.exists(d) for d in HOST_SPEC_DIRS}
    scenarios = (on_runtimes(["podman-cdi"], ("bookworm", "trixie", "bullseye"))
                 + on_runtimes(["podman-cdi-stale"], ("bookworm",)))
    results = {r.scenario.id: r for r in run_scenarios(scenarios)}
    for scenario_id in ("podman-cdi/bookworm/gl", "podman-cdi/trixie/gl"):
        result = results[scenario_id]
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        assert any(c.name == "host-driver" and c.ok
                   for c in result.verdict.checks), describe(result)
        assert result.launch.facts["cdi_device"] == "gpu-harness.dev/gpu=all"
        assert result.launch.facts["cdi_stale"] == []
        spec = json.loads((result.result_dir / "cdi" / "gpu-harness.json").read_text())
        # podman put the spec's environment and mounts into the container: the probe saw them.
        libraries = result.report.raw["libraries"]
        mounted = {m["containerPath"] for m in spec["devices"][0]["containerEdits"]["mounts"]}
        assert [lib for lib in libraries if lib.startswith("/run/host-driver/")], libraries
        assert {lib for lib in libraries if lib.startswith("/run/host-driver/lib/")} <= mounted
    old = results["podman-cdi/bullseye/gl"]
    assert (outcome_or_skip(old) == verdict.FAIL
            and old.verdict.failure_kind is FailureKind.GLIBC_TOO_OLD), describe(old)
    stale = results["podman-cdi-stale/bookworm/gl"]
    assert outcome_or_skip(stale) == verdict.FAIL, describe(stale)
    assert stale.verdict.failure_kind is FailureKind.STALE_SPEC, describe(stale)
    assert ("does not exist" in stale.verdict.reason
            and "cdi check said before the run: " in stale.verdict.reason)
    checked = (stale.result_dir / "cdi-check.txt").read_text()
    assert stale.launch.facts["cdi_stale"] and all(line in checked
                                                   for line in stale.launch.facts["cdi_stale"])
    # Nothing of it outside the scenario: no spec folder made on the host, no podman state anywhere.
    assert (global_state(), {d: os.path.exists(d) for d in HOST_SPEC_DIRS}) == before
    assert all(left_of(r) == [] for r in results.values())
    assert all(not Path(r.launch.facts["podman_state"]).exists() for r in results.values())


@pytest.mark.full("every-runtime")
def test_the_hosts_own_spec_is_applied_and_checked(tmp_path, toolset):
    """podman-cdi-system over a spec the host has: the harness run in a mount namespace of its own
    whose /var/run/cdi holds one (gpu-harness cdi generate's), so nothing is written on the host."""
    need_podman(toolset)
    specs = tmp_path / "specs"
    generate = subprocess.run([sys.executable, "-m", "harness.cli", "cdi", "generate", "--out",
                               str(specs / "gpu-harness.json")], capture_output=True, text=True,
                              timeout=300)
    assert generate.returncode == 0, generate.stderr
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(PRIVATENS), str(tmp_path / "ns"), "--cdi", str(specs),
                          "--",
                          sys.executable, "-m", "harness.cli", "run", "--matrix",
                          "harness/data/compat.toml",
                          "--paths", "podman-cdi-system", "--filter",
                          "podman-cdi-system/bookworm/gl", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    (scenario,) = json.loads((out / "results.json").read_text())["scenarios"]
    assert scenario["outcome"] == "Pass", run.stdout + run.stderr
    folder = out / "scenarios" / "podman-cdi-system__bookworm__gl"
    assert "--device\ngpu-harness.dev/gpu=all\n" in (folder / "workload.argv").read_text()
    assert (folder / "cdi-check.txt").read_text() == ("no 32-bit libraries (nor has the host's "
                                                      "driver any)\n")
    assert scenario["exposure"]["host_file_count"] > 0  # what the spec put in is counted
    assert not os.path.exists("/var/run/cdi") or os.listdir("/var/run/cdi") == []
