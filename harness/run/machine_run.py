"""A machine's scenarios, run in its guest: the guest booted once (harness.launch.machine_boot) with
the
harness inside as its workload, each scenario's result taken back as it finishes, and a Fail with
the reason for each one a guest that panicked, hung or stopped did not finish."""
import dataclasses
import json
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..judging import exposure, verdict as verdict_mod
from ..scenario import machine_specs, paths
from ..launch.families import registry
from ..launch.families.vm_launch import acceleration
from ..launch.lifecycle import LaunchContext, LaunchResult, Prepared, Workload, Workspace
from ..matrix.writing import declaration_of
from ..launch import machine_boot
from ..launch.machine_boot import SHARE_INSIDE, MachineLaunch
from ..scenario.model import HOST, Scenario
from ..scenario.outcomes import FailureKind, Outcome, Subtest
from ..scenario.probes import ProbeReport
from ..judging.scenario_result import ScenarioResult
from ..host.drivermatch import DriverMatch
from ..host.toolset import Toolset

RESULTS = "results.jsonl"  # beside machine.json: one entry per line, in the order they finished
# beside it: what the harness inside found (toolset) and did before the scenarios
DONE = "done.json"


def spec_of(scenarios: List[Scenario], out_dir: str, options, file_counts: dict,
            baseline: Optional[str], panic_after: Optional[int] = None) -> dict:
    """What the host writes for the guest: the scenarios and how to run them."""
    # the guest has one CPU
    return {"scenarios": [s.to_dict() for s in scenarios], "out_dir": out_dir, "jobs": 1,
            "retries": options.retries, "goldens_dir": str(options.goldens_dir),
            "compare_images": options.compare_images, "file_counts": file_counts,
            "baseline": baseline,
            "panic_after": panic_after}


TCG_SLOWDOWN = 4.0  # measured: a probe's EGL context took 5-20 s in the guest, 0.3 s on the host
# boot, the harness's start and its run-level preparation, on a loaded TCG host
BOOT_BUDGET_S = 300.0
POLL_S = 0.5


def current() -> str:
    """The machine this process runs in: a machine's name inside its guest, else local."""
    import os

    return os.environ.get(machine_specs.MACHINE_ENV, machine_specs.LOCAL)


def runs_here(scenario: Scenario) -> bool:
    return scenario.machine in (machine_specs.LOCAL, current())


def boot_spec(name: str):
    return paths.get(machine_specs.get(name).boots_like)


def why_not(name: str, toolset: Toolset) -> Optional[str]:
    """Why this machine's guest cannot boot here, or None."""
    spec = boot_spec(name)
    reason = registry.of(spec).available(spec, toolset)
    return f"machine {name} cannot boot here: {reason}" if reason else None


def skipped(scenario: Scenario, reason: str, out_dir: Path) -> ScenarioResult:
    return ScenarioResult(scenario, verdict_mod.Verdict(Outcome.SKIP, reason),
                          LaunchResult(skipped=reason), None,
                          out_dir / "scenarios" / scenario.slug, 0.0, attempts=0)


def from_entry(scenario: Scenario, entry: dict, out_dir: Path) -> ScenarioResult:
    """A scenario's result as the harness in the guest wrote it: its verdict, phases and files."""
    kind = entry.get("failure_kind")
    diagnosis = entry.get("diagnosis") or {}
    verdict = verdict_mod.Verdict(Outcome(entry["outcome"]), entry["reason"],
                                  [verdict_mod.Check(c["name"], c["ok"], c["detail"], artifacts={
                                      name: str(out_dir / path)
                                      for name, path in (c.get("artifacts") or {}).items()})
                                   for c in entry.get("checks") or []],
                                  FailureKind(kind) if kind else None,
                                  str(diagnosis.get("subject") or ""),
                                  [Subtest.from_dict(s) for s in entry.get("subtests") or []])
    logs = {name.removeprefix("service:"): str(out_dir / path)
            for name, path in (entry.get("logs") or {}).items()}
    launch = LaunchResult(phases=dict(entry.get("phases_s") or {}), logs=logs,
                          artifacts={name: str(out_dir / entry[name])
                                     for name in ("image", "scanout") if entry.get(name)})
    raw = entry.get("probe_result")
    report = (ProbeReport(ok=bool(raw.get("ok")), error=str(raw.get("error", "")),
                          renderer=str(raw.get("renderer", "")),
                          isolation=raw.get("isolation") or {}, raw=raw)
              if isinstance(raw, dict) else None)
    return ScenarioResult(scenario, verdict, launch, report, out_dir / entry["result_dir"],
                          float(entry["wall_s"]),
                          attempts=int(entry.get("attempts") or 1),
                          runtime_facts=entry.get("runtime_facts") or {},
                          driver_match=DriverMatch.from_dict(entry.get("driver_match")),
                          entry=entry)


def not_finished(scenario: Scenario, launched: LaunchResult, console: Path,
                 out_dir: Path) -> ScenarioResult:
    """A scenario the guest never finished: the machine's failure is its Fail, with the console."""
    failure = launched.failure
    if launched.exit is not None and launched.exit.timed_out:
        why, kind = ("the machine's guest did not finish its scenarios in time and was stopped",
                     FailureKind.TIMEOUT)
    elif failure is not None:
        why, kind = failure.message, failure.kind
    elif launched.fault is not None:
        why, kind = launched.fault.describe(), FailureKind.HARNESS_ERROR
    else:
        code = launched.exit.describe() if launched.exit else "never started"
        why, kind = (f"the harness in the machine's guest {code} before this scenario finished",
                     FailureKind.LAUNCH_FAILED)
    verdict = verdict_mod.Verdict(Outcome.FAIL, f"machine {scenario.machine}: {why}", [], kind)
    return ScenarioResult(scenario, verdict, LaunchResult(logs={"machine console": str(console)}),
                          None,
                          out_dir / "scenarios" / scenario.slug, 0.0)


RERUN = """#!/bin/sh
# Re-runs scenario {id} by hand: boots machine {machine} again and runs just this scenario in it
# (scenario.json is its matrix; rerun-in-guest.sh is the command the harness in the guest ran).
set -u
exec {python} -m harness.cli run --matrix {matrix} --out {folder}/rerun-$(date +%Y%m%d-%H%M%S) "$@"
"""


def write_rerun(scenario: Scenario, folder: Path) -> None:
    """A machine scenario's rerun.sh boots the machine: what the guest wrote under that name is
    the command inside it, kept beside as rerun-in-guest.sh."""
    if not folder.is_dir():
        return
    inside = folder / "rerun.sh"
    if inside.exists():
        inside.rename(folder / "rerun-in-guest.sh")
    (folder / "scenario.json").write_text(json.dumps(declaration_of(scenario), indent=1) + "\n")
    inside.write_text(RERUN.format(id=scenario.id, machine=scenario.machine,
                                   python=shlex.quote(sys.executable),
                                   matrix=shlex.quote(str(folder / "scenario.json")),
                                   folder=shlex.quote(str(folder))))
    inside.chmod(0o755)


class Tail:
    """Reads the results file the guest appends to, a whole line at a time."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new_entries(self) -> List[dict]:
        try:
            with self.path.open() as handle:
                handle.seek(self.offset)
                text = handle.read()
        except OSError:
            return []
        complete = text[:text.rfind("\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def boot_and_run(name: str, scenarios: List[Scenario], toolset: Toolset, options, scratch: Path,
                on_result: Callable[[ScenarioResult], None], baseline: Optional[str] = None,
                panic_after: Optional[int] = None) -> List[ScenarioResult]:
    """Boot machine `name` once, run `scenarios` in it, give each result to on_result as it
    comes."""
    out_dir = options.out_dir
    reason = why_not(name, toolset)
    if reason:
        results = [skipped(s, reason, out_dir) for s in scenarios]
        for result in results:
            on_result(result)
        return results
    named = {s.id: machine_boot.kept_paths(s.to_dict()) for s in scenarios}
    for scenario in scenarios:
        unseen = machine_boot.unkeepable(named[scenario.id])
        if unseen:
            on_result(skipped(scenario, f"the guest cannot see {unseen[0]}: it lies under a folder "
                              "the guest mounts afresh, and its name has a character the kernel "
                              "command line cannot carry to the guest (move or rename it)",
                              out_dir))
    scenarios = [s for s in scenarios if not machine_boot.unkeepable(named[s.id])]
    if not scenarios:
        return []  # each one's result given
    kept = sorted({path for s in scenarios for path in named[s.id]}
                  | set(machine_boot.kept_paths([str(options.goldens_dir), baseline or ""])))
    # Under TCG the guest runs everything several times slower than the host: the scenarios' own
    # timeouts (and their probes' step deadlines) stretch alike, as the Prepared line says.
    slowdown = TCG_SLOWDOWN if acceleration(toolset, scratch).name == "tcg" else 1.0
    scenarios_inside = [dataclasses.replace(s, timeout_s=s.timeout_s * slowdown) for s in scenarios]
    workspace = Workspace(out_dir / "machines" / name, scratch)
    workspace.create()
    share = workspace.probe_out
    counts = {folder: exposure.file_count(folder) for folder in exposure.HOST_ROOT_FOLDERS}
    spec_file = share / "machine.json"
    spec_file.write_text(json.dumps(spec_of(scenarios_inside, SHARE_INSIDE, options, counts,
                                            baseline, panic_after),
                                    indent=1))
    inside = f"{SHARE_INSIDE}/{spec_file.relative_to(out_dir)}"
    budget = BOOT_BUDGET_S + sum(s.timeout_s for s in scenarios_inside) * (options.retries + 1)
    machine = Scenario(id=f"@{name}", path_id=machine_specs.get(name).boots_like, runtime=HOST,
                       probe="gl",
                       timeout_s=budget)
    command = [sys.executable, "-m", "harness.run.guestrun", inside]
    launch = MachineLaunch(LaunchContext(machine, toolset, workspace, Workload(command=command)),
                           machine_specs.get(name), out_dir, kept)
    by_id = {s.id: s for s in scenarios}
    done: Dict[str, ScenarioResult] = {}
    tail = Tail(share / RESULTS)
    stop = threading.Event()

    def take() -> None:
        for entry in tail.new_entries():
            scenario = by_id.get(entry.get("id", ""))
            if scenario is not None and scenario.id not in done:
                done[scenario.id] = from_entry(scenario, entry, out_dir)
                write_rerun(scenario, done[scenario.id].result_dir)
                on_result(done[scenario.id])

    def follow() -> None:
        while not stop.wait(POLL_S):
            take()

    follower = threading.Thread(target=follow, daemon=True)
    started = time.monotonic()
    follower.start()
    try:
        launched = launch.run()
    finally:
        stop.set()
        follower.join()
    take()
    options.machines[name] = {"boot_s": launched.phases.get("boot_s"),
                              "inside_s": launched.phases.get("probe_s"),
                              "scenarios_s": sum(r.wall_s for r in done.values()),
                              "wall_s": time.monotonic() - started,
                              "ids": [s.id for s in scenarios],
                              "accel": launched.facts.get("accel")}
    options.prepared.append(Prepared(f"machine {name}", time.monotonic() - started,
                                     f"{len(done)} of {len(scenarios)} scenarios in one boot; "
                                     f"boot {launched.phases.get('boot_s', 0):.1f} s; timeouts "
                                     f"x{slowdown:g}"))
    for scenario in scenarios:
        if scenario.id not in done:
            done[scenario.id] = not_finished(scenario, launched,
                                             workspace.result_dir / "console.log", out_dir)
            on_result(done[scenario.id])
    return [done[s.id] for s in scenarios]
