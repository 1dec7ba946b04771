"""piglit's own runner on a profile for real: the same test list natively and through
vtest-virgl (Debian 12's piglit and Mesa 22.3), every test a subtest named as piglit names it, and
a profile the runtime's piglit lacks said in piglit's words."""
import json
from pathlib import Path

import pytest

from harness import matrix as matrix_mod
from harness.judging import verdict
from harness.run import runner
from harness.scenario.outcomes import SubtestOutcome

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


@pytest.mark.launches("host")
def test_a_profile_the_runtimes_piglit_lacks_is_said_in_its_words(toolset, tmp_path):
    broken = matrix_mod.expand({"matrix": {"paths": ["native"], "probes": ["gles"]},
                                "probes": {"gles": {"kind": "piglit",
                                                    "profile": "quick_nothing"}}},
                               str(tmp_path / "m.toml")).scenarios
    (result,) = run_leaving_nothing(broken, toolset, runner.RunOptions(out_dir=tmp_path / "out"))
    assert result.verdict.outcome is verdict.FAIL, describe(result)
    (only,) = result.verdict.subtests
    assert "has no profile 'quick_nothing'" in only.detail, only


@pytest.mark.full("every-runtime")
def test_the_compat_matrix_answers_with_a_pass_rate_against_native(tmp_path):
    """vtest-compat.toml's trixie GLES slice as a user runs it: quick_gl's GLES tests through
    vtest-virgl and natively on trixie's Mesa (flatpak-ext, llvmpipe); the vtest compatibility
    answer gives the pair's pass rate against native and names the gaps."""
    import subprocess
    import sys

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
