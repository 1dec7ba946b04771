"""The trace kind: an apitrace capture replayed through the path, the chosen calls' snapshots
compared with their goldens (as Mesa CI's trace jobs compare frames)."""
from pathlib import Path
from typing import Any, Dict, List

from ..scenario.outcomes import Subtest, SubtestOutcome
from .base import (INPUTS, OUT, STEP_TIMEOUT_S, Key, Problems, Step, StepRun, WorkloadKind,
                   golden_file, host_file, picture_subtest, positive_number, text)

REPLAY = "replay"
SNAPSHOTS = "snapshots"  # in the probe's output folder
RETRACERS = ("eglretrace", "glretrace")


def call_numbers(problems: Problems, key: str, value: Any) -> Any:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        problems.add(key, "must be a non-empty list of call numbers (apitrace dump shows them)")
        return None
    return sorted(set(value))


def retracer(problems: Problems, key: str, value: Any) -> Any:
    if text(problems, key, value) is None:
        return None
    if value not in RETRACERS:
        problems.add(key, f"must be one of {', '.join(RETRACERS)}")
        return None
    return value


def snapshot_name(call: int) -> str:
    """apitrace's name for the snapshot taken after a call: the prefix, then the call in 10
    digits."""
    return f"{call:010d}.png"


class Trace(WorkloadKind):
    name = "trace"
    packages = ("apitrace",)
    keys = {
        "file": Key(host_file, "the apitrace capture (.trace), relative to the matrix",
                    required=True),
        "calls": Key(call_numbers, "the calls after which a snapshot is compared with its golden",
                     required=True),
        "goldens": Key(golden_file,
                       "the folder of golden snapshots, CALL.png (default: beside the trace, "
                                    "NAME-goldens)"),
        "retrace": Key(retracer, "the replayer: eglretrace (EGL captures) or glretrace",
                       default="eglretrace"),
        "platform": Key(text, "waffle's platform for the replay", default="surfaceless_egl"),
        "timeout_s": Key(positive_number, "seconds the replay may take", default=STEP_TIMEOUT_S),
    }

    def inputs(self, settings: Dict[str, Any]) -> Dict[str, str]:
        return {Path(settings["file"]).name: settings["file"]}

    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        calls = ",".join(str(call) for call in settings["calls"])
        argv = (settings["retrace"], "--snapshot", calls, "--snapshot-prefix",
                f"{OUT}/{SNAPSHOTS}/",
                f"{OUT}/{INPUTS}/{Path(settings['file']).name}")
        return [Step(REPLAY, argv, settings["timeout_s"], (("WAFFLE_PLATFORM",
                                                            settings["platform"]),))]

    def goldens(self, settings: Dict[str, Any]) -> Path:
        trace = Path(settings["file"])
        return Path(settings.get("goldens") or trace.with_name(trace.stem + "-goldens"))

    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        if run.exit_code != 0:
            return Subtest(run.name, SubtestOutcome.FAIL, f"the replay exited {run.exit_code}",
                           run.seconds)
        return Subtest(run.name, SubtestOutcome.PASS, f"replayed in {run.seconds:.1f} s",
                       run.seconds)

    def judge_all(self, settings: Dict[str, Any], runs: Dict[str, StepRun],
                  probe: str) -> List[Subtest]:
        """One subtest per chosen call: its snapshot against its golden; a replay that did not end
        well fails every call with its reason."""
        names = [f"call-{call}" for call in settings["calls"]]
        run = runs.get(REPLAY)
        replay = self.judge(settings, run) if run else self.judge_missing(self.steps(settings,
                                                                                     probe)[0])
        if replay.outcome is not SubtestOutcome.PASS or run is None or run.out_dir is None:
            return [Subtest(name, replay.outcome, replay.detail, replay.seconds) for name in names]
        folder = run.out_dir / SNAPSHOTS
        return [picture_subtest(name, folder / snapshot_name(call),
                                self.goldens(settings) / f"{call}.png")
                for name, call in zip(names, settings["calls"], strict=True)]


KIND = Trace()
