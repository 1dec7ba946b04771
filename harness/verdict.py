"""ProbeResult + expectation -> Verdict (Pass / Fail / ExpectedFail / Flake / Skip), each with a
one-line reason. Result semantics follow deqp-runner: an expected failure that passes is a Fail."""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import paths as path_registry
from .images import Comparison
from .launchers.base import ProbeResult
from .matrix import Scenario

PASS, FAIL, EXPECTED_FAIL, FLAKE, SKIP = "Pass", "Fail", "ExpectedFail", "Flake", "Skip"
OUTCOMES = (PASS, FAIL, EXPECTED_FAIL, FLAKE, SKIP)
GOOD_OUTCOMES = (PASS, EXPECTED_FAIL, FLAKE, SKIP)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    outcome: str
    reason: str
    checks: List[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome == FAIL


@dataclass
class HostFacts:
    """What the verdict compares the workload's view with."""

    namespaces: Dict[str, str]
    has_render_node: bool


def one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def launch_failure(result: ProbeResult, timeout_s: float) -> Optional[str]:
    """Why the probe produced no usable result, or None if it did."""
    log = one_line(result.log_tail(3))
    if result.exit is None:
        return result.problem or "probe never started"
    if result.exit.timed_out:
        return f"probe timed out after {timeout_s:g} s and was killed" + (f": {log}" if log else "")
    if result.problem:
        return f"{result.problem}; probe {result.exit.describe()}" + (f": {log}" if log else "")
    if result.data is None:
        return f"probe {result.exit.describe()} without a result" + (f": {log}" if log else "")
    if not result.data.get("ok"):
        return f"probe failed: {result.data.get('error', 'no error given')}"
    if result.exit.code != 0:
        return f"probe reported success but {result.exit.describe()}"
    return None


def renderer_check(scenario: Scenario, data: dict, host: HostFacts) -> Check:
    pattern = path_registry.expected_renderer(scenario.spec, host.has_render_node)
    renderer = data.get("renderer", "")
    ok = re.search(pattern, renderer) is not None
    if ok:
        return Check("renderer", True, f"renderer {renderer!r} matches {pattern!r}")
    if "llvmpipe" in renderer.lower() and "llvmpipe" not in pattern:
        return Check("renderer", False, f"silent fallback to software: renderer {renderer!r}, expected {pattern!r}")
    return Check("renderer", False, f"renderer {renderer!r} does not match {pattern!r}")


def isolation_checks(scenario: Scenario, data: dict, host: HostFacts) -> List[Check]:
    spec, facts = scenario.spec, data.get("isolation", {})
    checks = []
    if spec.no_dri_nodes:
        nodes = facts.get("dri_nodes", [])
        checks.append(Check("no-dri", not nodes, f"{len(nodes)} /dev/dri nodes visible" +
                            (f": {', '.join(nodes)}" if nodes else "")))
    if spec.needs_render_node:
        nodes = [n for n in facts.get("dri_nodes", []) if "renderD" in n]
        checks.append(Check("render-node", bool(nodes), f"{len(nodes)} render nodes visible"))
    if spec.hides_host:
        visible = facts.get("host_paths_visible_list", [])
        checks.append(Check("host-hidden", not visible,
                            f"{len(visible)} of {facts.get('host_paths_checked', 0)} host paths visible" +
                            (f": {', '.join(visible)}" if visible else "")))
    if spec.own_namespaces:
        seen = facts.get("namespaces", {})
        shared = [ns for ns in spec.own_namespaces if seen.get(ns) and seen.get(ns) == host.namespaces.get(ns)]
        checks.append(Check("namespaces", not shared,
                            f"shares the host's {', '.join(shared)} namespace" if shared
                            else f"own {', '.join(spec.own_namespaces)} namespaces"))
    return checks


def scanout_check(result: ProbeResult, scanout: Optional[Comparison]) -> Check:
    if not result.scanout_path:
        return Check("scanout", False, "no scanout captured from outside the machine")
    if scanout is None:
        return Check("scanout", True, "scanout captured (not compared)")
    return Check("scanout", scanout.matched, "scanout " + scanout.reason)


def judge(scenario: Scenario, result: ProbeResult, comparison: Optional[Comparison], host: HostFacts,
          scanout: Optional[Comparison] = None) -> Verdict:
    if result.skipped:
        return Verdict(SKIP, result.skipped)
    failure = launch_failure(result, scenario.timeout_s)
    checks: List[Check] = []
    if failure is None:
        checks.append(renderer_check(scenario, result.data, host))
        if comparison is not None:
            checks.append(Check("image", comparison.matched, comparison.reason))
        if scenario.spec.scanout:
            checks.append(scanout_check(result, scanout))
        checks.extend(isolation_checks(scenario, result.data, host))
        bad = [c for c in checks if not c.ok]
        failure = "; ".join(c.detail for c in bad) if bad else None
    return apply_expectation(scenario, failure, checks)


def apply_expectation(scenario: Scenario, failure: Optional[str], checks: List[Check]) -> Verdict:
    expected_fail = scenario.expect.outcome == "fail"
    if failure is None and not expected_fail:
        renderer = next((c.detail for c in checks if c.name == "renderer"), "")
        return Verdict(PASS, "all checks passed: " + renderer, checks)
    if failure is None:
        return Verdict(FAIL, f"passed, but expected to fail ({scenario.expect.reason})", checks)
    if expected_fail:
        return Verdict(EXPECTED_FAIL, f"failed as expected ({scenario.expect.reason}): {failure}", checks)
    return Verdict(FAIL, failure, checks)


def combine_attempts(verdicts: List[Verdict]) -> Verdict:
    """Retries: a Fail followed by a Pass is a Flake; the last verdict stands otherwise."""
    last = verdicts[-1]
    if last.outcome == PASS and any(v.outcome == FAIL for v in verdicts[:-1]):
        first_fail = next(v for v in verdicts if v.outcome == FAIL)
        return Verdict(FLAKE, f"passed on attempt {len(verdicts)} after: {first_fail.reason}", last.checks)
    return last

