"""piglit's own runner on a profile for real: the same test list natively and through
vtest-virgl (Debian 12's piglit and Mesa 22.3), every test a subtest named as piglit names it, and
a profile the runtime's piglit lacks is bad input before anything runs (or, where only running
shows it, said in piglit's words)."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.run import runner
from harness.scenario.outcomes import SubtestOutcome
from harness.workloads import registry as workloads

from .conftest import describe, outcome_or_skip, run_leaving_nothing

# 32 of quick_gl's GLES tests (a real run's: tests/files/piglit)
RESULTS = Path(__file__).parent.parent / "tests" / "files" / "piglit" / \
    "quick_gl-gles-quarter-results.json"


def profile_matrix(tmp_path: Path, probe: dict) -> matrix_mod.Matrix:
    declaration = {"matrix": {"paths": ["native", "vtest-virgl"], "runtimes": ["host"],
                              "probes": ["gles"]},
                   "probes": {"gles": {"kind": "piglit", "profile": "quick_gl", **probe}}}
    return matrix_mod.expand(declaration, str(tmp_path / "m.toml"))


@pytest.mark.launches("host")
@pytest.mark.launches("sandbox")
def test_one_test_list_natively_and_through_vtest(toolset, tmp_path):
    names = sorted(json.loads(RESULTS.read_text())["tests"])
    listed = tmp_path / "gles.txt"
    # piglit's names, half of them in the path spelling a user may copy from a results page
    listed.write_text("".join((name.replace("@", "/") if index % 2 else name) + "\n"
                              for index, name in enumerate(names)))
    scenarios = profile_matrix(tmp_path, {"test_list": str(listed), "jobs": 2}).scenarios
    results = {r.scenario.path_id: r for r in run_leaving_nothing(
        scenarios, toolset, runner.RunOptions(out_dir=tmp_path / "out", jobs=2))}
    for result in results.values():
        if outcome_or_skip(result) == verdict.SKIP:
            pytest.fail(describe(result))
        assert [s.name for s in result.verdict.subtests] == names, describe(result)
        assert all(s.seconds >= 0 for s in result.verdict.subtests)
    native, vtest = (results[p].verdict.subtests for p in ("native", "vtest-virgl"))
    passed = {s.name for s in native if s.outcome is SubtestOutcome.PASS}
    assert len(passed) >= len(names) // 3, native
    # through vtest: the renderer is virgl's, and what passes natively mostly passes there too
    (renderer,) = [c for c in results["vtest-virgl"].verdict.checks if c.name == "renderer"]
    assert renderer.ok and "virgl" in renderer.detail, describe(results["vtest-virgl"])
    through = {s.name for s in vtest if s.outcome is SubtestOutcome.PASS}
    assert len(through & passed) >= len(passed) // 2, (sorted(passed - through))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=1800)


def unrunnable_matrix(tmp_path: Path, runtime: str) -> Path:
    """A profile the runtime's piglit lacks, a test list naming none of a profile's tests, a
    selection that leaves none."""
    (tmp_path / "list.txt").write_text("# mine\n\nspec@foo@bar\nspec/x/y\n")
    declared = tmp_path / "m.toml"
    declared.write_text(f"""
[matrix]
paths = ["vtest-virgl"]
runtimes = ["{runtime}"]
probes = ["misspelt", "unlisted", "emptied"]
{'[runtimes.trixie]' if runtime == 'trixie' else ''}
{'kind = "debootstrap"' if runtime == 'trixie' else ''}
[probes.misspelt]
kind = "piglit"
profile = "quick_gll"
[probes.unlisted]
kind = "piglit"
profile = "sanity"
test_list = "list.txt"
[probes.emptied]
kind = "piglit"
profile = "quick_gl"
include = ["gles"]
exclude = ["spec"]
""")
    return declared


def said_unrunnable(done: subprocess.CompletedProcess, declared: Path, runtime: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.startswith("gpu-harness: error:")]
    assert done.returncode == 2 and len(lines) == 3, done.stderr
    assert lines[0].startswith(f"gpu-harness: error: {declared}: probes.misspelt.profile: runtime "
                               f"{runtime}: the runtime's piglit has no profile 'quick_gll' (did "
                               "you mean quick_gl"), lines[0]
    assert f"probes.unlisted.test_list: runtime {runtime}: {declared.parent / 'list.txt'}:3: " \
        "'spec@foo@bar': names no test of profile sanity" in lines[1], lines[1]
    assert "probes.emptied.include" in lines[2] and "no test of profile quick_gl is left" \
        in lines[2], lines[2]


def test_what_the_hosts_piglit_cannot_run_is_bad_input_at_load(tmp_path):
    declared = unrunnable_matrix(tmp_path, "host")
    done = run_cli("run", "--matrix", str(declared), "--out", str(tmp_path / "out"))
    said_unrunnable(done, declared, "host")
    assert not (tmp_path / "out").exists()


@pytest.mark.full("every-runtime")
def test_what_a_built_runtimes_piglit_cannot_run_is_bad_input_before_any_scenario(tmp_path):
    """Debian 13's piglit (a runtime the run builds): its profiles are read once it is built."""
    declared = unrunnable_matrix(tmp_path, "trixie")
    done = run_cli("run", "--matrix", str(declared), "--out", str(tmp_path / "out"))
    said_unrunnable(done, declared, "trixie")
    assert not (tmp_path / "out" / "scenarios").exists() and not (tmp_path / "out" /
                                                                 "results.json").exists()


@pytest.mark.launches("host")
def test_inside_the_path_a_profile_the_runtime_lacks_is_said_in_piglits_words(toolset, tmp_path):
    """An image's tree is seen only when it runs: the runner inside the path says it."""
    (good,) = matrix_mod.expand({"matrix": {"paths": ["native"], "probes": ["gles"]},
                                 "probes": {"gles": {"kind": "piglit", "profile": "sanity"}}},
                                str(tmp_path / "m.toml")).scenarios
    missing, _ = workloads.parse("gles", {"kind": "piglit", "profile": "quick_nothing"})
    broken = dataclasses.replace(good, declared=missing)
    (result,) = run_leaving_nothing([broken], toolset, runner.RunOptions(out_dir=tmp_path / "out"))
    assert result.verdict.outcome is verdict.FAIL, describe(result)
    (only,) = result.verdict.subtests
    assert "has no profile 'quick_nothing'" in only.detail, only


@pytest.mark.full("every-runtime")
def test_the_compat_matrix_answers_with_a_pass_rate_against_native(tmp_path):
    """vtest-compat.toml's trixie GLES slice as a user runs it: quick_gl's GLES tests through
    vtest-virgl and natively on trixie's Mesa (flatpak-ext, llvmpipe); the vtest compatibility
    answer gives the pair's pass rate against native and names the gaps."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--matrix",
                           str(matrix_mod.DEFAULT_MATRIX.parent / "vtest-compat.toml"),
                           "--filter", "*/trixie/gl-gles", "-j", "2",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=1800)
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    by_path = {e["path"]: e for e in document["scenarios"]}
    assert set(by_path) == {"vtest-virgl", "flatpak-ext"}, done.stderr[-2000:]
    for entry in by_path.values():
        assert entry["outcome"] in ("Pass", "Fail") and len(entry["subtests"]) >= 100, entry["id"]
    (record,) = document["answers"]["vtest"]["records"]
    assert 0 < record["pass_vs_native"] <= 1 and record["native_passed"] > 0, record
    assert record["gap_count"] == len(record["gaps"]) or record["gap_count"] > 50, record
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == sum(len(e["subtests"]) for e in by_path.values())


def test_the_tests_a_skips_file_names_do_not_run(tmp_path):
    """`run --baseline NAME-fails.txt` with NAME-skips.txt beside it: as deqp-runner, the tests it
    names are not run, and so not counted (piglit's sanity profile natively)."""
    (tmp_path / "mine-fails.txt").write_text("# none known\n")
    (tmp_path / "mine-skips.txt").write_text("# GLSL's, not run here\n^spec@glsl\n")
    (tmp_path / "m.toml").write_text('[matrix]\npaths = ["native"]\nprobes = ["sane"]\n'
                                     '[probes.sane]\nkind = "piglit"\nprofile = "sanity"\n')
    done = run_cli("run", "--matrix", str(tmp_path / "m.toml"), "--baseline",
                   str(tmp_path / "mine-fails.txt"), "--out", str(tmp_path / "out"))
    (entry,) = json.loads((tmp_path / "out" / "results.json").read_text())["scenarios"]
    ran = [s["name"] for s in entry["subtests"]]
    every = (Path(__file__).parent.parent / "tests" / "files" / "piglit" /
             "sanity-print-cmd.txt").read_text().split()
    assert sorted(ran) == sorted(n for n in every if not n.startswith("spec@glsl")), done.stderr
    assert len(ran) < len(every)
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert sorted(row.split(",")[0] for row in rows) == sorted(f"{entry['id']}:{name}"
                                                               for name in ran)


def guest_matrix(tmp_path: Path, listed: Path) -> matrix_mod.Matrix:
    listed.parent.mkdir(parents=True, exist_ok=True)
    listed.write_text("fast_color_clear@all-colors\n"
                      "spec@glsl-1.10@execution@algebraic@glsl-algebraic-add-zero\n")
    return matrix_mod.expand({"matrix": {"paths": ["sandbox-dri"], "runtimes": ["host"],
                                         "probes": ["sane"], "machines": ["virgl-guest"]},
                              "probes": {"sane": {"kind": "piglit", "profile": "sanity",
                                                  "test_list": str(listed)}}},
                             str(tmp_path / "m.toml"))


def test_a_file_under_tmp_a_guest_cannot_be_given_is_a_skip_that_names_it(toolset, tmp_path):
    """A machine's guest mounts its own /tmp; the host's files there that a scenario names are
    bound in by the kernel command line, which cannot carry a space: that one is a Skip saying so,
    before any boot."""
    listed = tmp_path / "a b" / "list.txt"
    assert str(listed).startswith("/tmp/")
    (result,) = run_leaving_nothing(guest_matrix(tmp_path, listed).scenarios, toolset,
                                    runner.RunOptions(out_dir=tmp_path / "out"))
    if "the guest cannot see" not in result.verdict.reason:
        outcome_or_skip(result)  # the machine itself cannot run here: its own reason
    assert result.verdict.outcome is verdict.SKIP, describe(result)
    assert result.verdict.reason.startswith(f"the guest cannot see {listed.parent}:"), describe(
        result)


@pytest.mark.full("machine-grid")
def test_a_test_list_under_tmp_reaches_the_guest(toolset, tmp_path):
    """The host's test list under /tmp (the guest's own /tmp is another) is bound into the guest:
    the two tests it names run there, through the guest's virtio-gpu."""
    listed = tmp_path / "lists" / "list.txt"
    assert str(listed).startswith("/tmp/")
    (result,) = run_leaving_nothing(guest_matrix(tmp_path, listed).scenarios, toolset,
                                    runner.RunOptions(out_dir=tmp_path / "out"))
    if outcome_or_skip(result) == verdict.SKIP:
        return
    assert result.verdict.outcome is verdict.PASS, describe(result)
    assert [s.name for s in result.verdict.subtests] == listed.read_text().split(), describe(
        result)
