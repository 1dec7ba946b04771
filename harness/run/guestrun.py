"""Inside a machine's guest: the scenarios the host handed over (a machine.json on the shared output
folder) run here as local ones, through the runner as on any host; each one's results.json entry
is appended to a results file on the share as it finishes, for the host to take as it is.

    python -m harness.run.guestrun /run/gpu-harness/out/machines/NAME/probe/machine.json
"""
import json
import os
import sys
from pathlib import Path
from typing import List

from ..core import log
from ..judging import deqprunner, exposure
from . import runner
from ..runtimes import chosen_toolset
from .machine_run import DONE, RESULTS
from ..scenario.model import Scenario
from ..report import document
from ..judging.scenario_result import ScenarioResult

def main(argv: List[str]) -> int:
    spec_file = Path(argv[0])
    spec = json.loads(spec_file.read_text())
    # the host counted its own root, which is this one's
    exposure.seed(spec.get("file_counts") or {})
    out_dir = Path(spec["out_dir"])
    known = deqprunner.load_any(Path(spec["baseline"])) if spec.get("baseline") else None
    options = runner.RunOptions(out_dir=out_dir, jobs=spec["jobs"], retries=spec["retries"],
                                goldens_dir=Path(spec["goldens_dir"]),
                                compare_images=spec["compare_images"],
                                baseline=known)
    log.to_stderr()  # the guest's stderr is the machine's console log on the host
    toolset = chosen_toolset.load()
    results = spec_file.parent / RESULTS
    results.write_text("")

    count = 0

    def finished(result: ScenarioResult) -> None:
        nonlocal count
        with results.open("a") as lines:
            lines.write(json.dumps(document.entry(result, out_dir, toolset), default=str) + "\n")
        print(f"{result.verdict.outcome.value} {result.scenario.id}: {result.verdict.reason}",
              file=sys.stderr,
              flush=True)
        count += 1
        # fault injection (lifecycle.Hooks.machine_panic_after)
        if spec.get("panic_after") == count:
            os.sync()
            Path("/proc/sysrq-trigger").write_text("c")

    runner.run([Scenario.from_dict(data) for data in spec["scenarios"]], toolset, options,
               on_result=finished)
    (spec_file.parent / DONE).write_text(json.dumps({"toolset": toolset.to_dict(),
                                                     "preparation": [p.to_dict()
                                                                     for p in options.prepared]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
