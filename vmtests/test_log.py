"""The harness's log on a real run: harness.log beside results.json holds the argv of every
program the run started (each subprocess the harness process spawned, seen by Python's own
audit hook), with timestamps; each scenario's folder holds its own part, its records only."""
import re
import sys
from typing import List, Optional

from harness.core import log
from harness.run import runner
from harness.system.process import shown_argv

from .conftest import on_runtimes, outcome_or_skip, scenarios_from

_started: Optional[List[list]] = None  # while a test watches: every argv the process spawns


def _audit(event: str, args: tuple) -> None:
    if event == "subprocess.Popen" and _started is not None:
        _started.append([str(arg) for arg in args[1]])


sys.addaudithook(_audit)


def test_a_runs_log_holds_every_program_it_started_and_each_scenario_its_part(tmp_path, toolset):
    global _started
    scenarios = (scenarios_from({"matrix": {"paths": ["native", "vtest-virgl", "vm-headless"],
                                            "runtimes": ["host"],
                                            "probes": ["gl"]}})
                 + on_runtimes(["podman-vtest"], ("trixie",)))
    out = tmp_path / "out"
    _started = []
    try:
        with log.to_file(tmp_path / "harness.log", also=log.THIRD_PARTIES):
            results = runner.run(scenarios, toolset, runner.RunOptions(out_dir=out, jobs=2))
    finally:
        started, _started = _started, None
    for result in results:
        outcome_or_skip(result)
    text = (tmp_path / "harness.log").read_text()
    assert started, "the run started no program"
    missing = [argv for argv in started if shown_argv(argv) not in text]
    assert missing == [], f"started but not in the log: {missing[:3]}"
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO)", line)
               for line in text.splitlines())
    for result in results:
        part = (result.result_dir / runner.LOG_FILE).read_text()
        tagged = re.findall(r"\[([^\]]+)\]: ", part)
        assert tagged and set(tagged) == {result.scenario.id}, result.scenario.id
        assert "verdict: " in part and "attempt 1: family" in part
    assert "QEMU pid" in text and "QMP event SHUTDOWN" in text
