"""Mesa CI's expectation files: fails (test,Status), flakes and skips (a regular expression a line)
read into a baseline that judges subtests as deqp-runner would, a run's subtests written back, a
round trip, and each malformed line one error naming its file and line."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import InputError
from harness.judging import baseline, deqprunner
from harness.judging.verdict import Verdict
from harness.scenario.outcomes import FailureKind, Outcome, Subtest, SubtestOutcome

FILES = Path(__file__).parent / "files" / "deqprunner"
FAILS = FILES / "virpipe-gl-fails.txt"
ASTC = "spec@khr_texture_compression_astc@"


def failing_verdict(*subtests: Subtest) -> Verdict:
    return Verdict(Outcome.FAIL, "subtests failed", failure_kind=FailureKind.SUBTEST_FAILED,
                   subtests=list(subtests))


def test_a_fails_file_with_its_flakes_and_skips_beside_it_is_a_baseline():
    known = deqprunner.load(FAILS)
    kinds = [entry.kind for entry in known.entries]
    assert kinds == [baseline.Kind.FAILURE] * 4 + [baseline.Kind.FLAKE] + [baseline.Kind.SKIP] * 2
    assert known.entries[0].subtest == ASTC + "basic-gles"
    assert known.entries[0].reason == "virpipe-gl-fails.txt:2: Fail"
    assert known.entries[2].reason == "virpipe-gl-fails.txt:5: Crash"  # comments and blanks count


def test_applied_as_deqp_runner_judges_subtests():
    entries = deqprunner.load(FAILS).subtests_known("vtest-virgl/host/gles")
    fail = SubtestOutcome.FAIL
    known_only = failing_verdict(Subtest(ASTC + "basic-gles", fail))
    assert baseline.apply_subtests(known_only, entries).outcome is Outcome.EXPECTED_FAIL
    new = failing_verdict(Subtest(ASTC + "basic-gles", fail), Subtest("spec@new@one", fail))
    judged = baseline.apply_subtests(new, entries)
    assert judged.outcome is Outcome.FAIL and "spec@new@one" in judged.reason
    flaky = failing_verdict(Subtest(ASTC + "sliced-3d-miptree-gles srgb", fail))
    assert baseline.apply_subtests(flaky, entries).outcome is Outcome.FLAKE
    skipped = failing_verdict(Subtest("glx@glx-swap-event_event", fail))
    assert baseline.apply_subtests(skipped, entries).outcome is Outcome.PASS
    improved = Verdict(Outcome.PASS, "all passed",
                       subtests=[Subtest(ASTC + "basic-gles", SubtestOutcome.PASS)])
    assert baseline.apply_subtests(improved, entries).outcome is Outcome.UNEXPECTED_PASS


def test_a_runs_subtests_in_deqp_runners_columns_and_statuses():
    entries = deqprunner.load(FAILS).entries
    rows = deqprunner.csv_rows([Subtest("b", SubtestOutcome.PASS, seconds=0.25),
                                Subtest(ASTC + "basic-gles", SubtestOutcome.FAIL, seconds=1),
                                Subtest("a", SubtestOutcome.CRASH)], entries)
    assert rows == [("a", "Crash", "0.000"), ("b", "Pass", "0.250"),
                    (ASTC + "basic-gles", "ExpectedFail", "1.000")]
    assert deqprunner.failures(rows) == [("a", "Crash", "0.000")]
    assert deqprunner.csv_text(rows).splitlines()[0] == "a,Crash,0.000"


def test_fails_written_from_a_run_read_back_know_the_same_failures(tmp_path):
    subtests = [Subtest("spec@a@one", SubtestOutcome.FAIL),
                Subtest("spec@a@two", SubtestOutcome.PASS),
                Subtest("spec@b@[x]", SubtestOutcome.CRASH)]
    written = tmp_path / "run-fails.txt"
    written.write_text(deqprunner.fails_text(deqprunner.csv_rows(subtests, ())))
    assert written.read_text() == "spec@a@one,Fail\nspec@b@[x],Crash\n"
    entries = deqprunner.load(written).subtests_known("any/scenario")
    # a name with glob characters is known exactly, not as a glob
    assert [e.knows_subtest("spec@b@[x]") for e in entries] == [False, True]
    assert not any(e.knows_subtest("spec@b@x") for e in entries)
    assert baseline.apply_subtests(failing_verdict(*subtests), entries).outcome is (
        Outcome.EXPECTED_FAIL)
    text = baseline.dumps(deqprunner.to_baseline(written))
    reread = baseline.parse(__import__("tomllib").loads(text), "b.toml")
    assert reread.entries == deqprunner.to_baseline(written).entries


@pytest.mark.parametrize("name,text,said", [
    ("x-fails.txt", "spec@a@b Fail\n", "x-fails.txt:1: 'spec@a@b Fail' has no comma (test,Status)"),
    ("x-fails.txt", "# c\nspec@a@b,Bogus\n", "x-fails.txt:2: unknown status 'Bogus'"),
    ("x-fails.txt", ",Fail\n", "x-fails.txt:1: ',Fail' has no comma (test,Status)"),
    ("x-flakes.txt", "spec@(a\n", "x-flakes.txt:1: 'spec@(a' is not a regular expression"),
])
def test_a_malformed_line_is_one_error_naming_file_and_line(tmp_path, name, text, said):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        if name.endswith("-fails.txt"):
            deqprunner.read_fails(path)
        else:
            deqprunner.read_patterns(path, "a flakes file")
    (line,) = raised.value.lines if hasattr(raised.value, "lines") else [str(raised.value)]
    assert line.startswith(f"{path.parent}/{said}"), line


def test_baseline_import_of_a_bad_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "x-fails.txt"
    bad.write_text("spec@a@b,Fail\nspec@a@c\n")
    done = subprocess.run([sys.executable, "-m", "harness.cli", "baseline", "import", "--format",
                           "deqp-runner", str(bad), "--out", str(tmp_path / "b.toml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not (tmp_path / "b.toml").exists()
    (line,) = done.stderr.splitlines()
    assert f"{bad}:2: 'spec@a@c' has no comma" in line, line


def test_baseline_import_writes_a_baseline_run_reads(tmp_path):
    out = tmp_path / "b.toml"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "baseline", "import", "--format",
                           "deqp-runner", str(FAILS), "--flakes",
                           str(FILES / "virpipe-gl-flakes.txt"), "--match", "vtest-virgl/*",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: 5 entries: 4 failure, 1 flake, 0 skip")
    known = baseline.load(out)
    assert all(e.match == "vtest-virgl/*" for e in known.entries)
    assert known.entries == deqprunner.to_baseline(FAILS, FILES / "virpipe-gl-flakes.txt",
                                                   match="vtest-virgl/*").entries


def test_a_skips_files_tests_are_left_out_of_a_piglit_profile_before_they_run():
    from harness.matrix import expansion
    from harness.run import runner
    from harness.workloads import registry

    known = deqprunner.load(FAILS)
    assert known.skip_patterns("vtest-virgl/host/gles") == ["^glx@", "^spec@egl"]
    glob = baseline.parse({"known": [{"match": "*", "kind": "skip", "subtest": "spec@a@*",
                                       "reason": "not ours"}]}, "b")
    (pattern,) = glob.skip_patterns("x")
    assert re.search(pattern, "spec@a@b") and not re.search(pattern, "x@spec@a@b")
    declaration = {"matrix": {"paths": ["native"], "probes": ["profile", "binaries"]},
                   "probes": {"profile": {"kind": "piglit", "profile": "quick_gl",
                                          "exclude": ["astc"]},
                              "binaries": {"kind": "piglit", "tests": ["glx-swap-event"]}}}
    scenarios = {s.probe: s for s in expansion.expand(declaration, "m.toml").scenarios}
    options = runner.RunOptions(out_dir=Path("out"), baseline=known)
    left = runner.without_skipped(scenarios["profile"], options)
    assert left.id == scenarios["profile"].id
    assert left.declared is not None and left.declared.settings["exclude"] == ["astc", "^glx@",
                                                                               "^spec@egl"]
    # run in a guest, the scenario meets the baseline again: the same excludes
    assert runner.without_skipped(left, options) == left
    argv = registry.plan(left.declared)["steps"][0]["argv"]
    excluded = [argv[i + 1] for i, word in enumerate(argv) if word == "--exclude"]
    assert excluded == ["astc", "^glx@", "^spec@egl"]  # piglit's runner inside takes them
    # the binary list form runs its tests; the baseline then does not count a skipped one
    assert runner.without_skipped(scenarios["binaries"], options) == scenarios["binaries"]
    assert runner.without_skipped(scenarios["profile"], runner.RunOptions(out_dir=Path("o"))) \
        == scenarios["profile"]
