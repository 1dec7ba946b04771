"""Baselines (deqp-runner's idea): a file of known failures and known flakes, each with a reason,
that `run --baseline FILE` applies to the run's verdicts, and `baseline update` writes from a run.

    [[known]]
    match = "sandbox-hostlibs/trixie/*"   # a scenario id, or a glob over ids
    kind = "failure"                      # failure | flake
    failure = "missing-library"           # optional: the class the failure must have
    reason = "trixie's runtime lacks the host driver's libglapi"

A known failure that fails is an ExpectedFail; one that passes is an UnexpectedPass (reported; a
failure of the run only with --fail-on-unexpected-pass); one that fails with another class than
its entry names is a Fail (a new failure). A known flake is retried and never fails the run: a
Fail on every attempt becomes a Flake. An entry that names a scenario exactly wins over a glob;
among globs the first wins. The matrix's own expectations (`expect = "fail"`) are applied first
and are not the baseline's business. (The path other paths' fps is compared with is the fps
reference path, harness.report.fpsshare: not a baseline.)"""
import enum
import fnmatch
import functools
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

from ..core.errors import InputError, bad_character, cut, read_text, shown
from ..scenario.outcomes import FailureKind, Outcome, Subtest, SubtestOutcome
from .verdict import Verdict

KNOWN_FLAKE_RETRIES = 2  # attempts after the first for a known flake, whatever --retries says
REASON_LIMIT = 300  # characters of a scenario's reason that `baseline update` keeps (in a comment)
# What `baseline update` writes where a person's why belongs; the run's own words go in a comment.
UNEXPLAINED = "why is not written yet"
# Not a property of the scenario: never known, never excused.
NOT_KNOWABLE = (FailureKind.INTERRUPTED,)
KEYS = ("match", "kind", "failure", "reason", "host", "subtest", "subtest_regex")


class Kind(str, enum.Enum):
    FAILURE = "failure"
    FLAKE = "flake"
    SKIP = "skip"  # subtests not to count (deqp-runner's skips): their failures are no failures

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Known:
    match: str
    kind: Kind
    reason: str  # a person's why (`baseline update` leaves a place for it: UNEXPLAINED)
    failure: Optional[FailureKind] = None  # the class a known failure must fail with; None: any
    # what the run said (a comment in the file; not read back)
    said: str = field(default="", compare=False)
    # a glob over the host class it holds on (run --host-class); None: every host
    host: Optional[str] = None
    # a glob over a workload's subtest names: it knows those, not the scenario
    subtest: Optional[str] = None
    # or a regular expression searched in them (deqp-runner's flakes and skips)
    subtest_regex: Optional[str] = None

    @property
    def of_subtests(self) -> bool:
        return self.subtest is not None or self.subtest_regex is not None

    def knows_subtest(self, name: str) -> bool:
        if self.subtest is not None:
            return name == self.subtest or fnmatch.fnmatchcase(name, self.subtest)
        return (self.subtest_regex is not None
                and compiled(self.subtest_regex).search(name) is not None)

    @property
    def exact(self) -> bool:
        return not any(char in self.match for char in "*?[")

    def covers(self, scenario_id: str, host_class: str = "") -> bool:
        if self.host is not None and not fnmatch.fnmatchcase(host_class, self.host):
            return False
        return self.match == scenario_id if self.exact else fnmatch.fnmatchcase(scenario_id,
                                                                                self.match)

    def accepts(self, kind: Optional[FailureKind]) -> bool:
        """Whether a failure of this class is the one the entry knows."""
        return self.failure is None or kind == self.failure

    def to_dict(self) -> dict:
        return {"match": self.match, "kind": self.kind.value, "reason": self.reason,
                "failure": self.failure.value if self.failure else None, **({"host": self.host}
                                                                            if self.host else {}),
                **({"subtest": self.subtest} if self.subtest else {}),
                **({"subtest_regex": self.subtest_regex} if self.subtest_regex else {})}


@dataclass(frozen=True)
class Baseline:
    source: str
    entries: Tuple[Known, ...] = ()

    def known(self, scenario_id: str, host_class: str = "") -> Optional[Known]:
        whole = [e for e in self.entries if not e.of_subtests]
        exact = next((e for e in whole if e.exact and e.covers(scenario_id, host_class)), None)
        return exact or next((e for e in whole if e.covers(scenario_id, host_class)), None)

    def skip_patterns(self, scenario_id: str, host_class: str = "") -> List[str]:
        """The subtests the baseline skips in this scenario, as regular expressions searched in a
        subtest's name (a glob anchored whole)."""
        return [e.subtest_regex if e.subtest_regex is not None
                else f"^{fnmatch.translate(e.subtest or '')}"
                for e in self.subtests_known(scenario_id, host_class) if e.kind is Kind.SKIP]

    def subtests_known(self, scenario_id: str, host_class: str = "") -> List[Known]:
        """The entries that know subtests of this scenario, exact matches first."""
        found = [e for e in self.entries if e.of_subtests and e.covers(scenario_id, host_class)]
        return sorted(found, key=lambda e: not e.exact)


@functools.lru_cache(maxsize=4096)
def compiled(pattern: str) -> "re.Pattern[str]":
    return re.compile(pattern)


# --- reading ------------------------------------------------------------------------------------

KNOWABLE_CLASSES = [kind.value for kind in FailureKind if kind not in NOT_KNOWABLE]


def string_problem(key: str, value: object) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return f"{key}: must be a non-empty string, not {shown(value)}"
    why = bad_character(value)
    return f"{key}: {why}" if why else None


def entry_problems(key: str, entry: object) -> List[str]:
    if not isinstance(entry, dict):
        return [f"{key}: must be a table ([[known]]), not {shown(entry)}"]
    problems = [f"{key}.{cut(name, 40)}: unknown key (allowed: {', '.join(KEYS)})" for name in entry
                if name not in KEYS]
    for name in ("match", "reason"):
        problem = string_problem(f"{key}.{name}", entry.get(name))
        problems += [problem] if problem else []
    if entry.get("kind") not in [kind.value for kind in Kind]:
        problems.append(f"{key}.kind: must be one of {', '.join(k.value for k in Kind)}, not "
                        f"{shown(entry.get('kind'))}")
    if "failure" in entry and entry["failure"] not in KNOWABLE_CLASSES:
        problems.append(f"{key}.failure: {shown(entry['failure'])} is not a failure class "
                        f"(one of {', '.join(KNOWABLE_CLASSES)})")
    for name in ("host", "subtest", "subtest_regex"):
        if entry.get(name) is not None:
            problem = string_problem(f"{key}.{name}", entry[name])
            problems += [problem] if problem else []
    if entry.get("subtest") is not None and entry.get("subtest_regex") is not None:
        problems.append(f"{key}.subtest_regex: give subtest or subtest_regex, not both")
    if isinstance(entry.get("subtest_regex"), str):
        try:
            re.compile(entry["subtest_regex"])
        except re.error as exc:
            problems.append(f"{key}.subtest_regex: not a regular expression: {exc}")
    if entry.get("kind") == Kind.SKIP.value and not (entry.get("subtest")
                                                     or entry.get("subtest_regex")):
        problems.append(f"{key}.kind: skip knows subtests (subtest or subtest_regex)")
    return problems


def parse(data: object, source: str) -> Baseline:
    """A baseline from its parsed TOML; every problem is one line of the InputError."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: not a baseline (a TOML document with [[known]] entries)")
    problems = [f"{cut(name, 40)}: unknown key (allowed: known)" for name in data
                if name != "known"]
    listed = data.get("known", [])
    if not isinstance(listed, list):
        problems.append(f"known: must be an array of tables ([[known]]), not {shown(listed)}")
        listed = []
    first: Dict[tuple, int] = {}
    for index, entry in enumerate(listed):
        found = entry_problems(f"known[{index}]", entry)
        problems += found
        where = ((entry.get("match"), entry.get("host"), entry.get("subtest"),
                  entry.get("subtest_regex"))
                 if isinstance(entry, dict) else None)
        if not found and where in first:
            problems.append(f"known[{index}].match: {shown(entry['match'])} is already "
                            f"known[{first[where]}]")
        elif not found and where is not None:
            first[where] = index
    if problems:
        raise InputError([f"{source}: {problem}" for problem in problems])
    return Baseline(source, tuple(Known(e["match"], Kind(e["kind"]), e["reason"],
                                        FailureKind(e["failure"]) if "failure" in e else None,
                                        host=e.get("host"), subtest=e.get("subtest"),
                                        subtest_regex=e.get("subtest_regex"))
                                  for e in listed))


def load(path: Path) -> Baseline:
    from ..matrix import parse_toml  # TOML errors said the matrix's way

    source = str(path)
    if not Path(path).is_file():
        raise InputError(f"{source}: cannot read baseline: "
                         f"{'is a directory' if Path(path).is_dir() else 'no such file'}")
    return parse(parse_toml(read_text(path, "baseline"), source), source)


def check_matches(baseline: Baseline, scenario_ids: List[str], matrix_source: str) -> None:
    """An entry that matches no scenario of the matrix is a typo or a stale entry: an InputError,
    as a matrix override that matches nothing is."""
    problems = [f"{baseline.source}: known[{index}].match: {shown(entry.match)} matches no "
                f"scenario of {matrix_source}"
                for index, entry in enumerate(baseline.entries)
                if not any(entry.covers(scenario_id) for scenario_id in scenario_ids)]
    if problems:
        raise InputError(problems)


# --- applying -----------------------------------------------------------------------------------

def retries(known: Optional[Known], asked: int) -> int:
    """Attempts after the first: a known flake gets at least KNOWN_FLAKE_RETRIES; a known failure
    none (it is expected to fail; retrying it would only cost time)."""
    if known is None:
        return asked
    return max(asked, KNOWN_FLAKE_RETRIES) if known.kind is Kind.FLAKE else 0


def apply(verdict: Verdict, known: Optional[Known], attempts: int = 1) -> Verdict:
    """The run's verdict (after retries) judged against the baseline's entry for the scenario."""
    outcome, kind = verdict.outcome, verdict.failure_kind
    if known is None or outcome in (Outcome.SKIP, Outcome.EXPECTED_FAIL, Outcome.UNEXPECTED_PASS):
        return verdict
    # The entry's why, unless it only repeats what the run says (or none was written yet).
    said = ("" if known.reason == UNEXPLAINED or known.reason in verdict.reason
            else f" ({known.reason})")
    if known.kind is Kind.FAILURE and outcome is Outcome.PASS:
        return replace(verdict, outcome=Outcome.UNEXPECTED_PASS, failure_kind=None, subject="",
                       reason=f"passed, but the baseline knows it as a failure{said}")
    if outcome is Outcome.PASS or kind in NOT_KNOWABLE:
        return verdict
    if outcome is Outcome.FAIL and not known.accepts(kind):
        return replace(verdict,
                       reason=f"a new failure: known {known.kind} with {known.failure}, failed "
                              "with "
                                       f"{kind} instead: {verdict.reason}")
    if outcome is Outcome.FLAKE:
        return replace(verdict, reason=f"known {known.kind}{said}: {verdict.reason}")
    if known.kind is Kind.FAILURE:
        return replace(verdict, outcome=Outcome.EXPECTED_FAIL,
                       reason=f"known failure{said}: {verdict.reason}")
    return replace(verdict, outcome=Outcome.FLAKE,
                   reason=f"known flake{said}, failed all {attempts} attempts: {verdict.reason}")


GLOB = re.compile(r"[*?\[]")


class SubtestIndex:
    """The entries that know subtests, looked up by name: one naming a subtest exactly is found
    in a table (a fails file names thousands), the globs and patterns are tried in order."""

    def __init__(self, entries: Sequence[Known]) -> None:
        self.exact: Dict[str, Known] = {}
        for entry in entries:
            if entry.subtest is not None and not GLOB.search(entry.subtest):
                self.exact.setdefault(entry.subtest, entry)
        self.rest = [e for e in entries if e.of_subtests and (e.subtest is None
                                                               or GLOB.search(e.subtest))]

    def find(self, name: str) -> Optional[Known]:
        return self.exact.get(name) or next((e for e in self.rest if e.knows_subtest(name)), None)


def apply_subtests(verdict: Verdict, entries: List[Known]) -> Verdict:
    """The verdict of a workload judged against the entries that know its subtests."""
    if not entries or not verdict.subtests or verdict.outcome in (Outcome.SKIP,
                                                                  Outcome.EXPECTED_FAIL):
        return verdict
    index = SubtestIndex(entries)
    failed = [(s, index.find(s.name)) for s in verdict.subtests if s.outcome.failed]
    skipped = [s.name for s, entry in failed if entry is not None and entry.kind is Kind.SKIP]
    failed = [(s, entry) for s, entry in failed if entry is None or entry.kind is not Kind.SKIP]
    new = [s.name for s, entry in failed if entry is None]
    fixed = [s.name for s in verdict.subtests if s.outcome in (SubtestOutcome.PASS,
                                                               SubtestOutcome.WARN)
             and (entry := index.find(s.name)) is not None and entry.kind is Kind.FAILURE]
    only_subtests = all(c.ok or c.name == "subtests" for c in verdict.checks)
    if new or not only_subtests:
        return (replace(verdict, reason=f"new failing subtests {', '.join(new[:8])}: "
                                        f"{verdict.reason}")
                if new else verdict)
    if failed:
        flaky = all(entry is not None and entry.kind is Kind.FLAKE for _, entry in failed)
        why = "; ".join(sorted({entry.reason for _, entry in failed if entry
                                and entry.reason != UNEXPLAINED}))
        return replace(verdict, outcome=Outcome.FLAKE if flaky else Outcome.EXPECTED_FAIL,
                       reason=f"known {'flaky' if flaky else 'failing'} subtests only"
                              f"{f' ({why})' if why else ''}: {verdict.reason}")
    if skipped and verdict.outcome is Outcome.FAIL and not fixed:
        return replace(verdict, outcome=Outcome.PASS,
                       reason=f"failing subtests the baseline skips only: {', '.join(skipped[:8])}")
    if fixed:
        return replace(verdict, outcome=Outcome.UNEXPECTED_PASS,
                       reason="subtests the baseline knows as failures passed: "
                              f"{', '.join(fixed[:8])}")
    return verdict


# --- writing from a run -------------------------------------------------------------------------

class RunScenario(Protocol):
    """A scenario of a run as `baseline update` reads it (harness.report.records.ScenarioEntry,
    read from the run's results.json)."""

    @property
    def id(self) -> str: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def failure(self) -> Optional[FailureKind]: ...

    @property
    def matrix_expects_failure(self) -> bool: ...

    @property
    def subtests(self) -> Sequence[Subtest]: ...

    @property
    def host_class(self) -> str: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Update:
    baseline: Baseline
    added: List[Known]
    kept: List[Known]
    dropped: List[Known]
    # failures a baseline cannot hold (interrupted, a matrix expectation that passed)
    not_known: List[str]


def needed(scenario: RunScenario) -> Optional[Tuple[Kind, Optional[FailureKind]]]:
    """What a baseline must know of a scenario of a run for that run to have no new failure."""
    outcome = scenario.outcome
    if outcome is Outcome.FLAKE:
        return Kind.FLAKE, None
    if outcome is Outcome.FAIL or (outcome is Outcome.EXPECTED_FAIL
                                   and not scenario.matrix_expects_failure):
        return Kind.FAILURE, scenario.failure
    return None


def failing_subtests(scenario: RunScenario) -> List[Subtest]:
    return [s for s in scenario.subtests if s.outcome.failed]


def keeps(entry: Known, scenarios: Sequence[RunScenario], current: Baseline) -> bool:
    """An old entry stays where the run cannot say it is obsolete (it covers nothing run here,
    or only Skips) or where a scenario still needs it (a subtest's: still fails that subtest)."""
    if entry.of_subtests:
        covered = [s for s in scenarios if entry.covers(s.id, s.host_class)]
        if not covered or any(s.outcome is Outcome.SKIP for s in covered):
            return True
        return any(entry.knows_subtest(failed.name) for s in covered
                   for failed in failing_subtests(s))
    covered = [s for s in scenarios if current.known(s.id, s.host_class) is entry]
    if not covered or any(s.outcome is Outcome.SKIP for s in covered):
        return True
    return any((need := needed(s)) is not None and need[0] is entry.kind and entry.accepts(need[1])
               for s in covered)


def one_line_reason(scenario: RunScenario) -> str:
    return cut(" ".join(scenario.reason.split()), REASON_LIMIT) or "no reason given"


def update(scenarios: Sequence[RunScenario], current: Optional[Baseline], source: str) -> Update:
    """The baseline under which this run has no new failure: the current one's still-needed
    entries (their reasons are a person's words), plus an exact entry for each other failure or
    flake, with its class, a place for a person's why (UNEXPLAINED) and the run's own words."""
    current = current or Baseline(source)
    kept = [e for e in current.entries if keeps(e, scenarios, current)]
    dropped = [e for e in current.entries if e not in kept]
    partial = Baseline(source, tuple(kept))
    added, not_known = [], []
    for scenario in sorted(scenarios, key=lambda s: s.id):
        if scenario.matrix_expects_failure and scenario.outcome is Outcome.UNEXPECTED_PASS:
            # the matrix is wrong, not the run: a baseline cannot say so
            not_known.append(scenario.id)
            continue
        need = needed(scenario)
        if need is None:
            continue
        kind, failure = need
        if failure in NOT_KNOWABLE:
            not_known.append(scenario.id)
            continue
        host_class = scenario.host_class
        if failure is FailureKind.SUBTEST_FAILED and failing_subtests(scenario):
            known_here = SubtestIndex(partial.subtests_known(scenario.id, host_class))
            added += [Known(scenario.id, kind, UNEXPLAINED, None, cut(f"{s.outcome}: {s.detail}",
                                                                      REASON_LIMIT),
                            host_class or None, s.name)
                      for s in failing_subtests(scenario) if known_here.find(s.name) is None]
            continue
        old = partial.known(scenario.id, host_class)
        if old is not None and old.kind is kind and old.accepts(failure):
            continue
        added.append(Known(scenario.id, kind, UNEXPLAINED, failure if kind is Kind.FAILURE
                           else None,
                           one_line_reason(scenario), host_class or None))
    return Update(Baseline(source, tuple(kept + added)), added, kept, dropped, not_known)


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also forbids DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def dumps(baseline: Baseline, header: str = "") -> str:
    lines = ["# gpu-harness baseline: known failures and flakes (gpu-harness run --baseline FILE)"]
    lines += [f"# {line}" for line in header.splitlines()]
    for entry in baseline.entries:
        lines += ["", *(f"# the run said: {line}" for line in [entry.said] if line), "[[known]]",
                  f"match = {toml_string(entry.match)}", f"kind = {toml_string(entry.kind.value)}"]
        if entry.failure is not None:
            lines.append(f"failure = {toml_string(entry.failure.value)}")
        lines.append(f"reason = {toml_string(entry.reason)}")
        if entry.host is not None:
            lines.append(f"host = {toml_string(entry.host)}")
        if entry.subtest is not None:
            lines.append(f"subtest = {toml_string(entry.subtest)}")
        if entry.subtest_regex is not None:
            lines.append(f"subtest_regex = {toml_string(entry.subtest_regex)}")
    return "\n".join(lines) + "\n"
