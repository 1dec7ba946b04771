"""Runs scenarios: workspace -> family launch -> probe report -> verdict, in parallel, with
retries. It is the failure boundary: whatever one scenario raises becomes that scenario's Fail,
and the others run on. Owns the run-level temp folder."""
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ..judging import baseline as baseline_mod, verdict as verdict_mod
from ..runtimes import cache, recipes, builds
from ..scenario import probes
from ..system import reaper
from ..core.errors import InputError
from ..launch.families import registry
from ..system.interrupts import INTERRUPTS
from ..launch.lifecycle import (Hooks, LaunchContext, LaunchResult, Phase, Prepared, Workload,
                                Workspace)
from ..scenario.model import HOST_KIND, Display, Scenario
from ..scenario.outcomes import FailureKind, Outcome
from ..scenario.probes import GOLDENS_DIR, ProbeReport
from ..judging.scenario_result import ScenarioResult
from ..host import drivermatch, hostdriver, toolset as toolset_mod
from ..judging import exposure as exposure_mod
from . import machine_run, preparation
from .preparation import RuntimeReady
from ..host.toolset import Toolset
from ..workloads import registry as workloads
from ..core import log


HooksLike = Union[Hooks, Dict[str, Any], None]
LOG = log.get(__name__)
# a run's log beside its results.json, and each scenario's part in its folder
LOG_FILE = "harness.log"


@dataclass
class RunOptions:
    out_dir: Path
    jobs: int = 1
    retries: int = 0
    goldens_dir: Path = GOLDENS_DIR
    compare_images: bool = True
    strict_runtimes: bool = False  # a runtime whose lock has drifted is an error (exit 2)
    # runtimes built elsewhere (Nix): name -> root
    runtime_roots: Dict[str, str] = field(default_factory=dict)
    baseline: Optional[baseline_mod.Baseline] = None  # known failures and flakes (run --baseline)
    # what the run did before any scenario (run fills it)
    prepared: List[Prepared] = field(default_factory=list)
    # each machine's boot and time inside (run fills it)
    machines: Dict[str, dict] = field(default_factory=dict)
    host_class: str = ""  # run --host-class: a baseline entry may hold on some classes of host only
    # bad input only the built runtimes show (a piglit profile one lacks): given each built
    # runtime's root by build name, it raises InputError, before any scenario runs
    check_runtimes: Optional[Callable[[Dict[str, str]], None]] = None

    def __post_init__(self) -> None:
        # Launchers hand these paths to other programs (podman reads a relative bind source as a
        # volume name) and to processes with another working directory: always absolute.
        self.out_dir = Path(self.out_dir).absolute()
        self.goldens_dir = Path(self.goldens_dir).absolute()


def unbuilt(scenario: Scenario, name: str, prepared: RuntimeReady,
            result_dir: Path) -> ScenarioResult:
    """The scenario's verdict when runtime `name` (its own, or its GL extension's) is not built."""
    if prepared.skip:
        verdict = verdict_mod.Verdict(Outcome.SKIP, f"runtime {name}: {prepared.skip}")
    else:
        verdict = verdict_mod.Verdict(Outcome.FAIL, prepared.failure, [], FailureKind.RUNTIME_BUILD)
    return ScenarioResult(scenario, verdict, LaunchResult(skipped=prepared.skip), None, result_dir,
                          0.0, attempts=0)


def host_facts(toolset: Toolset) -> verdict_mod.HostFacts:
    namespaces = {}
    for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
        try:
            namespaces[ns] = os.readlink(f"/proc/self/ns/{ns}")
        except OSError:
            pass
    driver = toolset.tools.get("host-driver")
    driver_libc = (hostdriver.glibc_version(driver.path) if driver and driver.found
                   and driver.path else None)
    return verdict_mod.HostFacts(namespaces, bool(toolset.render_nodes
                                                  or toolset_mod.gpu_device_nodes()), driver_libc)


class TempRoot:
    """The run's scratch folder (sockets, sentinels); the reaper removes it if we cannot."""

    def __init__(self) -> None:
        try:
            self.path = Path(reaper.make_temp_dir("gh-"))
        except OSError as exc:
            raise InputError(f"cannot create the run's scratch folder in {tempfile.gettempdir()}: "
                             f"{exc.strerror or exc} (set TMPDIR to a folder with room)") from None
        self._counter = 0

    def scenario_dir(self) -> Path:
        self._counter += 1
        return self.path / str(self._counter)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        reaper.get().untrack_path(str(self.path))


def as_hooks(hooks: HooksLike) -> Hooks:
    if hooks is None:
        return Hooks()
    return hooks if isinstance(hooks, Hooks) else Hooks(**hooks)


def launch(ctx: LaunchContext) -> LaunchResult:
    """Run one workload through the context's path; never raises for a failed component."""
    return registry.of(ctx.scenario.spec).run(ctx)


def attempt(scenario: Scenario, toolset: Toolset, options: RunOptions, temp: TempRoot,
            result_dir: Path,
            host: verdict_mod.HostFacts, hooks: Hooks) -> ScenarioResult:
    started = time.monotonic()
    launched, report = LaunchResult(), None
    workspace = Workspace(result_dir, temp.scenario_dir())
    phase = "launch"
    try:
        workload = Workload(probe=scenario.probe_program, probe_args=probe_args(scenario),
                            plan=workloads.plan(scenario.declared) if scenario.declared else None)
        launched = launch(LaunchContext(scenario, toolset, workspace, workload, hooks))
        phase, since = str(Phase.VERDICT), time.monotonic()
        hooks.before_phase(Phase.VERDICT, scenario.id)
        report, problem = probes.read_report(probes.get(scenario.probe_program),
                                             launched.artifacts.get("stdout"))
        goldens = verdict_mod.Goldens(options.goldens_dir,
                                      result_dir) if options.compare_images else None
        verdict = verdict_mod.evaluate(scenario, verdict_mod.Observed(launched, report, problem),
                                       host, goldens)
        since = launched.timed("verdict_s", since)
        # what the workload could see of the host (the first count of a host folder is slow)
        phase = "audit"
        seen = (report.raw if report and "mounts" in report.raw
                else probes.started_facts(launched.artifacts.get("stdout")))
        own = [str(workspace.tmp_dir), str(result_dir), str(probes.PROBE_DIR),
               *registry.of(scenario.spec).own_dirs(workspace)]
        exposure = (exposure_mod.of_run(seen, launched.argv, host.namespaces, scenario.runtime.root,
                                        own)
                    or exposure_mod.from_bwrap_argv(launched.argv, scenario.runtime.root, own))
        launched.timed("audit_s", since)
    except Exception as exc:  # the failure boundary: this scenario fails, the others run on
        verdict, exposure = verdict_mod.harness_error(phase, exc), None
    finally:
        since = time.monotonic()
        shutil.rmtree(workspace.tmp_dir, ignore_errors=True)
        launched.timed("cleanup_s", since)
    return ScenarioResult(scenario, verdict, launched, report, result_dir,
                          time.monotonic() - started,
                          exposure=exposure)


def driver_facts(scenario: Scenario, toolset: Toolset, report: Optional[ProbeReport],
                 runtime_facts: Dict[str, object],
                 driver_root: Optional[str] = None) -> drivermatch.DriverMatch:
    """Driver matching for one scenario (drivermatch.driver_match). driver_root: where
    the workload's Mesa came from when not from its runtime (a Flatpak GL extension's source)."""
    runtime_mesa: object = toolset.version("mesa")
    if driver_root:
        runtime_mesa = recipes.component_versions(builds.installed(Path(driver_root))).get("mesa")
    elif scenario.runtime.kind != HOST_KIND:
        runtime_mesa = runtime_facts.get("mesa") or recipes.component_versions(
            builds.installed(Path(scenario.runtime.root))).get("mesa")
    libraries = report.raw.get("libraries") if report else None
    return drivermatch.driver_match(str(runtime_mesa) if runtime_mesa else None,
                                    toolset.version("host-driver"),
                                   drivermatch.kernel_driver(),
                                   [str(p) for p in libraries] if isinstance(libraries, list)
                                    else [],
                                   direct=scenario.spec.needs_render_node)


STEP_SHARE = 3  # a probe's one driver step may take a third of the scenario's timeout


def probe_args(scenario: Scenario) -> List[str]:
    """The scenario's probe arguments, with a per-step deadline (unless it sets one): a driver
    call that never returns is then reported by the probe with the step's name, before the
    harness would kill it without a word."""
    args = list(scenario.probe_args)
    if "--step-timeout" not in args:
        args += ["--step-timeout", f"{scenario.timeout_s / STEP_SHARE:g}"]
    if scenario.presents and not scenario.declared:  # the presenting probe: API and server
        args += ["--api", probes.get(scenario.probe).api, "--display",
                 Display(scenario.display).protocol]
    return args


def not_run(scenario: Scenario, result_dir: Path) -> ScenarioResult:
    reason = f"not run: the run was {INTERRUPTS.reason()}"
    return ScenarioResult(scenario, verdict_mod.Verdict(Outcome.SKIP, reason),
                          LaunchResult(skipped=reason),
                          None, result_dir, 0.0, attempts=0)


def run_scenario(scenario: Scenario, toolset: Toolset, options: RunOptions, temp: TempRoot,
                 host: verdict_mod.HostFacts, hooks: Hooks,
                 ready: Dict[str, RuntimeReady]) -> ScenarioResult:
    base = options.out_dir / "scenarios" / scenario.slug
    if INTERRUPTS.requested:
        return not_run(scenario, base)
    prepared = ready.get(scenario.runtime.build_name)
    known = options.baseline.known(scenario.id, options.host_class) if options.baseline else None
    missing = preparation.unbuilt_runtime(scenario, ready)
    if missing is not None:
        result = unbuilt(scenario, missing, ready[missing], base)
        result.verdict, result.known = baseline_mod.apply(result.verdict, known, 0), known
        return result
    scenario = preparation.with_runtime(scenario, ready)
    shutil.rmtree(base, ignore_errors=True)
    # the scenario's own part of the run's log
    with log.scenario_part(scenario.id, base / LOG_FILE):
        return attempts(scenario, toolset, options, temp, host, hooks, base, known, prepared)


def attempts(scenario: Scenario, toolset: Toolset, options: RunOptions, temp: TempRoot,
             host: verdict_mod.HostFacts,
             hooks: Hooks, base: Path, known, prepared: Optional[RuntimeReady]) -> ScenarioResult:
    """The scenario's attempts (a failing one retried as the run and its baseline allow), judged as
    one."""
    results: List[ScenarioResult] = []
    for number in range(1, baseline_mod.retries(known, options.retries) + 2):
        if number > 1 and INTERRUPTS.requested:
            break
        result_dir = base if number == 1 else base / f"retry-{number - 1}"
        LOG.debug("attempt %d: family %s, runtime %s (%s), probe %s, timeout %g s", number,
                  scenario.spec.family,
                  scenario.runtime.name, scenario.runtime.root or "no root", scenario.probe,
                  scenario.timeout_s)
        result = attempt(scenario, toolset, options, temp, result_dir, host, hooks)
        results.append(result)
        LOG.debug("attempt %d: %s: %s (%.2f s)", number, result.verdict.outcome.value,
                  result.verdict.reason,
                  result.wall_s)
        if result.verdict.outcome is not Outcome.FAIL or scenario.expect.fails:
            break
    final = results[-1]
    final.verdict = baseline_mod.apply(verdict_mod.combine_attempts([r.verdict for r in results]),
                                       known,
                                       len(results))
    if options.baseline:
        final.verdict = baseline_mod.apply_subtests(final.verdict, options.baseline.subtests_known(
            scenario.id, options.host_class))
    final.known = known
    final.attempts = len(results)
    final.wall_s = sum(r.wall_s for r in results)
    if len(results) > 1:  # the earlier attempts' whole walls, as one phase of the scenario's
        final.launch.phases["retried_s"] = sum(r.wall_s for r in results[:-1])
    final.runtime_facts = prepared.facts if prepared else {}
    if final.attempts:
        driver_root = final.launch.facts.get("driver_root")
        final.driver_match = driver_facts(scenario, toolset, final.report, final.runtime_facts,
                                          driver_root if isinstance(driver_root, str) else None)
    LOG.debug("verdict: %s: %s%s", final.verdict.outcome.value, final.verdict.reason,
              f" (baseline: {known})" if known else "")
    return final


def run_on_machine(name: str, scenarios: List[Scenario], toolset: Toolset, options: RunOptions,
                   temp: TempRoot,
                ready: Dict[str, RuntimeReady], finished: Callable[[ScenarioResult], None],
                   hooks: Hooks) -> None:
    """A machine's scenarios in its guest, one boot; those whose runtime is not built end here."""
    base = options.out_dir / "scenarios"
    runnable = []
    for scenario in scenarios:
        missing = preparation.unbuilt_runtime(scenario, ready)
        if missing is not None:
            finished(unbuilt(scenario, missing, ready[missing], base / scenario.slug))
        elif INTERRUPTS.requested:
            finished(not_run(scenario, base / scenario.slug))
        else:
            runnable.append(preparation.with_runtime(scenario, ready))
    if runnable:
        machine_run.boot_and_run(name, runnable, toolset, options, temp.scenario_dir(), finished,
                               options.baseline.source if options.baseline else None,
                                 hooks.machine_panic_after)


def without_skipped(scenario: Scenario, options: RunOptions) -> Scenario:
    """The scenario whose workload leaves out the tests the baseline skips, before they run (as
    deqp-runner runs none of its skips), where its kind can (piglit's profile form)."""
    if options.baseline is None or scenario.declared is None:
        return scenario
    patterns = options.baseline.skip_patterns(scenario.id, options.host_class)
    declared = workloads.skipping(scenario.declared, patterns) if patterns else scenario.declared
    return scenario if declared is scenario.declared else dataclasses.replace(scenario,
                                                                              declared=declared)


def run(scenarios: List[Scenario], toolset: Toolset, options: RunOptions,
        on_result: Callable[[ScenarioResult], None] = lambda r: None,
        hooks: HooksLike = None) -> List[ScenarioResult]:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = [without_skipped(s, options) for s in scenarios]
    cache.hold_shared()  # what the run builds or finds in the cache is not pruned under it
    LOG.debug("run: %d scenarios, %d at a time, into %s; toolset %s", len(scenarios),
              max(1, options.jobs), options.out_dir, toolset.source)
    host = host_facts(toolset)
    ready = preparation.prepare_runtimes(scenarios, options)
    if options.check_runtimes is not None:
        started = time.monotonic()
        roots = {name: built.root for name, built in ready.items() if built.root}
        options.check_runtimes(roots)
        preparation.note_prepared(options, Prepared("settings checked against the runtimes",
                                                    time.monotonic() - started,
                                                    f"{len(roots)} built"))
    temp = TempRoot()
    results: Dict[str, ScenarioResult] = {}
    try:
        scratch = temp.scenario_dir()
        scratch.mkdir(parents=True)
        preparation.prepare_families([s for s in scenarios
                                      if not preparation.unbuilt_runtime(s, ready)],
                                     toolset, options, scratch)
        preparation.prepare_audit(scenarios, options)
        here = [s for s in scenarios if machine_run.runs_here(s)]
        elsewhere: Dict[str, List[Scenario]] = {}
        for scenario in scenarios:
            if not machine_run.runs_here(scenario):
                elsewhere.setdefault(scenario.machine, []).append(scenario)
        lock = threading.Lock()

        def finished(result: ScenarioResult) -> None:
            with lock:
                results[result.scenario.id] = result
                on_result(result)

        with INTERRUPTS.graceful(), ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures: List["Future[Any]"] = [pool.submit(run_scenario, s, toolset, options, temp,
                                                        host, as_hooks(hooks),
                                                        ready) for s in here]
            futures += [pool.submit(run_on_machine, name, group, toolset, options, temp, ready,
                                    finished, as_hooks(hooks))
                        for name, group in elsewhere.items()]
            for future in as_completed(futures):
                result = future.result()
                if isinstance(result, ScenarioResult):
                    finished(result)
    finally:
        temp.remove()
    return [results[s.id] for s in scenarios]
