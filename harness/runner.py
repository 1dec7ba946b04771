"""Runs scenarios: workspace -> launcher plan -> services + workload -> verdict, in parallel,
with retries. Owns the run-level temp folder and the reaper's lifetime."""
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import images, launchers, reaper, toolset as toolset_mod, verdict as verdict_mod
from .launchers.base import ProbeResult, Workload, Workspace
from .matrix import Scenario
from .toolset import Toolset

GOLDENS_DIR = Path(__file__).parent / "goldens"


@dataclass
class ScenarioResult:
    scenario: Scenario
    verdict: verdict_mod.Verdict
    probe: ProbeResult
    result_dir: Path
    wall_s: float
    attempts: int
    phases: Dict[str, float] = field(default_factory=dict)
    golden_path: Optional[str] = None
    diff_path: Optional[str] = None


@dataclass
class RunOptions:
    out_dir: Path
    jobs: int = 1
    retries: int = 0
    goldens_dir: Path = GOLDENS_DIR
    compare_images: bool = True


def host_facts(toolset: Toolset) -> verdict_mod.HostFacts:
    namespaces = {}
    for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
        try:
            namespaces[ns] = os.readlink(f"/proc/self/ns/{ns}")
        except OSError:
            pass
    return verdict_mod.HostFacts(namespaces, bool(toolset.render_nodes))


class TempRoot:
    """The run's scratch folder (sockets, sentinels); the reaper removes it if we cannot."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="gh-"))
        reaper.get().track_path(str(self.path))
        self._counter = 0

    def scenario_dir(self) -> Path:
        self._counter += 1
        return self.path / str(self._counter)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        reaper.get().untrack_path(str(self.path))


def launch(scenario: Scenario, toolset: Toolset, workspace: Workspace, workload: Workload,
           inherit_stdio: bool = False, on_services_ready=lambda services: None) -> ProbeResult:
    """Run one workload through the scenario's path; never raises for a failed component."""
    t0 = time.monotonic()
    skip = toolset_mod.unavailable_reason(toolset, scenario.spec)
    if skip:
        return ProbeResult(None, None, "", None, {}, {}, {}, skipped=skip)
    workspace.create()
    result = launchers.launch(scenario, toolset, workspace, workload, inherit_stdio, on_services_ready)
    result.phases.setdefault("setup_s", time.monotonic() - t0 - sum(result.phases.values()))
    return result


def compare_scanout(scanout_path: str, golden: Path, scenario: Scenario, result_dir: Path) -> images.Comparison:
    """The guest puts the probe's image at the display's top-left: crop that and compare."""
    from PIL import Image

    if not golden.exists():
        return images.Comparison(False, f"no golden image {golden.name}")
    with Image.open(golden) as reference, Image.open(scanout_path) as captured:
        width, height = reference.size
        if captured.size[0] < width or captured.size[1] < height:
            return images.Comparison(False, f"captured display {captured.size[0]}x{captured.size[1]} is smaller "
                                            f"than the image {width}x{height}")
        crop = result_dir / "scanout-crop.png"
        captured.convert("RGB").crop((0, 0, width, height)).save(crop)
    return images.compare(crop, golden, scenario.tolerance, result_dir / "scanout-diff.png")


def attempt(scenario: Scenario, toolset: Toolset, options: RunOptions, temp: TempRoot, result_dir: Path,
            host: verdict_mod.HostFacts, hooks: Dict[str, Callable]) -> ScenarioResult:
    started = time.monotonic()
    workspace = Workspace(result_dir, temp.scenario_dir())
    workload = Workload(probe=scenario.probe, probe_args=list(scenario.probe_args))
    probe = launch(scenario, toolset, workspace, workload,
                   on_services_ready=hooks.get("services_ready", lambda services: None))
    t_verdict = time.monotonic()
    comparison, golden = None, None
    if options.compare_images and probe.image_path:
        golden = options.goldens_dir / f"{scenario.golden}.png"
        comparison = images.compare(probe.image_path, golden, scenario.tolerance, result_dir / "diff.png")
        if golden.exists():
            shutil.copyfile(golden, result_dir / "golden.png")
    elif options.compare_images and probe.data and probe.data.get("ok"):
        comparison = images.Comparison(False, "probe reported success but wrote no image")
    scanout = None
    if options.compare_images and probe.scanout_path and golden is not None:
        scanout = compare_scanout(probe.scanout_path, golden, scenario, result_dir)
    verdict = verdict_mod.judge(scenario, probe, comparison, host, scanout)
    probe.phases["verdict_s"] = time.monotonic() - t_verdict
    shutil.rmtree(workspace.tmp_dir, ignore_errors=True)
    return ScenarioResult(scenario, verdict, probe, result_dir, time.monotonic() - started, 1, probe.phases,
                          str(result_dir / "golden.png") if golden and golden.exists() else None,
                          comparison.diff_path if comparison else None)


def run_scenario(scenario: Scenario, toolset: Toolset, options: RunOptions, temp: TempRoot,
                 host: verdict_mod.HostFacts, hooks: Dict[str, Callable]) -> ScenarioResult:
    base = options.out_dir / "scenarios" / scenario.slug
    if base.exists():
        shutil.rmtree(base)
    results, verdicts = [], []
    for number in range(1, options.retries + 2):
        result_dir = base if number == 1 else base / f"retry-{number - 1}"
        result = attempt(scenario, toolset, options, temp, result_dir, host, hooks)
        results.append(result)
        verdicts.append(result.verdict)
        if result.verdict.outcome != verdict_mod.FAIL or scenario.expect.outcome == "fail":
            break
    final = results[-1]
    final.verdict = verdict_mod.combine_attempts(verdicts)
    final.attempts = len(results)
    final.wall_s = sum(r.wall_s for r in results)
    return final


def run(scenarios: List[Scenario], toolset: Toolset, options: RunOptions,
        on_result: Callable[[ScenarioResult], None] = lambda r: None,
        hooks: Optional[Dict[str, Callable]] = None) -> List[ScenarioResult]:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    host = host_facts(toolset)
    temp = TempRoot()
    results: Dict[str, ScenarioResult] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = {pool.submit(run_scenario, s, toolset, options, temp, host, hooks or {}): s for s in scenarios}
            for future in as_completed(futures):
                result = future.result()
                results[result.scenario.id] = result
                on_result(result)
    finally:
        temp.remove()
    return [results[s.id] for s in scenarios]
