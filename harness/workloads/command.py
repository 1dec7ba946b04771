"""The command kind: the user's own program through the path, judged by its exit code and,
where given, patterns in its output (a pass line, a fail line, an fps figure) and a picture it
wrote against its golden."""
import re
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

from ..scenario.outcomes import Subtest, SubtestOutcome
from .base import (OUT, STEP_TIMEOUT_S, Key, Problems, Step, StepRun, WorkloadKind, golden_file,
                   host_file, host_files, integer, pattern, picture_subtest, positive_number,
                   string_list, string_table, text)

WORK = "steps/work"  # the command's working folder, in the probe's output folder
DEFAULT_SHOW_S = 5.0  # an app on a display: its window shown this long before the capture
DISPLAYS = ("wayland", "x11", "xwayland")


def app_display(problems: Problems, key: str, value: Any) -> Any:
    if value not in DISPLAYS:
        problems.add(key, f"must be one of {', '.join(DISPLAYS)}")
        return None
    return value


PICTURE_SUFFIX = "-picture"
# a Flatpak app id (flatpak_is_valid_name): 3 or more dot-separated parts that start with a letter
# or '_', of letters, digits and '_' ('-' in the last), 255 characters at most
APP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\.[A-Za-z_][A-Za-z0-9_-]*")


def app_id(problems: Problems, key: str, value: Any) -> Any:
    if text(problems, key, value) is None:
        return None
    if len(value) > 255 or not APP_ID.fullmatch(value):
        problems.add(key, f"{value!r} is not a Flatpak app id (three or more dot-separated "
                     "parts of letters, digits and '_', none starting with a digit: "
                     "org.gnome.clocks)")
        return None
    return value


def picture_path(problems: Problems, key: str, value: Any) -> Any:
    """Where the program writes its picture: relative to its working folder, or under {out}/."""
    if text(problems, key, value) is None:
        return None
    inside = PurePosixPath(value[len(OUT) + 1:] if value.startswith(OUT + "/") else value)
    if inside.is_absolute() or ".." in inside.parts:
        problems.add(key, "must be relative to the command's working folder (or start with {out}/)")
        return None
    return value


def picture_on_host(picture: str, out_dir: Path) -> Path:
    if picture.startswith(OUT + "/"):
        return out_dir / picture[len(OUT) + 1:]
    return out_dir / WORK / picture


class Command(WorkloadKind):
    name = "command"
    keys = {
        "argv": Key(string_list, "the program and its arguments, as a list", required=True),
        "expect_exit": Key(integer, "the exit code that passes", default=0),
        "pass_pattern": Key(pattern, "a regular expression its output must match to pass"),
        "fail_pattern": Key(pattern, "a regular expression that fails it where its output matches"),
        "fps_pattern": Key(pattern,
                           "a regular expression whose first group is its frames per second"),
        "env": Key(string_table, "environment it gets besides the path's"),
        "timeout_s": Key(positive_number, "seconds it may take", default=STEP_TIMEOUT_S),
        "picture": Key(picture_path,
                       "a PNG it writes (relative to its working folder), compared with golden"),
        "golden": Key(golden_file, "the golden of its picture, relative to the matrix"),
        "bundle": Key(host_file,
                      "a Flatpak bundle (.flatpak) whose app it runs in (the flatpak paths, over "
                                 "the scenario's runtime), relative to the matrix"),
        "display": Key(app_display, "the display it shows a window on (wayland, x11): a server "
                       "the scenario starts, whose screen is captured after duration_s"),
        "app_id": Key(app_id, "the Flatpak app id its app is exported and run under where a path "
                      "runs an app by its id (flatpak-vtest-fallback: `flatpak run ... APP_ID`)"),
        "duration_s": Key(positive_number, "seconds its window is shown before the capture "
                          "(with display; on Wayland from its first frame), then it is ended"),
        "files": Key(host_files,
                     "host files it reads (its script, its data), relative to the matrix: "
                                 "each is {out}/inputs/NAME inside the path"),
    }

    def inputs(self, settings: Dict[str, Any]) -> Dict[str, str]:
        return {Path(file).name: file for file in settings.get("files", [])}

    def settings(self, table: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
        found = super().settings(table, problems)
        if ("picture" in table) != ("golden" in table):
            problems.add("golden" if "picture" in table else "picture",
                         "picture and golden go together")
        if "duration_s" in table and "display" not in table:
            problems.add("duration_s", "goes with display (how long its window is shown)")
        return found

    def shipped_in(self, settings: Dict[str, Any]) -> Optional[Tuple[str, str]]:
        # An app that ships as an image is a runtime of its own ([runtimes.NAME] kind = "image").
        return ("bundle", settings["bundle"]) if "bundle" in settings else None

    def judge_all(self, settings: Dict[str, Any], runs: Dict[str, StepRun],
                  probe: str) -> List[Subtest]:
        judged = super().judge_all(settings, runs, probe)
        if "picture" not in settings or "golden" not in settings:
            return judged
        name = judged[0].name + PICTURE_SUFFIX
        run: Optional[StepRun] = next(iter(runs.values()), None)
        if judged[0].outcome is not SubtestOutcome.PASS or run is None:
            return [*judged, Subtest(name, SubtestOutcome.FAIL,
                                     "not compared: the command did not pass")]
        if run.out_dir is None:
            return [*judged, Subtest(name, SubtestOutcome.FAIL,
                                     "not compared: the probe's output is not on the host")]
        return [*judged, picture_subtest(name, picture_on_host(settings["picture"], run.out_dir),
                                         Path(settings["golden"]))]

    def steps(self, settings: Dict[str, Any], probe: str) -> List[Step]:
        """The program, as one step named after the probe ([probes.NAME]): the subtest is NAME, its
        picture NAME-picture, whatever the program is called (sh, python3)."""
        shown = settings.get("duration_s", DEFAULT_SHOW_S) if "display" in settings else None
        return [Step(probe, tuple(settings["argv"]), settings["timeout_s"],
                     tuple(sorted(settings.get("env", {}).items())), show_s=shown)]

    def judge_output(self, settings: Dict[str, Any], run: StepRun) -> Subtest:
        figures: Dict[str, float] = {}
        if "fps_pattern" in settings:
            found = re.search(settings["fps_pattern"], run.output, re.MULTILINE)
            if found and found.groups():
                try:
                    figures["fps"] = float(found.group(1))
                except ValueError:
                    pass
        wanted = settings["expect_exit"]
        drawn = f"; drew with {', '.join(run.drivers)}" if run.drivers else (
            "; no GL or Vulkan driver mapped (software drawing)" if run.shown else "")
        if "display" in settings and not run.shown:
            return Subtest(run.name, SubtestOutcome.FAIL, f"it ended (exit {run.exit_code}) before "
                           "its window was captured", run.seconds, figures)
        if run.shown:
            shown_s = settings.get("duration_s", DEFAULT_SHOW_S)
            return Subtest(run.name, SubtestOutcome.PASS, f"shown for {shown_s:g} s, captured, "
                           f"then ended{drawn}", run.seconds, figures)
        if run.exit_code != wanted:
            return Subtest(run.name, SubtestOutcome.FAIL, f"exit {run.exit_code}, not {wanted}",
                           run.seconds, figures)
        if "fail_pattern" in settings:
            found = re.search(settings["fail_pattern"], run.output, re.MULTILINE)
            if found:
                return Subtest(run.name, SubtestOutcome.FAIL,
                               f"output matches the fail pattern: {found.group(0)[:120]!r}",
                               run.seconds, figures)
        if "pass_pattern" in settings and not re.search(settings["pass_pattern"], run.output,
                                                        re.MULTILINE):
            return Subtest(run.name, SubtestOutcome.FAIL, "output does not match the pass pattern",
                           run.seconds, figures)
        return Subtest(run.name, SubtestOutcome.PASS, f"exit {run.exit_code}", run.seconds, figures)


KIND = Command()
