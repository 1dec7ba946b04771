"""The benchmark kind: glmark2's scenes through the path on a headless display (an X server,
Xvfb; or the path's own DRM card, where a guest has one), its own validation first, then timed
rounds; each scene a subtest with its fps as the median of the rounds and their spread, on the
renderer the path gives (else a silent software fallback, named)."""
import re
import statistics
from typing import Any, Dict, List, Optional, Tuple

from ..scenario.outcomes import Subtest, SubtestOutcome
from .base import (Key, Problems, Step, StepRun, WorkloadKind, flag, integer, positive_number,
                   string_list, text)

FPS_LINE = re.compile(r"^\[(?P<scene>[^\]]+)\] (?P<options>.*?): FPS: (?P<fps>\d+(?:\.\d+)?) "
                      r"FrameTime:", re.MULTILINE)
VALIDATION_LINE = re.compile(r"^\[(?P<scene>[^\]]+)\] .*?: Validation: (?P<word>\w+)", re.MULTILINE)
SIZE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$")
VALIDATE = "validate"
RENDERER_LINE = re.compile(r"^\s*GL_RENDERER:\s*(?P<renderer>.+?)\s*$", re.MULTILINE)
XVFB = ("xvfb-run", "--auto-servernum", "--server-args=-screen 0 1024x768x24")
XVFB_PROGRAMS = ("Xvfb", "xauth")  # what xvfb-run starts
# display -> (what runs glmark2, the programs that must be there besides, glmark2's flavour)
DISPLAYS = {"xvfb": (XVFB, XVFB_PROGRAMS, "glmark2-es2"), "drm": ((), (), "glmark2-es2-drm")}
DISPLAY_PACKAGES = {"xvfb": ("glmark2-es2-x11", "xvfb", "xauth"), "drm": ("glmark2-es2-drm",)}
STARTUP_S = 20.0  # Xvfb and glmark2's start, per step, beyond the scenes' own durations


def size(problems: Problems, key: str, value: Any) -> Any:
    if text(problems, key, value) is None:
        return None
    if not SIZE.match(value):
        problems.add(key, "must be WIDTHxHEIGHT, e.g. 320x240")
        return None
    return value


def display_name(problems: Problems, key: str, value: Any) -> Any:
    if text(problems, key, value) is None:
        return None
    if value not in DISPLAYS:
        problems.add(key, f"must be one of {', '.join(DISPLAYS)}")
        return None
    return value


def rounds_count(problems: Problems, key: str, value: Any) -> Any:
    if integer(problems, key, value) is None:
        return None
    if not 1 <= value <= 20:
        problems.add(key, "must be from 1 to 20")
        return None
    return value


def scene_fps(output: str) -> Dict[str, float]:
    """Each scene's fps in one glmark2 run's output."""
    return {match["scene"]: float(match["fps"]) for match in FPS_LINE.finditer(output)}


def validations(output: str) -> Dict[str, str]:
    """Each scene's validation word in a `glmark2 --validate` run's output (Success, Failure,
    Unknown)."""
    return {match["scene"]: match["word"] for match in VALIDATION_LINE.finditer(output)}


def round_name(number: int) -> str:
    return f"round-{number}"


class Benchmark(WorkloadKind):
    name = "benchmark"
    packages = DISPLAY_PACKAGES["xvfb"]
    keys = {
        "scenes": Key(string_list, "glmark2 scenes by name", default=["build", "texture",
                                                                      "shading"]),
        "display": Key(display_name,
                       "xvfb (an X server inside the path) or drm (the path's own card: a guest's)",
                       default="xvfb"),
        "program": Key(text,
                       "the glmark2 flavour (default: the display's, glmark2-es2 or "
                       "glmark2-es2-drm)"),
        "duration_s": Key(positive_number, "seconds each scene runs in a round", default=1.0),
        "rounds": Key(rounds_count, "timed rounds; a scene's fps is their median", default=3),
        "size": Key(size, "the surface, WIDTHxHEIGHT", default="320x240"),
        "validate": Key(flag, "run glmark2 --validate first (a scene that fails it fails)",
                        default=True),
    }

    def default_packages(self, settings: Dict[str, Any]) -> Tuple[str, ...]:
        return DISPLAY_PACKAGES[settings.get("display", "xvfb")]

    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        runner, display_programs, flavour = DISPLAYS[settings["display"]]
        program, scenes = settings.get("program") or flavour, settings["scenes"]
        common = (*runner, program, "--size", settings["size"])
        timed = [arg for scene in scenes
                 for arg in ("-b", f"{scene}:duration={settings['duration_s']:g}")]
        round_s = STARTUP_S + settings["duration_s"] * len(scenes) * 2
        also = (program, *display_programs) if runner else display_programs
        steps = [Step(round_name(n), (*common, "--off-screen", *timed), round_s, also=also)
                 for n in range(1, settings["rounds"] + 1)]
        if settings["validate"]:
            checked = [arg for scene in scenes for arg in ("-b", scene)]
            # off-screen: glmark2's references are of its own surface, not of a guest's whole screen
            steps.insert(0, Step(VALIDATE, (*common, "--off-screen", "--validate", *checked),
                                 STARTUP_S + 5.0 * len(scenes), also=also))
        return steps

    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        if run.exit_code != 0:
            return Subtest(run.name, SubtestOutcome.FAIL, f"{run.name} exited {run.exit_code}: "
                           + last_line(run.output), run.seconds)
        found = RENDERER_LINE.search(run.output)
        if run.path_renderer and found and found["renderer"] != run.path_renderer:
            return Subtest(run.name, SubtestOutcome.FAIL,
                           f"silent software fallback: glmark2 rendered on "
                           f"{found['renderer']}, the path gives {run.path_renderer}", run.seconds)
        return Subtest(run.name, SubtestOutcome.PASS, "", run.seconds)

    def judge_all(self, settings: Dict[str, Any], runs: Dict[str, StepRun],
                  probe: str) -> List[Subtest]:
        """One subtest per scene: failed where a step failed, its validation failed or it reported
        no fps; else its median fps over the rounds, with their spread."""
        judged = {step.name: (self.judge(settings, runs[step.name]) if step.name in runs
                              else self.judge_missing(step))
                  for step in self.steps(settings, probe)}
        broken = next((s for s in judged.values() if s.outcome is not SubtestOutcome.PASS), None)
        rounds = [scene_fps(runs[name].output) for name in judged if name != VALIDATE
                  and name in runs]
        words = validations(runs[VALIDATE].output) if VALIDATE in runs else {}
        seconds = sum(s.seconds or 0.0 for s in judged.values())
        return [self.scene(settings, scene, broken, words.get(scene), [r[scene] for r in rounds
                                                                       if scene in r],
                           seconds / len(settings["scenes"]))
                for scene in settings["scenes"]]

    def scene(self, settings: Dict[str, Any], scene: str, broken: Optional[Subtest],
              word: Optional[str],
              fps: List[float], seconds: float) -> Subtest:
        if broken is not None:
            return Subtest(scene, broken.outcome, broken.detail
                           if broken.detail.startswith(broken.name) else
                           f"{broken.name}: {broken.detail}", seconds)
        if settings["validate"] and word is None:
            return Subtest(scene, SubtestOutcome.FAIL,
                           "glmark2 --validate said nothing of it (no such scene?)", seconds)
        if word == "Failure":
            return Subtest(scene, SubtestOutcome.FAIL,
                           "glmark2 --validate: Failure (the picture is wrong)", seconds)
        if len(fps) < settings["rounds"]:
            return Subtest(scene, SubtestOutcome.FAIL,
                           f"an fps in {len(fps)} of {settings['rounds']} rounds "
                           "(no such scene?)", seconds)
        median = statistics.median(fps)
        figures = {"fps": median, "fps_min": min(fps), "fps_max": max(fps),
                   "rounds": float(len(fps))}
        said = f"{median:g} fps (median of {len(fps)}, {min(fps):g}-{max(fps):g})"
        if word == "Unknown":  # glmark2 has no reference picture for this scene
            return Subtest(scene, SubtestOutcome.WARN, said + "; validation unknown", seconds,
                           figures)
        return Subtest(scene, SubtestOutcome.PASS, said + ("; validated" if word else ""), seconds,
                       figures)


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


KIND = Benchmark()
