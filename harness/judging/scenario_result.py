"""What one scenario ended as: its verdict, what the launch saw, the probe's report, its folder
and the facts around it; written to results.json by harness.report.document."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from . import baseline as baseline_mod, exposure as exposure_mod, verdict as verdict_mod
from ..host.drivermatch import DriverMatch
from ..launch.lifecycle import LaunchResult
from ..scenario.model import Scenario
from ..scenario.probes import ProbeReport


@dataclass
class ScenarioResult:
    scenario: Scenario
    verdict: verdict_mod.Verdict
    launch: LaunchResult
    report: Optional[ProbeReport]
    result_dir: Path
    wall_s: float
    attempts: int = 1
    runtime_facts: Dict[str, object] = field(default_factory=dict)
    # the leak audit (None: the probe reported nothing)
    exposure: Optional[exposure_mod.Exposure] = None
    driver_match: Optional[DriverMatch] = None  # None: it did not run (its attempts never started)
    known: Optional[baseline_mod.Known] = None  # the baseline's entry that judged it
    # Its results.json entry where it was written elsewhere (in a machine's guest): taken as it is.
    entry: Optional[dict] = None

    @property
    def phases(self) -> Dict[str, float]:
        return self.launch.phases

    def artifact(self, name: str) -> Optional[str]:
        """A file behind one of the verdict's checks: image, golden, diff, scanout, scanout_diff."""
        return next((c.artifacts[name] for c in self.verdict.checks if name in c.artifacts), None)

    @property
    def diff_path(self) -> Optional[str]:
        return self.artifact("diff")
