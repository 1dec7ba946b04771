"""The presentation answer: per path, runtime, API and display, did the frames reach the display
server (or the class of why not), by which buffer path, and what presenting cost against the same
scenario offscreen."""
from typing import Dict, List, Optional, Tuple

from ..scenario.outcomes import Outcome
from .display import css_class
from .records import ScenarioEntry
from .table import Answer, Cell


def offscreen_fps(scenarios: List[ScenarioEntry]) -> Dict[Tuple[str, str, str, str], float]:
    return {(s.path, s.runtime, s.probe, s.machine): s.fps for s in scenarios
            if s.display == "offscreen" and s.fps and s.outcome is Outcome.PASS}


def presented(entry: ScenarioEntry) -> str:
    if entry.outcome is Outcome.SKIP:
        return "skipped"
    if entry.outcome.is_success and entry.outcome is not Outcome.EXPECTED_FAIL:
        return "presented"
    return f"not presented: {entry.failure_kind or entry.outcome.value}"


def record(entry: ScenarioEntry, offscreen: Optional[float]) -> dict:
    shown = entry.presentation
    fps = shown.fps if shown else None
    return {
        "id": entry.id, "path": entry.path, "runtime": entry.runtime, "api": entry.probe,
        "display": entry.display, "machine": entry.machine, "outcome": entry.outcome.value,
        "presented": presented(entry), "failure_kind": entry.failure_kind,
        "buffer_path": shown.buffer_path if shown else None,
        "buffer_paths": list(shown.buffer_paths) if shown else [],
        "buffers": shown.buffers_created if shown else None,
        "buffer_size": list(shown.buffer_size) if shown and shown.buffer_size else None,
        "dmabuf_offered": shown.offered_dmabuf if shown else None,
        "frames_presented": shown.presented if shown else None,
        "fps": fps, "fps_spread": list(shown.fps_spread) if shown and shown.fps_spread else None,
        "offscreen_fps": offscreen,
        "toolkit_renderer": shown.toolkit_renderer if shown else None,
        # presenting's cost: its frame rate as a share of the same scenario's offscreen one
        "vs_offscreen": round(fps / offscreen, 3) if fps and offscreen else None,
    }


def row(found: dict, entry: ScenarioEntry) -> List[Cell]:
    spread = found["fps_spread"]
    fps = (f"{found['fps']:.0f} ({spread[0]:.0f}-{spread[1]:.0f})" if found["fps"] and spread
           else "-")
    share = f"{found['vs_offscreen']:.0%}" if found["vs_offscreen"] else "-"
    buffers = found["buffer_path"] or "-"
    if found["buffers"]:
        buffers += f" ({found['buffers']} buffers)"
    return [Cell(found["path"] + ("" if found["machine"] == "local" else f"@{found['machine']}")),
            Cell(found["runtime"]),
            Cell(found["api"] + (f" (drew with {found['toolkit_renderer']})"
                                 if found["toolkit_renderer"] else "")), Cell(found["display"]),
            Cell(found["presented"], css_class(entry.outcome), entry.reason), Cell(buffers),
            Cell("yes" if found["dmabuf_offered"] else "no"), Cell(fps), Cell(share)]


def presentation(scenarios: List[ScenarioEntry]) -> Answer:
    answer = Answer("presentation", "Frames on a display server through each path",
                    "Did the frames a path rendered reach the display server (weston, Xvfb), as "
                    "its capture shows, or why not; how the buffers travelled (the client's "
                    "protocol trace on Wayland, what it mapped on X11); frames presented per "
                    "second, the median of the timed rounds with their spread, and that as a share "
                    "of the same scenario offscreen: a compositor paces its clients (weston "
                    "headless: 40-60 Hz), so on Wayland the share is that pacing more than a cost; "
                    "an X server with no vsync paces nothing.",
                    ["path", "runtime", "api (an app: what it drew with)", "display", "presented",
                     "buffer path",
                     "dma-buf offered", "fps (spread)", "vs offscreen"])
    offscreen = offscreen_fps(scenarios)
    for entry in scenarios:
        if entry.display == "offscreen":
            continue
        found = record(entry, offscreen.get((entry.path, entry.runtime, entry.probe,
                                             entry.machine)))
        answer.add(found, row(found, entry))
    return answer.or_say("No scenario presented to a display (a matrix's displays = "
                         "[\"wayland\", \"x11\"] adds them).")
