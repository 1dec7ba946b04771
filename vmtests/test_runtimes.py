"""Runtimes for real: built with mmdebstrap from their locks, then the sandbox and VM paths run
on them. A drifted lock is reported and fails only with --strict."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from harness import matrix as matrix_mod
from harness.runtimes import recipes, builds
from harness.judging import verdict
from harness.core.errors import InputError

from .conftest import describe, outcome_or_skip, skip_unless_required

COMPAT = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")


def need_builder():
    if not shutil.which("mmdebstrap"):
        skip_unless_required("runtimes", "runtime builds",
                             "needs mmdebstrap (apt-get install mmdebstrap arch-test)")


def scenario(scenario_id):
    (found,) = [s for s in COMPAT.scenarios if s.id == scenario_id]
    return found


ARCHES = pytest.mark.full("other-architectures")


@pytest.mark.parametrize("scenario_id", [
    "vtest-virgl/trixie/gl", pytest.param("vtest-virgl/bookworm-i386/gl", marks=ARCHES),
    pytest.param("vtest-virgl/bullseye/gl", marks=pytest.mark.full("every-runtime")),
                                         "vm-headless/trixie/gl",
    pytest.param("vm-virgl/bookworm-i386/gl", marks=ARCHES)])
def test_paths_on_runtimes_give_the_answer_the_compat_matrix_expects(scenario_id, run_scenarios):
    need_builder()
    (result,) = run_scenarios([scenario(scenario_id)])
    outcome = outcome_or_skip(result)
    assert outcome in (verdict.PASS, verdict.EXPECTED_FAIL), describe(result)
    facts = result.runtime_facts
    assert (facts["runtime"] == scenario(scenario_id).runtime.recipe and facts["mesa"]
            and facts["libc"])
    if outcome == verdict.PASS:
        # The workload really ran on the runtime's own Mesa, not the host's.
        assert facts["mesa"] in (result.report.version or "")
        assert (result.scenario.runtime.root.endswith("/root")
                and "runtimes" in result.scenario.runtime.root)


@pytest.mark.full("every-runtime")
def test_a_drifted_lock_is_reported_and_fails_only_when_strict(tmp_path):
    need_builder()
    shutil.copy(recipes.RECIPES_DIR / "trixie.toml", tmp_path / "trixie.toml")
    lock = json.loads((recipes.RECIPES_DIR / "trixie.lock.json").read_text())
    (base_files,) = [p for p in lock["packages"] if p["name"] == "base-files"]
    now = base_files["version"]
    base_files["version"] = "13.0"  # a version the archive no longer has
    (tmp_path / "trixie.lock.json").write_text(json.dumps(lock))
    recipe = recipes.load_recipe("trixie", tmp_path)
    built = builds.build(recipe, recipes.load_lock(recipe, tmp_path), cache_dir=tmp_path / "cache")
    # The archive moves on (a point release drifts more packages than the one changed here).
    assert f"base-files: locked 13.0, now {now}" in built.drift or any(
        d.startswith("base-files: locked 13.0, now ") for d in built.drift), built.drift
    assert all(re.match(r"^\S+: locked \S+, now \S+$", d) for d in built.drift), built.drift
    assert (built.root / "usr/bin/python3").exists()
    with pytest.raises(InputError, match=r"the lock has drifted \(\d+ packages, first: "):
        builds.build(recipe, recipes.load_lock(recipe, tmp_path), strict=True,
                     cache_dir=tmp_path / "strict")


def test_runtimes_build_cli_reports_the_built_runtime():
    need_builder()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "runtimes", "build", "trixie"],
                          capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("trixie: ") and "(Mesa 25.0" in done.stdout


@pytest.mark.full("every-runtime")
def test_a_toolset_from_a_runtime_runs_the_newer_host_side(tmp_path):
    """`--toolset runtime:trixie-host` on a Debian 12 host: virglrenderer 1.1 and QEMU 10.0 from
    Debian 13 serve the workloads (the server renders with that runtime's Mesa: LLVM 19)."""
    need_builder()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--toolset",
                           "runtime:trixie-host", "--paths",
                           "vtest-virgl,vm-headless", "--filter", "*/host/*", "--out",
                           str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["toolset"]["source"] == "runtime:trixie-host"
    tools = document["toolset"]["tools"]
    assert (tools["virgl_test_server"]["version"].startswith("1.1")
            and tools["qemu-system-x86_64"]["version"].startswith("10."))
    outcomes = {s["id"]: s for s in document["scenarios"]}
    assert outcomes["vtest-virgl/host/gl"]["outcome"] == "Pass"
    assert "LLVM 19" in outcomes["vtest-virgl/host/gl"]["renderer"]
    assert outcomes["vm-headless/host/gl"]["outcome"] == "Pass"


def test_exec_runs_in_the_built_runtime_not_the_host(tmp_path):
    """`exec --runtime trixie` builds (or finds) the runtime and runs the command over its root:
    its own glibc answers, not the host's."""
    need_builder()
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text('[matrix]\npaths = ["vtest-virgl"]\nruntimes = ["trixie"]\n'
                           '[runtimes.trixie]\nkind = "debootstrap"\n')
    done = subprocess.run([sys.executable, "-m", "harness.cli", "exec", "--path", "vtest-virgl",
                           "--matrix",
                           str(matrix_file), "--runtime", "trixie", "--", "sh", "-c",
                           "ldd --version | head -1"],
                          capture_output=True, text=True, timeout=600)
    if "missing" in done.stderr and "cannot run here" in done.stderr:
        skip_unless_required("vtest-virgl", "vtest-virgl", done.stderr.strip())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(" " + builds.cached("trixie").facts["libc"])
