"""How a presenting scenario's frames reached its display server: the buffer path (from the
client's Wayland protocol trace, or on X11 from what the probe mapped and the server offered),
the buffers, the frames presented and discarded, and the rate they were presented at."""
import re
from pathlib import Path
from typing import List, Mapping, Optional

from . import bufferpath


def buffer_path_of(display: str, presentation: Mapping,
                   probe_log: Optional[str]) -> Optional[bufferpath.BufferPath]:
    """Wayland: the trace in the probe's log (WAYLAND_DEBUG=1), where it holds a buffer request;
    X11: the probe's mappings and the extensions its server offered."""
    buffers = presentation.get("buffers")
    if display == "wayland" and probe_log and Path(probe_log).is_file():
        found = bufferpath.read_trace(Path(probe_log))
        if found.attaches or found.created:
            return found
    if display == "x11" and isinstance(buffers, Mapping):
        extensions = presentation.get("extensions")
        return bufferpath.from_x11_facts(
            buffers, extensions if isinstance(extensions, Mapping) else buffers.get("offered"))
    return None


def buffer_facts(found: Optional[bufferpath.BufferPath]) -> dict:
    """How the frames travelled: the paths (most used first), where that was read, the buffers
    made (counted in a protocol trace; X11 has no such count) and whether the server offered a
    dma-buf protocol (zwp_linux_dmabuf_v1, DRI3)."""
    return {
        "buffer_path": found.paths[0] if found and found.paths else None,
        "buffer_paths": found.paths if found else [],
        "buffer_source": found.source if found else None,
        "buffers_created": (sum(found.created.values())
                            if found and found.source == "trace" else None),
        "offered_dmabuf": bool(found and ("zwp_linux_dmabuf_v1" in found.offered
                                          or "DRI3" in found.offered)),
    }


def toolkit_renderer(drivers: List[str]) -> str:
    """The APIs whose drivers an app's processes had mapped when captured: gl, vulkan, both
    (gl+vulkan: a toolkit that looked at Vulkan devices keeps their drivers mapped, whichever it
    drew with), or cpu where none."""
    apis = []
    if any(name.endswith("_dri.so") or name.startswith(("libgallium", "libnvidia-", "vtest"))
           for name in drivers):
        apis.append("gl")
    if any(name.startswith("libvulkan_") for name in drivers):
        apis.append("vulkan")
    return "+".join(apis) or "cpu"


# GLib's log lines ("(app:12): Gtk-WARNING **: 05:42:40.593: ...") and fontconfig's errors
APP_MESSAGE = re.compile(r"^\(([^():]+):\d+\): ([\w.-]+-(?:WARNING|CRITICAL|ERROR)) \*\*: "
                         r"(?:[\d:.]+: )?(.*)$|^(Fontconfig error: .*)$")
MAX_MESSAGES = 10


def app_messages(log: Optional[Path]) -> List[str]:
    """The app's own warnings and errors in its step's log (its protocol trace aside), each once,
    without its pid and time."""
    if log is None or not log.is_file():
        return []
    found: List[str] = []
    with open(log, errors="replace") as handle:
        for line in handle:
            match = APP_MESSAGE.match(line.rstrip("\n"))
            if not match:
                continue
            text = match.group(4) or f"{match.group(2)}: {match.group(3)}"
            if text not in found:
                found.append(text)
            if len(found) == MAX_MESSAGES:
                break
    return found


def app_facts(display: str, report: Mapping, probe_out: Optional[Path]) -> Optional[dict]:
    """An app's window (a workload step shown on a display): its buffer path from its own
    protocol trace (its step's log, on Wayland), what its toolkit drew with, and its own warnings
    and errors."""
    steps = report.get("steps")
    shown = [step for step in steps if isinstance(step, Mapping) and step.get("shown")] \
        if isinstance(steps, list) else []
    if not shown:
        return None
    step = shown[0]
    drivers = [str(name) for name in step.get("drivers") or []]
    log = probe_out / str(step["log"]) if probe_out and step.get("log") else None
    found = buffer_path_of(display, {}, str(log) if log else None)
    return {"app": step.get("name"), "toolkit_renderer": toolkit_renderer(drivers),
            "toolkit_drivers": drivers, "captured": step.get("captured"),
            "app_messages": app_messages(log), **buffer_facts(found)}


def facts(display: str, report: Mapping, probe_log: Optional[str],
          probe_out: Optional[Path] = None) -> Optional[dict]:
    """results.json's `presentation` of one scenario (None offscreen, or where the probe said
    nothing of its window): buffer_path, the paths and buffers behind it, frames presented per
    second (the median of the timed rounds, with their spread) and how the last frame ended; for
    an app, what its toolkit drew with (app_facts)."""
    presentation = report.get("presentation")
    if display == "offscreen":
        return None
    if not isinstance(presentation, Mapping):
        return app_facts(display, report, probe_out)
    timings = report.get("timings") if isinstance(report.get("timings"), Mapping) else {}
    assert isinstance(timings, Mapping)
    found = buffer_path_of(display, presentation, probe_log)
    sizes = found.sizes if found else []
    return {
        **buffer_facts(found),
        "buffer_size": list(max(sizes)) if sizes else presentation.get("size"),
        "formats": found.formats if found else [],
        "frames": presentation.get("frames"),
        "presented": presentation.get("presented"),
        "discarded": presentation.get("discarded"),
        "feedback": presentation.get("feedback"),
        "last_frame": presentation.get("last_frame"),
        "fps": timings.get("fps"),
        "fps_spread": ([timings["fps_min"], timings["fps_max"]]
                       if "fps_min" in timings and "fps_max" in timings else None),
        "mappings": found.mappings if found and found.mappings else None,
    }
