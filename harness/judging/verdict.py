"""What the launch saw and what the probe reported, against the scenario's expectation ->
Verdict (Pass / Fail / ExpectedFail / Flake / Skip), with a one-line reason, a failure class and
the checks behind it. The verdict owns judging, the image and scanout comparisons included.
Result semantics follow deqp-runner: an expected failure that passes is a Fail."""
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..core.errors import joined_lines
from . import screen
from ..host import diagnosis, emulation, hostdriver
from ..scenario import imagecompare, machine_specs, paths as path_registry, probes
from ..scenario.imagecompare import Comparison, UnreadableImage
from ..launch.lifecycle import HarnessFault, LaunchResult
from ..scenario.model import Scenario
from ..scenario.outcomes import Failure, FailureKind, Outcome, Subtest, SubtestOutcome
from ..scenario.probes import ProbeReport
from ..system.process import tail
from ..launch.vtest import SERVICE as VTEST_SERVICE
from ..workloads import registry as workloads

PASS, FAIL, EXPECTED_FAIL, FLAKE, SKIP = (Outcome.PASS, Outcome.FAIL, Outcome.EXPECTED_FAIL,
                                          Outcome.FLAKE,
                                          Outcome.SKIP)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    kind: Optional[FailureKind] = None  # the failure class when the check fails
    # files behind it: image, golden, diff, ...
    artifacts: Dict[str, str] = field(default_factory=dict)


@dataclass
class Verdict:
    outcome: Outcome
    reason: str
    checks: List[Check] = field(default_factory=list)
    failure_kind: Optional[FailureKind] = None
    subject: str = ""  # what the failure class is about: the soname, the glibc version, the signal
    # a declared workload's, each judged by its kind
    subtests: List[Subtest] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL


@dataclass
class HostFacts:
    """What the verdict compares the workload's view with."""

    namespaces: Dict[str, str]
    has_gpu: bool  # a GPU device node (DRM render node, or NVIDIA's own) the host's driver uses
    driver_libc: Optional[str] = None  # the glibc version of the host driver's root


@dataclass(frozen=True)
class Observed:
    """One attempt as the verdict sees it: the launch, and the probe's report if it made one."""

    launch: LaunchResult
    report: Optional[ProbeReport] = None
    report_problem: str = ""  # a report that broke its probe's schema


@dataclass(frozen=True)
class Goldens:
    """Where goldens are, and where an attempt's comparison images go."""

    folder: Path
    result_dir: Path


def with_log(text: str, launch: LaunchResult) -> str:
    log = joined_lines(launch.log_tail(3))
    return text + (f": {log}" if log else "")


def classified(scenario: Scenario, observed: Observed, host: HostFacts,
               failure: Optional[Failure]) -> Optional[Failure]:
    """A crash, a missing result or a probe error, said more precisely where the loader's own
    words (in the probe's report or its log) say why: `missing-library libglapi.so.0: ...`."""
    if failure is None or failure.kind not in (FailureKind.CRASH, FailureKind.NO_RESULT,
                                               FailureKind.PROBE_ERROR):
        return failure
    theirs = foreign_driver(scenario)
    if theirs:
        return Failure(FailureKind.WRONG_ARCHITECTURE, f"{theirs}: {failure.message}", theirs)
    launch, report = observed.launch, observed.report
    code = launch.exit.code if launch.exit else None
    signal_number = launch.exit.signal if launch.exit and launch.exit.signal else (
        code - 128 if code is not None and code > 128 else None)
    raw = report.raw if report else None
    runtime_libc = (raw or {}).get("libc") or hostdriver.glibc_version(scenario.runtime.root)
    service_lines = last_service_lines(launch)
    found = diagnosis.classify(raw, launch.log_tail(200).splitlines(), signal_number,
                               {"runtime": runtime_libc, "host": host.driver_libc}, service_lines)
    if found is None:
        evidence = diagnosis.service_evidence(service_lines)
        return Failure(failure.kind, f"{failure.message} (the service said: {evidence})",
                       failure.subject) \
            if evidence else failure
    said = f" (the service said: {found.evidence})" if found.evidence else ""
    stale = launch.facts.get("cdi_stale")
    checked = [line for line in stale if isinstance(line, str)] if isinstance(stale, list) else []
    if found.kind is FailureKind.STALE_SPEC and checked:
        said += (" (cdi check said before the run: "
                 f"{checked[0]}{f', and {len(checked) - 1} more' if len(checked) > 1 else ''})")
    return Failure(found.kind, f"{found.describe()}: {failure.message}{said}", found.subject)


def foreign_driver(scenario: Scenario) -> Optional[str]:
    """Where a host-driver path put the host's driver into a runtime of another architecture: the
    two architectures, read from ELF headers (the runtime's shell, the host's), not from the
    loader's words (which, for arm64, only say that the library is missing)."""
    if scenario.spec.host_driver is None or not scenario.runtime.root:
        return None
    runtime, host = (emulation.tree_architecture(scenario.runtime.root),
                     emulation.tree_architecture("/"))
    return (f"the host's {host} driver in a runtime for {runtime}" if runtime and host
            and runtime != host else None)


def launch_failure(observed: Observed, timeout_s: float) -> Optional[Failure]:
    """Why the probe produced no usable result, and its class; None if it did."""
    launch, report = observed.launch, observed.report
    if launch.fault is not None:
        return Failure(FailureKind.HARNESS_ERROR, launch.fault.describe())
    if launch.exit is None:
        return launch.failure or Failure(FailureKind.LAUNCH_FAILED, "probe never started")
    described = launch.exit.describe()
    if launch.exit.timed_out:
        return Failure(FailureKind.TIMEOUT,
                       with_log(f"probe timed out after {timeout_s:g} s and was killed", launch))
    if launch.failure is not None:
        return Failure(launch.failure.kind, with_log(f"{launch.failure.message}; probe {described}",
                                                     launch))
    crashed = launch.exit.signal is not None or (launch.exit.code or 0) > 128
    if report is None:
        if observed.report_problem:
            return Failure(FailureKind.NO_RESULT,
                           f"probe printed a bad report: {observed.report_problem}")
        return Failure(FailureKind.CRASH if crashed else FailureKind.NO_RESULT,
                       with_log(f"probe {described} without a result", launch))
    if not report.ok:
        return Failure(FailureKind.PROBE_ERROR, f"probe failed: {report.error or 'no error given'}")
    if launch.exit.code != 0:
        return Failure(FailureKind.CRASH if crashed else FailureKind.PROBE_ERROR,
                       f"probe reported success but {described}")
    return None


def renderer_check(scenario: Scenario, report: ProbeReport, host: HostFacts) -> Optional[Check]:
    api = probes.get(scenario.probe_program).api
    machine_gpu = (machine_specs.get(scenario.machine).renderer(api)
                   if scenario.machine != machine_specs.LOCAL else None)
    pattern = path_registry.expected_renderer(scenario.spec, api, host.has_gpu, machine_gpu)
    if pattern is None:
        return None
    renderer = report.renderer
    if re.search(pattern, renderer) is not None:
        return Check("renderer", True, f"renderer {renderer!r} matches '{pattern}'")
    # software where the path promised otherwise
    if any(name in renderer.lower() for name in ("llvmpipe", "softpipe")):
        return Check("renderer", False,
                     f"silent fallback to software: renderer {renderer!r}, expected '{pattern}'",
                     FailureKind.SILENT_SOFTWARE_FALLBACK)
    return Check("renderer", False, f"renderer {renderer!r} does not match '{pattern}'",
                 FailureKind.WRONG_RENDERER)


def host_driver_check(scenario: Scenario, report: ProbeReport) -> Optional[Check]:
    """A host-driver path must render with the host's driver, not fall back to the runtime's."""
    if not scenario.spec.host_driver:
        return None
    libraries = report.raw.get("libraries")
    loaded = [str(p) for p in libraries if str(p).startswith(diagnosis.DRIVER_PREFIX)] \
        if isinstance(libraries, list) else []
    if loaded:
        return Check("host-driver", True, f"{len(loaded)} host driver libraries loaded")
    return Check("host-driver", False,
                 "rendered without loading any of the host driver's libraries "
                 "(the runtime's own driver answered)", FailureKind.HOST_DRIVER_UNUSED)


def isolation_checks(scenario: Scenario, report: ProbeReport, host: HostFacts) -> List[Check]:
    spec, facts = scenario.spec, report.isolation
    checks = []
    nodes = [str(n) for n in facts.get("dri_nodes") or []] if isinstance(facts.get("dri_nodes"),
                                                                         list) else []
    if spec.no_dri_nodes:
        checks.append(Check("no-dri", not nodes, f"{len(nodes)} /dev/dri nodes visible" +
                            (f": {', '.join(nodes)}" if nodes else ""), FailureKind.ISOLATION))
    if spec.needs_render_node:
        render = [n for n in nodes if "renderD" in n]
        checks.append(Check("render-node", bool(render), f"{len(render)} render nodes visible",
                            FailureKind.ISOLATION))
    if spec.hides_host:
        listed = facts.get("host_paths_visible_list")
        visible = [str(v) for v in listed] if isinstance(listed, list) else []
        checks.append(Check("host-hidden", not visible,
                            f"{len(visible)} of {facts.get('host_paths_checked', 0)} host paths "
                            "visible" +
                            (f": {', '.join(visible)}" if visible else ""), FailureKind.ISOLATION))
    if spec.own_namespaces:
        seen = facts["namespaces"] if isinstance(facts.get("namespaces"), dict) else {}
        shared = [ns for ns in spec.own_namespaces if seen.get(ns)
                  and seen.get(ns) == host.namespaces.get(ns)]
        checks.append(Check("namespaces", not shared,
                            f"shares the host's {', '.join(shared)} namespace" if shared
                            else f"own {', '.join(spec.own_namespaces)} namespaces",
                            FailureKind.ISOLATION))
    return checks


def last_service_lines(launch: LaunchResult) -> List[str]:
    """The last lines each service logged: where a failure's evidence is."""
    return [line for path in launch.service_logs.values() if path for line in tail(path,
                                                                                   50).splitlines()]


def server_connection_check(launch: LaunchResult) -> Optional[Check]:
    """On a path with a vtest server: none of its processes for a client crashed, and the client's
    socket held to the end (a client whose server process died mid-run can still exit 0 with the
    pixels it read before)."""
    if VTEST_SERVICE not in launch.service_logs:
        return None
    crashes = diagnosis.server_crashes(launch.service_logs[VTEST_SERVICE])
    lost = diagnosis.lost_vtest_server(launch.log_tail(400).splitlines())
    said = []
    if crashes:
        said.append(f"the vtest server's process for a client crashed {crashes} "
                    f"time{'s' if crashes > 1 else ''} "
                    f"({diagnosis.SERVER_SEGV})")
    if lost:
        evidence = diagnosis.service_evidence(last_service_lines(launch))
        said.append(f"the vtest server's side of the socket went away mid-run: {lost}"
                    + (f" (the service said: {evidence})" if evidence else ""))
    if said:
        # The client's own server going away is a death under it (crashed or killed: as the
        # classifier says of a client that aborted on it); a crash the client did not feel, of
        # another client's process, is a crash.
        return Check("server-connection", False, "; ".join(said),
                     FailureKind.SERVICE_DIED if lost else FailureKind.CRASH)
    return Check("server-connection", True, "the vtest socket held to the end")


def image_check(comparison: Comparison) -> Check:
    return Check("image", comparison.matched, comparison.reason, FailureKind.IMAGE_MISMATCH,
                 comparison.artifacts)


def scanout_check(launch: LaunchResult, scanout: Optional[Comparison]) -> Check:
    if not launch.scanout_path:
        return Check("scanout", False, "no scanout captured from outside the machine",
                     FailureKind.SCANOUT_MISMATCH)
    if scanout is None:
        return Check("scanout", True, "scanout captured (not compared)",
                     artifacts={"scanout": launch.scanout_path})
    return Check("scanout", scanout.matched, "scanout " + scanout.reason,
                 FailureKind.SCANOUT_MISMATCH,
                 scanout.artifacts)


SCREEN_KINDS = {"blank": FailureKind.BLANK_CAPTURE, "not-found": FailureKind.NOT_ON_SCREEN,
                "mismatch": FailureKind.SCREEN_MISMATCH}


def screen_check(launch: LaunchResult, judged: Optional[screen.ScreenJudgement],
                 name: str = "screen") -> Check:
    """What the display server showed of a presenting scenario's window (`scanout`: what a
    machine guest's display showed, captured from outside)."""
    if judged is None:
        why = (launch.facts.get(f"{name}_capture_error")
               or "the probe never said its frame was shown")
        return Check(name, False, f"no capture of the display: {why}", FailureKind.NOT_ON_SCREEN)
    return Check(name, judged.kind == "match", f"{name}: {judged.reason}",
                 SCREEN_KINDS.get(judged.kind), judged.artifacts)


def judge(scenario: Scenario, observed: Observed, comparison: Optional[Comparison], host: HostFacts,
          scanout: Optional[Comparison] = None,
          shown: Optional[screen.ScreenJudgement] = None,
          scanned: Optional[screen.ScreenJudgement] = None) -> Verdict:
    launch = observed.launch
    if launch.skipped:
        return Verdict(SKIP, launch.skipped)
    failure = classified(scenario, observed, host, launch_failure(observed, scenario.timeout_s))
    checks: List[Check] = []
    probe_out = launch.artifacts.get("probe_out")
    subtests = (workloads.judge(scenario.declared, observed.report.raw.get("steps"),
                                Path(probe_out) if probe_out else None, observed.report.renderer)
                if scenario.declared and observed.report else [])
    if failure is None:
        assert observed.report is not None
        if subtests and all(s.outcome is SubtestOutcome.SKIP for s in subtests):
            return Verdict(SKIP, "every subtest skipped: " + "; ".join(f"{s.name}: {s.detail}"
                                                                       for s in subtests[:3]),
                           subtests=subtests)
        renderer = renderer_check(scenario, observed.report, host)
        checks += [renderer] if renderer else []
        driver = host_driver_check(scenario, observed.report)
        checks += [driver] if driver else []
        if comparison is not None:
            checks.append(image_check(comparison))
        if scenario.spec.scanout or probes.get(scenario.probe_program).shown:
            checks.append(scanout_check(launch, scanout))
        if scenario.presents:
            checks.append(screen_check(launch, shown))
        if scenario.presents and (launch.scanout_path or "scanout_capture_error" in launch.facts):
            checks.append(screen_check(launch, scanned, "scanout"))
        checks.extend(isolation_checks(scenario, observed.report, host))
        connection = server_connection_check(launch)
        checks += [connection] if connection else []
        checks += [subtest_check(subtests)] if scenario.declared else []
        bad = [c for c in checks if not c.ok]
        if bad:
            failure = Failure(bad[0].kind or FailureKind.PROBE_ERROR, "; ".join(c.detail
                                                                                for c in bad))
    verdict = apply_expectation(scenario, failure, checks)
    verdict.subtests = subtests
    if failure is not None:
        verdict.subject = failure.subject
    return verdict


def subtest_check(subtests: List[Subtest]) -> Check:
    """A workload passes when none of its subtests failed: counts, and the failing ones named."""
    failed = [s for s in subtests if s.outcome.failed]
    counts: Dict[str, int] = {}
    for subtest in subtests:
        counts[str(subtest.outcome)] = counts.get(str(subtest.outcome), 0) + 1
    summary = (f"{counts.get('pass', 0) + counts.get('warn', 0)}/{len(subtests)} subtests pass"
               + "".join(f", {count} {word}" for word, count in sorted(counts.items())
                         if word not in ("pass", "warn")))
    if failed:
        named = "; ".join(f"{s.name} ({s.outcome}: {s.detail})" for s in failed[:5])
        return Check("subtests", False, f"{summary}: {named}{'; ...' if len(failed) > 5 else ''}",
                     FailureKind.SUBTEST_FAILED)
    return Check("subtests", True, summary)


def apply_expectation(scenario: Scenario, failure: Optional[Failure],
                      checks: List[Check]) -> Verdict:
    expected_fail = scenario.expect.fails
    if failure is None and not expected_fail:
        renderer = next((c.detail for c in checks if c.name == "renderer"), "")
        return Verdict(PASS, "all checks passed" + (f": {renderer}" if renderer else ""), checks)
    if failure is None:
        return Verdict(Outcome.UNEXPECTED_PASS,
                       f"passed, but expected to fail ({scenario.expect.reason})", checks)
    reason, kind = failure.message, failure.kind
    wanted = scenario.expect.failure
    if expected_fail and wanted and str(kind) != wanted:
        return Verdict(FAIL,
                       f"expected to fail with {wanted}, failed with {kind} instead: {reason}",
                       checks, kind)
    if expected_fail:
        return Verdict(EXPECTED_FAIL, f"failed as expected ({scenario.expect.reason}): {reason}",
                       checks, kind)
    return Verdict(FAIL, reason, checks, kind)


def compare_images(scenario: Scenario, observed: Observed,
                   goldens: Goldens) -> Tuple[Optional[Comparison], Optional[Comparison]]:
    """The probe's image, and the display captured from outside (cropped to the image), against
    the scenario's golden."""
    launch, report = observed.launch, observed.report
    golden = goldens.folder / f"{scenario.golden}.png"
    comparison = None
    if launch.image_path:
        comparison = imagecompare.compare(launch.image_path, golden, scenario.tolerance,
                                          goldens.result_dir / "diff.png")
        if golden.exists():
            copy = goldens.result_dir / "golden.png"
            shutil.copyfile(golden, copy)
            comparison.artifacts["golden"] = str(copy)
    elif report is not None and report.ok:
        comparison = Comparison(False, "probe reported success but wrote no image")
    scanout = None
    if launch.scanout_path and launch.image_path and not scenario.presents:
        if probes.get(scenario.probe_program).shown:  # a compositor showed it, scaled to its output
            scanout = imagecompare.compare_shown(launch.scanout_path, golden,
                                                 imagecompare.SHOWN_TOLERANCE, goldens.result_dir)
        else:
            scanout = imagecompare.compare_region(launch.scanout_path, golden, scenario.tolerance,
                                                  goldens.result_dir)
    return comparison, scanout


def judge_screen(scenario: Scenario, launch: LaunchResult, goldens: Optional[Goldens],
                 capture: Optional[str]) -> Optional[screen.ScreenJudgement]:
    """A presenting scenario's capture (the display server's, or a guest's scanout), its window
    found by the probe's own image and compared with the golden, or an app's window found at all
    (None where no capture came)."""
    if not scenario.presents or not capture:
        return None
    try:
        if scenario.declared:  # an app's window: shown or not, no golden
            return screen.judge_shown(capture)
        if goldens is None:
            return None
        return screen.judge(capture, goldens.folder / f"{scenario.golden}.png",
                            scenario.tolerance, launch.image_path)
    except UnreadableImage as exc:
        return screen.ScreenJudgement("not-found", f"the capture cannot be read: {exc}", (0, 0))


def evaluate(scenario: Scenario, observed: Observed, host: HostFacts,
             goldens: Optional[Goldens]) -> Verdict:
    """Compare the images (where goldens are given) and judge."""
    comparison, scanout = compare_images(scenario, observed, goldens) if goldens else (None, None)
    launch = observed.launch
    shown = judge_screen(scenario, launch, goldens, launch.artifacts.get("screen"))
    scanned = judge_screen(scenario, launch, goldens, launch.scanout_path)
    return judge(scenario, observed, comparison, host, scanout, shown, scanned)


def combine_attempts(verdicts: List[Verdict]) -> Verdict:
    """Retries: a Fail followed by a Pass is a Flake; the last verdict stands otherwise."""
    last = verdicts[-1]
    if last.outcome is PASS and any(v.outcome is FAIL for v in verdicts[:-1]):
        first_fail = next(v for v in verdicts if v.outcome is FAIL)
        return Verdict(FLAKE, f"passed on attempt {len(verdicts)} after: {first_fail.reason}",
                       last.checks,
                       first_fail.failure_kind, subtests=last.subtests)
    return last


def harness_error(phase: str, exc: BaseException) -> Verdict:
    """The failure boundary's verdict: the harness itself raised outside a launch."""
    return Verdict(FAIL, HarnessFault.of(phase, exc).describe(),
                   [], FailureKind.HARNESS_ERROR)
