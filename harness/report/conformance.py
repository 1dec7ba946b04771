"""The vtest compatibility answer's conformance figures: where a vtest scenario ran a piglit
profile, its subtests against the same tests run natively on the same client Mesa (llvmpipe, in
the same runtime: a path that renders with the runtime's own Mesa in software), so that each
client x server pair says its pass rate against native and the tests that pass natively and fail
or skip through vtest (the protocol's gaps: a skip is a feature the client did not get)."""
from typing import Dict, List, Optional, Sequence

from ..host.diagnosis import LOST_SERVER  # Mesa's vtest client's words: its server went away
from ..scenario.outcomes import SubtestOutcome
from ..scenario.paths import LLVMPIPE, PATHS, VM_TOOLS
from .records import ScenarioEntry

# the paths that render with the runtime's own Mesa in software, no server between (llvmpipe
# promised, or the fps reference; not in a machine): the native side of a comparison
NATIVE_PATHS = tuple(path_id for path_id, spec in PATHS.items()
                     if (spec.renderers.get("gl") == LLVMPIPE or spec.fps_reference)
                     and not spec.services and VM_TOOLS[0] not in spec.requires)
GAPS_KEPT = 50  # gap names a record keeps (its count is whole)
CONFORMANCE_KINDS = ("piglit",)  # the workload kinds whose subtests are a suite's tests


def native_of(scenario: ScenarioEntry, scenarios: Sequence[ScenarioEntry]
              ) -> Optional[ScenarioEntry]:
    """The same runtime's and probe's scenario on a native path that ran subtests, on the same
    machine and host."""
    found = [s for s in scenarios if s.path in NATIVE_PATHS and s.runtime == scenario.runtime
             and s.probe == scenario.probe and s.subtests and s.host == scenario.host
             and s.machine == scenario.machine]
    return min(found, key=lambda s: NATIVE_PATHS.index(s.path)) if found else None


def passed(scenario: ScenarioEntry) -> List[str]:
    return [s.name for s in scenario.subtests if s.outcome is SubtestOutcome.PASS]


def conformance_run(scenario: ScenarioEntry) -> bool:
    """Whether its subtests are a conformance suite's tests (the piglit kind's), not the steps of
    a user's command."""
    result = scenario.raw.get("probe_result")
    workload = result.get("workload") if isinstance(result, dict) else None
    return isinstance(workload, dict) and workload.get("kind") in CONFORMANCE_KINDS


def figures(group: Sequence[ScenarioEntry],
            scenarios: Sequence[ScenarioEntry]) -> Dict[str, object]:
    """For the vtest scenarios of one client x server x probe: their tests, those that pass, the
    pass rate against native where a native run of the same tests is there, and the gaps."""
    group = [s for s in group if conformance_run(s)]
    tests = sum(len(s.subtests) for s in group)
    if not tests:
        return {}
    through = sum(len(passed(s)) for s in group)
    found: Dict[str, object] = {"tests": tests, "passed": through}
    lost = [t.name for s in group for t in s.subtests if LOST_SERVER in t.detail]
    crashes = sum(int(s.raw.get("vtest_server_crashes") or 0) for s in group)
    if lost or crashes:  # the server side gave way under the client
        found.update(lost_server=len(lost), lost_server_tests=lost[:GAPS_KEPT],
                     server_crashes=crashes)
    natively, both, gaps = 0, 0, []
    for scenario in group:
        native = native_of(scenario, scenarios)
        if native is None:
            continue
        ran = {s.name for s in scenario.subtests}
        native_pass = set(passed(native)) & ran
        vtest_pass = set(passed(scenario))
        natively += len(native_pass)
        both += len(native_pass & vtest_pass)
        gaps += sorted(native_pass - vtest_pass)
    if natively:
        found.update(native_passed=natively, passed_of_native=both,
                     pass_vs_native=round(both / natively, 4), gap_count=len(gaps),
                     gaps=gaps[:GAPS_KEPT])
    return found


def cell_text(found: Dict[str, object]) -> Optional[str]:
    lost = f"; {found['lost_server']} lost the server" if found.get("lost_server") else ""
    if "pass_vs_native" in found:
        share = float(found["pass_vs_native"])  # type: ignore[arg-type]
        return (f"{100 * share:.0f}% of native ({found['passed_of_native']}/"
                f"{found['native_passed']} of {found['tests']}); {found['gap_count']} gaps{lost}")
    if "tests" in found:
        return f"{found['passed']}/{found['tests']} tests pass (no native run to compare){lost}"
    return None
