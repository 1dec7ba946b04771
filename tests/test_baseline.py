"""Baselines: the file (parsed, checked, written), what it makes of every outcome, how a run
applies it (retries, reports, exit codes), and `baseline update`."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness.judging import baseline
from harness import matrix
from harness.run import preparation, runner
from harness.host import toolset
from harness.judging.baseline import Baseline, Kind, Known
from harness.core.errors import InputError, bad_character
from harness.matrix import parse_toml
from harness.scenario.outcomes import FailureKind, Outcome
from harness.judging.verdict import Verdict
from harness.report import records
from tests import fakerun, runs

MISSING, CRASH = FailureKind.MISSING_LIBRARY, FailureKind.CRASH


def parsed(text: str, tmp_path: Path) -> Baseline:
    path = tmp_path / "known.toml"
    path.write_text(text)
    return baseline.load(path)


# --- the file -----------------------------------------------------------------------------------

GOOD = '''
[[known]]
match = "sandbox-hostlibs/*/gl"
kind = "failure"
failure = "missing-library"
reason = "the runtime lacks libglapi"

[[known]]
match = "sandbox-hostlibs/trixie/gl"
kind = "flake"
reason = "exactly this one flakes"

[[known]]
match = "*"
kind = "flake"
reason = "everything else flakes"
'''


def test_a_baseline_file_and_which_entry_knows_a_scenario(tmp_path):
    known = parsed(GOOD, tmp_path)
    assert [e.match for e in known.entries] == ["sandbox-hostlibs/*/gl",
                                                "sandbox-hostlibs/trixie/gl", "*"]
    assert known.entries[0] == Known("sandbox-hostlibs/*/gl", Kind.FAILURE,
                                     "the runtime lacks libglapi", MISSING)
    # the exact entry wins over globs
    assert known.known("sandbox-hostlibs/trixie/gl").kind is Kind.FLAKE
    assert known.known("sandbox-hostlibs/sid/gl").failure is MISSING  # the first glob wins
    assert known.known("vm-virgl/host/gl").reason == "everything else flakes"
    assert parsed("", tmp_path).entries == ()


@pytest.mark.parametrize("text, problem", [
    ("colour = 1", "colour: unknown key (allowed: known)"),
    ("known = 3", "known: must be an array of tables ([[known]]), not 3"),
    ("known = [1]", "known[0]: must be a table ([[known]]), not 1"),
    ('[[known]]\nkind = "failure"\nreason = "r"',
     "known[0].match: must be a non-empty string, not None"),
    ('[[known]]\nmatch = "a"\nkind = "failure"\nreason = ""',
     "known[0].reason: must be a non-empty string, not ''"),
    ('[[known]]\nmatch = "a"\nkind = "fail"\nreason = "r"',
     "known[0].kind: must be one of failure, flake, skip, not 'fail'"),
    ('[[known]]\nmatch = "a"\nkind = "failure"\nfailure = "oops"\nreason = "r"',
     "known[0].failure: 'oops' is not a failure class"),
    ('[[known]]\nmatch = "a"\nkind = "failure"\nfailure = "interrupted"\nreason = "r"',
     "known[0].failure: 'interrupted' is not a failure class"),
    ('[[known]]\nmatch = "a"\nkind = "flake"\nreason = "r"\nwhen = 1',
     "known[0].when: unknown key"),
    ('[[known]]\nmatch = "a"\nkind = "flake"\nreason = "two\\nlines"',
     "known[0].reason: contains a control character"),
    ('[[known]]\nmatch = "a"\nkind = "flake"\nreason = "r"\n[[known]]\nmatch = "a"\nkind = '
     '"failure"\nreason = "s"',
     "known[1].match: 'a' is already known[0]"),
    ("[[known]\n", "not valid TOML"),
])
def test_every_problem_is_one_line_naming_the_file_and_key(tmp_path, text, problem):
    with pytest.raises(InputError) as raised:
        parsed(text, tmp_path)
    [line] = raised.value.problems
    assert line.startswith(str(tmp_path / "known.toml")) and problem in line


def test_a_missing_or_odd_file(tmp_path):
    with pytest.raises(InputError, match="cannot read baseline: no such file"):
        baseline.load(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="cannot read baseline: is a directory"):
        baseline.load(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b'# \xe9\n')
    with pytest.raises(InputError, match="not UTF-8"):
        baseline.load(tmp_path / "latin1.toml")


TEXT = st.text(min_size=1, max_size=40)
ENTRY = st.builds(Known, TEXT, st.sampled_from(list(Kind)), TEXT,
                  st.none() | st.sampled_from([k for k in FailureKind
                                               if k not in baseline.NOT_KNOWABLE]))


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(ENTRY, max_size=5, unique_by=lambda e: e.match))
def test_what_dumps_writes_loads_back_or_is_refused_in_one_line(entries):
    text = baseline.dumps(Baseline("x", tuple(entries)), "a header\nof two lines")
    clean = all(bad_character(e.match) is None and bad_character(e.reason) is None
                and e.match.strip()
                and e.reason.strip()
                # a skip knows subtests: one with none is refused
                and e.kind is not Kind.SKIP for e in entries)
    try:
        loaded = baseline.parse(parse_toml(text, "x"), "x")
    except InputError as exc:
        assert not clean and all("\n" not in problem for problem in exc.problems)
        return
    assert clean and loaded.entries == tuple(entries)


# --- what a baseline makes of an outcome --------------------------------------------------------

FAILURE_ANY, FAILURE_MISSING = Known("s", Kind.FAILURE, "why", None), Known("s", Kind.FAILURE,
                                                                            "why", MISSING)
FLAKE_ANY, FLAKE_CRASH = Known("s", Kind.FLAKE, "why", None), Known("s", Kind.FLAKE, "why", CRASH)
P, F, XF, FL, S, UP = (Outcome.PASS, Outcome.FAIL, Outcome.EXPECTED_FAIL, Outcome.FLAKE,
                       Outcome.SKIP,
                       Outcome.UNEXPECTED_PASS)

# (outcome, failure class) -> what each entry makes of it: no entry, failure (any class),
# failure (missing-library), flake (any), flake (crash).
TABLE = {
    (P, None): (P, UP, UP, P, P),
    (F, MISSING): (F, XF, XF, FL, F),
    (F, CRASH): (F, XF, F, FL, FL),
    (F, FailureKind.INTERRUPTED): (F, F, F, F, F),  # not the scenario's doing: never excused
    (XF, MISSING): (XF, XF, XF, XF, XF),  # the matrix's own expectation stands
    (FL, CRASH): (FL, FL, FL, FL, FL),
    (S, None): (S, S, S, S, S),
    (UP, None): (UP, UP, UP, UP, UP),
}
ENTRIES = (None, FAILURE_ANY, FAILURE_MISSING, FLAKE_ANY, FLAKE_CRASH)


@pytest.mark.parametrize("outcome, kind", list(TABLE))
def test_every_outcome_against_every_kind_of_entry(outcome, kind):
    verdict = Verdict(outcome, "what happened", [], kind)
    got = [baseline.apply(verdict, known, attempts=3).outcome for known in ENTRIES]
    assert got == list(TABLE[(outcome, kind)])


def test_the_reasons_say_what_the_baseline_knew():
    failed = Verdict(F, "missing-library libglapi.so.0", [], MISSING)
    assert baseline.apply(failed,
                          FAILURE_ANY).reason == ("known failure (why): missing-library "
                                                  "libglapi.so.0")
    assert baseline.apply(failed, FLAKE_ANY,
                          3).reason == ("known flake (why), failed all 3 attempts: "
                                                           "missing-library libglapi.so.0")
    assert baseline.apply(Verdict(F, "boom", [], CRASH), FAILURE_MISSING).reason.startswith(
        "a new failure: known failure with missing-library, failed with crash instead: boom")
    passed = baseline.apply(Verdict(P, "all checks passed"), FAILURE_ANY)
    assert (passed.reason == "passed, but the baseline knows it as a failure (why)"
            and passed.failure_kind is None)


def test_a_baseline_reason_that_repeats_the_run_is_said_once():
    failed = Verdict(F, "missing-library libglapi.so.0: probe failed", [], MISSING)
    repeated = Known("s", Kind.FAILURE, "missing-library libglapi.so.0", None)
    assert baseline.apply(failed,
                          repeated).reason == ("known failure: missing-library libglapi.so.0: "
                                               "probe "
                                               "failed")
    unexplained = Known("s", Kind.FAILURE, baseline.UNEXPLAINED, None)
    assert baseline.apply(failed,
                          unexplained).reason == ("known failure: missing-library libglapi.so.0: "
                                                  "probe failed")
    assert baseline.apply(Verdict(P, "ok"),
                          unexplained).reason == "passed, but the baseline knows it as a failure"


@settings(max_examples=300, deadline=None)
@given(outcome=st.sampled_from(list(Outcome)), kind=st.none() | st.sampled_from(list(FailureKind)),
       known=st.none() | ENTRY, attempts=st.integers(1, 5))
def test_a_baseline_never_makes_a_failure_and_excuses_only_what_it_knows(outcome, kind, known,
                                                                         attempts):
    verdict = Verdict(outcome, "r", [], kind)
    judged = baseline.apply(verdict, known, attempts)
    if judged.outcome is Outcome.FAIL:
        assert outcome is Outcome.FAIL  # never a new Fail
        assert known is None or kind is FailureKind.INTERRUPTED or not known.accepts(kind)
    if known is None or outcome in (S, XF, UP):
        assert judged == verdict
    if judged.outcome is Outcome.UNEXPECTED_PASS and outcome is not UP:
        assert known is not None and known.kind is Kind.FAILURE
    if known is not None and known.kind is Kind.FLAKE and outcome is F and known.accepts(kind) \
            and kind not in baseline.NOT_KNOWABLE:
        assert judged.outcome is Outcome.FLAKE


def test_retries_for_known_flakes_and_failures():
    assert baseline.retries(None, 1) == 1
    assert baseline.retries(FLAKE_ANY,
                            0) == baseline.KNOWN_FLAKE_RETRIES and baseline.retries(FLAKE_ANY,
                                                                                    5) == 5
    assert baseline.retries(FAILURE_ANY, 3) == 0


# --- a run with a baseline ----------------------------------------------------------------------

SCENARIOS = matrix.expand({"matrix": {"paths": ["native", "software"], "runtimes": ["host"],
                                      "probes": ["gl", "vulkan"]}}, "<test>").scenarios


def run_scripted(monkeypatch, tmp_path, script, known, retries=0):
    monkeypatch.setattr(runner, "attempt", fakerun.scripted(script))
    options = runner.RunOptions(out_dir=tmp_path, retries=retries, baseline=Baseline("b",
                                                                                     tuple(known)))
    return {r.scenario.id: r for r in runner.run(SCENARIOS, toolset.Toolset("discovery", {}, []),
                                                 options)}


def test_a_run_retries_known_flakes_and_not_known_failures(monkeypatch, tmp_path):
    script = {"native/host/gl": [["Fail", "crash"]], "native/host/vulkan": [["Fail", "crash"],
                                                                            ["Pass", None]],
              "software/host/gl": [["Fail", "missing-library"]], "software/host/vulkan": [["Pass",
                                                                                           None]]}
    known = [Known("native/*", Kind.FLAKE, "ring stall"), Known("software/*", Kind.FAILURE,
                                                                "old Mesa")]
    done = run_scripted(monkeypatch, tmp_path, script, known, retries=1)
    assert {i: (r.verdict.outcome, r.attempts) for i, r in done.items()} == {
        "native/host/gl": (Outcome.FLAKE, 1 + baseline.KNOWN_FLAKE_RETRIES),
        "native/host/vulkan": (Outcome.FLAKE, 2),
        "software/host/gl": (Outcome.EXPECTED_FAIL, 1),
        "software/host/vulkan": (Outcome.UNEXPECTED_PASS, 1),
    }
    assert done["native/host/gl"].known == known[0] and done["software/host/gl"].known == known[1]


def test_a_failure_the_baseline_does_not_know_is_a_fail(monkeypatch, tmp_path):
    script = {"software/host/gl": [["Fail", "crash"]], "native/host/gl": [["Fail", "crash"]]}
    known = [Known("software/host/gl", Kind.FAILURE, "old Mesa", MISSING)]
    done = run_scripted(monkeypatch, tmp_path, script, known)
    assert done["software/host/gl"].verdict.outcome is Outcome.FAIL  # another class: a new failure
    assert (done["native/host/gl"].verdict.outcome is Outcome.FAIL
            and done["native/host/gl"].known is None)


def test_a_runtime_that_failed_to_build_is_judged_by_the_baseline_too(monkeypatch, tmp_path):
    """A runtime build failure known to the baseline (an archive that is gone, say) is an
    ExpectedFail with the baseline's reason; one it does not know stays a Fail."""
    (scenario,) = matrix.expand({"matrix": {"paths": ["vtest-virgl"], "runtimes": ["old"],
                                            "probes": ["gl"]},
                                 "runtimes": {"old": {"kind": "debootstrap",
                                                      "recipe": "bullseye"}}}, "<t>").scenarios
    ready = {"old": runner.RuntimeReady(failure="mmdebstrap failed: snapshot archive unreachable")}
    known = Known("vtest-virgl/old/*", Kind.FAILURE, "the snapshot archive dropped bullseye",
                  "runtime-build")

    monkeypatch.setattr(preparation, "prepare_runtimes", lambda scenarios, options: ready)

    def judged(*entries):
        options = runner.RunOptions(out_dir=tmp_path, baseline=Baseline("b", entries))
        (result,) = runner.run([scenario], toolset.Toolset("discovery", {}, []), options)
        return result

    expected = judged(known)
    assert expected.verdict.outcome is Outcome.EXPECTED_FAIL and expected.known == known
    assert "the snapshot archive dropped bullseye" in expected.verdict.reason
    assert "snapshot archive unreachable" in expected.verdict.reason
    other = judged(Known("vtest-virgl/old/*", Kind.FAILURE, "old Mesa", "missing-library"))
    assert other.verdict.outcome is Outcome.FAIL and "a new failure" in other.verdict.reason
    assert judged().verdict.outcome is Outcome.FAIL


MATRIX = ('[matrix]\npaths = ["native", "software"]\nruntimes = ["host"]\nprobes = ["gl", '
          '"vulkan"]\n')


def fake_cli(tmp_path: Path, script: dict, *args):
    (tmp_path / "script.json").write_text(json.dumps(script))
    (tmp_path / "m.toml").write_text(MATRIX)
    return subprocess.run([sys.executable, "-m", "tests.fakerun", str(tmp_path / "script.json"),
                           *(a.replace("{tmp}", str(tmp_path)) for a in args)],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)


def outcomes(folder: Path) -> dict:
    document = json.loads((folder / "results.json").read_text())
    return {s["id"]: s["outcome"] for s in document["scenarios"]}


def test_run_baseline_and_baseline_update_end_to_end(tmp_path):
    script = {"software/host/gl": [["Fail", "missing-library"]],
              "native/host/vulkan": [["Fail", "driver-hang"]],
              "native/host/gl": [["Fail", "crash"], ["Pass", None]]}
    first = fake_cli(tmp_path, script, "run", "--matrix", "{tmp}/m.toml", "--out", "{tmp}/one",
                     "--retries", "1")
    assert first.returncode == 1, first.stderr  # two failures and no baseline
    update = fake_cli(tmp_path, script, "baseline", "update", "--from", "{tmp}/one", "--out",
                      "{tmp}/known.toml")
    assert update.returncode == 0 and "3 added, 0 kept, 0 dropped" in update.stdout, update.stderr
    written = baseline.load(tmp_path / "known.toml")
    assert {(e.match, e.kind, e.failure) for e in written.entries} == {
        ("software/host/gl", Kind.FAILURE, MISSING), ("native/host/vulkan", Kind.FAILURE,
                                                      FailureKind.DRIVER_HANG),
        ("native/host/gl", Kind.FLAKE, None)}
    second = fake_cli(tmp_path, script, "run", "--matrix", "{tmp}/m.toml", "--out", "{tmp}/two",
                      "--baseline", "{tmp}/known.toml")
    assert second.returncode == 0, second.stderr
    assert outcomes(tmp_path / "two") == {"native/host/gl": "Flake",
                                          "native/host/vulkan": "ExpectedFail",
                                          "software/host/gl": "ExpectedFail",
                                          "software/host/vulkan": "Pass"}
    document = json.loads((tmp_path / "two" / "results.json").read_text())
    assert document["baseline"] == str(tmp_path / "known.toml")
    entry = next(s for s in document["scenarios"] if s["id"] == "software/host/gl")
    # a place for a person's why; the run's words (the first run's last attempt) in a comment above
    # it
    assert entry["baseline"] == {"match": "software/host/gl", "kind": "failure",
                                 "failure": "missing-library",
                                 "reason": baseline.UNEXPLAINED}
    assert '# the run said: Fail on attempt 2\n[[known]]\nmatch = "software/host/gl"' in \
        (tmp_path / "known.toml").read_text()
    assert entry["reason"] == "known failure: Fail on attempt 1"  # nothing said twice, no empty why
    case = ET.parse(tmp_path / "two" / "junit.xml").find("testcase[@name='software/host/gl']")
    assert case.find("properties/property[@name='baseline']").get("value") == "failure"
    assert case.find("failure") is None


def test_an_unexpected_pass_fails_the_run_only_when_asked(tmp_path):
    (tmp_path / "known.toml").write_text('[[known]]\nmatch = "software/host/gl"\nkind = "failure"\n'
                                         'reason = "llvmpipe was broken"\n')
    args = ["run", "--matrix", "{tmp}/m.toml", "--out", "{tmp}/out", "--baseline",
            "{tmp}/known.toml"]
    done = fake_cli(tmp_path, {}, *args)
    assert done.returncode == 0, done.stderr
    assert outcomes(tmp_path / "out")["software/host/gl"] == "UnexpectedPass"
    assert "UnexpectedPass 1" in done.stdout
    asked = fake_cli(tmp_path, {}, *args, "--fail-on-unexpected-pass")
    assert asked.returncode == 1, asked.stderr


def test_a_pass_the_matrix_expected_to_fail_is_an_unexpected_pass_that_fails_the_run(tmp_path):
    """One spelling: the matrix's expected failure that passes is an UnexpectedPass too (the
    verdict says so: test_verdict), and, since the matrix declared it, it fails the run and is a
    JUnit failure without any option; the same outcome the baseline made does not."""
    (tmp_path / "xfail.toml").write_text(MATRIX + '\n[[override]]\nmatch = '
                                                  '"software/host/gl"\nexpect = "fail"\n'
                                                  'reason = "llvmpipe was broken"\n')
    script = {"software/host/gl": [["UnexpectedPass", None]], "native/host/gl": [["UnexpectedPass",
                                                                                  None]]}
    done = fake_cli(tmp_path, script, "run", "--matrix", "{tmp}/xfail.toml", "--out", "{tmp}/out")
    assert done.returncode == 1, done.stderr
    assert outcomes(tmp_path / "out")["software/host/gl"] == "UnexpectedPass"
    junit = ET.parse(tmp_path / "out" / "junit.xml")
    assert junit.find("testcase[@name='software/host/gl']/failure") is not None
    # no expectation of the matrix's
    assert junit.find("testcase[@name='native/host/gl']/failure") is None
    assert junit.getroot().get("failures") == "1"
    alone = fake_cli(tmp_path, {"native/host/gl": [["UnexpectedPass", None]]}, "run", "--matrix",
                     "{tmp}/m.toml",
                     "--out", "{tmp}/alone")
    assert alone.returncode == 0, alone.stderr
    update = fake_cli(tmp_path, script, "baseline", "update", "--from", "{tmp}/out", "--out",
                      "{tmp}/known.toml")
    assert ("not known: software/host/gl (interrupted, or a matrix expectation that passed"
            in update.stdout)


def test_a_baseline_entry_that_matches_nothing_is_refused_like_an_override(tmp_path):
    (tmp_path / "known.toml").write_text('[[known]]\nmatch = "vtest-venus/trixy/*"\nkind = '
                                         '"failure"\nreason = "r"\n'
                                         '[[known]]\nmatch = "software/host/gl"\nkind = '
                                         '"failure"\nreason = "r"\n')
    done = fake_cli(tmp_path, {}, "run", "--matrix", "{tmp}/m.toml", "--out", "{tmp}/out",
                    "--baseline", "{tmp}/known.toml")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line == (f"gpu-harness: error: {tmp_path}/known.toml: known[0].match: "
                    "'vtest-venus/trixy/*' matches no "
                    f"scenario of {tmp_path}/m.toml")
    assert not (tmp_path / "out").exists()
    # a matrix entry of the same kind says it the same way
    (tmp_path / "over.toml").write_text(MATRIX + '[[override]]\nmatch = '
                                                 '"vtest-venus/trixy/*"\ntimeout_s = 5\n')
    over = fake_cli(tmp_path, {}, "list", "--matrix", "{tmp}/over.toml")
    assert over.returncode == 2 and "'vtest-venus/trixy/*' matches no scenario" in over.stderr


def test_a_bad_baseline_stops_the_run_before_it_starts(tmp_path):
    (tmp_path / "known.toml").write_text('[[known]]\nmatch = "x"\nkind = "sometimes"\nreason = '
                                         '"r"\n')
    done = fake_cli(tmp_path, {}, "run", "--matrix", "{tmp}/m.toml", "--out", "{tmp}/out",
                    "--baseline", "{tmp}/known.toml")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line == (f"gpu-harness: error: {tmp_path}/known.toml: known[0].kind: must be one of "
                    "failure, flake, skip, not 'sometimes'")
    assert not (tmp_path / "out" / "results.json").exists()
    missing = fake_cli(tmp_path, {}, "baseline", "update", "--from", "{tmp}/nothing", "--out",
                       "{tmp}/k.toml")
    assert (missing.returncode == 2 and missing.stderr.count("\n") == 1
            and "cannot read results" in missing.stderr)


# --- baseline update ----------------------------------------------------------------------------

def verdict_of(scenario: dict) -> Verdict:
    kind = FailureKind(scenario["failure_kind"]) if scenario.get("failure_kind") else None
    return Verdict(Outcome(scenario["outcome"]), scenario["reason"], [], kind)


def test_update_knows_every_failure_and_flake_of_a_run():
    scenarios = runs.document(seed=3)["scenarios"]
    done = baseline.update(records.entries(scenarios), None, "known.toml")
    assert done.kept == [] and done.dropped == [] and done.added
    for scenario in scenarios:
        known = done.baseline.known(scenario["id"])
        judged = baseline.apply(verdict_of(scenario), known)
        assert judged.outcome is not Outcome.FAIL, scenario["id"]
        matrix_expected = (scenario["outcome"] == "ExpectedFail"
                           and scenario["expect"]["outcome"] == "fail")
        if scenario["outcome"] in ("Pass", "Skip", "UnexpectedPass") or matrix_expected:
            assert known is None
        else:
            assert known.reason == baseline.UNEXPLAINED
            assert known.said == baseline.one_line_reason(records.entry(scenario))


def test_update_keeps_a_persons_reasons_and_drops_what_passes_now():
    scenarios = runs.document(seed=4)["scenarios"]
    failing = next(s for s in scenarios if s["outcome"] == "Fail"
                   and s["failure_kind"] not in ("interrupted",))
    passing = next(s for s in scenarios if s["outcome"] == "Pass")
    skipped = next(s for s in scenarios if s["outcome"] == "Skip")
    current = Baseline("known.toml", (
        Known(failing["id"], Kind.FAILURE, "a person's words"),
        Known(passing["id"], Kind.FAILURE, "fixed since"),
        Known(skipped["id"], Kind.FLAKE, "cannot tell here"),
        Known("not-in-this-run/*", Kind.FLAKE, "another machine's"),
    ))
    done = baseline.update(records.entries(scenarios), current, "known.toml")
    assert [e.reason for e in done.kept] == ["a person's words", "cannot tell here",
                                             "another machine's"]
    assert [e.match for e in done.dropped] == [passing["id"]]
    assert failing["id"] not in [e.match for e in done.added]
    assert done.baseline.entries[:3] == tuple(done.kept)
