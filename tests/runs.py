"""Result folders made by the tests: a results.json of many scenarios across the real path table,
with every outcome, failure classes, renderers, fps, the leak audit, isolation facts, driver
matching, versions, phases and images, drawn from a seeded random generator (so two seeds give
two different runs, and one seed the same run every time)."""
import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from PIL import Image

from harness.scenario import paths
from harness.scenario.outcomes import FailureKind, Outcome
from harness.report import document as report_document, results

RUNTIMES = {"host": "22.3.6", "bullseye": "20.3.5", "bookworm": "22.3.6", "trixie": "25.0.7",
            "sid": "26.2.6",
            "bookworm-i386": "22.3.6"}
HOST_MESA = "22.3.6"
PROBES = ("gl", "vulkan")
SERVERS = ("0.10.4", "1.1.0")  # virglrenderer versions the vtest scenarios are spread over
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
FAILURES = [FailureKind.MISSING_LIBRARY, FailureKind.GLIBC_TOO_OLD, FailureKind.CRASH,
            FailureKind.DRIVER_HANG,
            FailureKind.WRONG_ARCHITECTURE, FailureKind.SILENT_SOFTWARE_FALLBACK]
# Outcomes by weight; every one also appears at least once (the first scenarios take them in turn).
WEIGHTS = {Outcome.PASS: 50, Outcome.FAIL: 12, Outcome.EXPECTED_FAIL: 12, Outcome.FLAKE: 6,
           Outcome.SKIP: 14,
           Outcome.UNEXPECTED_PASS: 6}
IMAGE_SIZE = (16, 16)
NATIVE_FPS = 2500.0


@dataclass(frozen=True)
class Combo:
    path: str
    runtime: str
    probe: str


def combos() -> List[Combo]:
    """Every (path, runtime, probe) the path table allows, in the matrix's order (paths major)."""
    found = []
    for spec in paths.PATHS.values():
        runtimes = ["host"] if spec.family == "host" else list(RUNTIMES)
        for runtime in runtimes:
            found += [Combo(spec.id, runtime, probe) for probe in PROBES if probe in spec.renderers]
    return found


def spread(items: List[Combo], count: int) -> List[Combo]:
    """`count` of the items, evenly spaced, so that every path keeps some scenarios; a path that
    runs on the host runtime keeps one there (its first chosen scenario becomes that one)."""
    chosen = [items[i * len(items) // count]
              for i in range(count)] if count < len(items) else list(items)
    for path in dict.fromkeys(c.path for c in items):
        mine = [index for index, c in enumerate(chosen) if c.path == path]
        host = next((c for c in items if c.path == path and c.runtime == "host"), None)
        if mine and host and not any(chosen[index].runtime == "host" for index in mine):
            chosen[mine[0]] = host
    return chosen


def renderer_for(spec: "paths.PathSpec", probe: str) -> str:
    inner = "LLVMPIPE (LLVM 15.0.6, 256 bits)"
    if spec.venus and probe == "vulkan":
        return f"Virtio-GPU Venus ({inner.lower()})"
    if "virgl_test_server" in spec.services or spec.guest_gpu:
        return f"virgl ({inner})"
    return "llvmpipe (LLVM 15.0.6, 256 bits)"


# lifecycle.HOST_PATHS
HOST_FOLDERS = ["/home", "/root", "/srv", "/var/lib", "/boot", "/opt", "/mnt", "/media"]
# A folder of the run, and as the families pass them: every one its probe the scenario's sentinel;
# a container and a Flatpak app (a root of their own, with a /home of its own) no host folder.
TMP = "/tmp/gh-5eed"


def checked_paths(spec: "paths.PathSpec", sentinel: str, result_dir: str) -> List[str]:
    if spec.family == "flatpak":
        return [sentinel]
    if spec.family == "container":
        return [sentinel, result_dir]
    return [sentinel, result_dir, *HOST_FOLDERS]


def isolation(spec: "paths.PathSpec", runtime: str, index: int, rng: random.Random) -> dict:
    family = spec.family
    own = {"host": 0, "sandbox": 7, "container": 5, "flatpak": 4}.get(family, 7)
    checked = checked_paths(spec, f"{TMP}/{index}/host-sentinel", f"/out/scenarios/{index}")
    # What exists: everything for a host process; in a guest, its root's folders (the host's on the
    # host runtime, the runtime's own else: the probe cannot tell them apart).
    visible = checked if family == "host" else HOST_FOLDERS if family in ("vm", "vfio") else []
    return {"namespaces": {ns: f"{ns}:[{4026531000 + (i if i >= own else 500 + i)}]" for i,
                           ns in enumerate(NAMESPACES)},
            "seccomp_mode": 2 if family in ("container", "flatpak") else 0,
            "no_new_privs": family in ("sandbox", "flatpak"),
            "capabilities": 0 if spec.cap_drop_all else rng.choice([11, 40])
            if family == "container" else 40,
            "uid": 0, "dri_nodes": ["/dev/dri/renderD128"] if spec.needs_render_node else [],
            "host_paths_visible": len(visible), "host_paths_checked": len(checked),
            "host_paths_checked_list": checked, "host_paths_visible_list": list(visible)}


def exposure(spec: "paths.PathSpec", runtime: str, rng: random.Random) -> dict:
    """The leak audit as harness.judging.exposure writes it: a host process sees the whole host, a
    guest
    on the host runtime too (its 9p root is the host's /); on the host runtime a sandbox's root is
    the host's /usr and /etc (~130,000 files); elsewhere the host libraries a path binds in, the
    files Flatpak exposes, or nothing."""
    family, drawn = spec.family, rng.randint(10, 140000)
    whole = family == "host" or (family in ("vm", "vfio") and runtime == "host")
    if family in ("vm", "vfio") or whole:
        files, count = [], 0
    elif family == "flatpak":
        files, count = ["/etc/hosts", "/usr/share/fonts", "/usr/share/zoneinfo"], 6924 + drawn % 50
    elif spec.host_driver:
        files, count = ["/usr/lib/x86_64-linux-gnu/dri",
                        "/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0.0.0"], 18 + drawn % 44
    else:
        files, count = [], 0
    if runtime == "host" and not whole and family != "container":
        files, count = ["/etc", "/usr", *files], 130100 + drawn % 200
    return {"whole_host": whole, "host_files": files, "host_file_count": None if whole else count,
            "host_devices": ["/dev/dri/renderD128"] if spec.needs_render_node else [],
            "host_sockets": ["/tmp/.virgl_test"] if "virgl_test_server" in spec.services else [],
            "shared_namespaces": list(NAMESPACES) if family == "host" else ["user", "cgroup"]
            if family == "container"
            else [], "separate_kernel": family in ("vm", "vfio"), "source": "mountinfo",
            "host_folders_checked": HOST_FOLDERS, "host_folders_visible": HOST_FOLDERS if whole
            else []}


SKIPS = {"venus": "QEMU 7.2.22 has no venus on virtio-gpu-gl-pci (QEMU >= 9.2: --toolset "
                  "runtime:trixie-host)",
         "render node": "no DRM render node on this host (/dev/dri/renderD* absent)",
         "builder": "runtime {runtime}: building a runtime needs mmdebstrap (apt-get install "
                    "mmdebstrap)"}
# What a failure class is about (diagnosis.subject), as the classifier writes it.
SUBJECTS = {FailureKind.MISSING_LIBRARY: "libglapi.so.0",
            FailureKind.GLIBC_TOO_OLD: "version GLIBC_2.34",
            FailureKind.CRASH: "SIGSEGV", FailureKind.DRIVER_HANG: "vkEnumeratePhysicalDevices",
            FailureKind.WRONG_ARCHITECTURE: "libvulkan_lvp.so",
            FailureKind.SILENT_SOFTWARE_FALLBACK: "llvmpipe"}


def skip_reason(spec: "paths.PathSpec", runtime: str) -> str:
    key = ("venus" if spec.venus and spec.family == "vm" else "render node"
           if spec.needs_render_node
           else "builder" if runtime != "host" else "render node")
    return SKIPS[key].format(runtime=runtime)


def outcome_at(index: int, rng: random.Random) -> Outcome:
    if index < len(WEIGHTS):
        return list(WEIGHTS)[index]
    return rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]


def scenario(combo: Combo, index: int, rng: random.Random) -> dict:
    spec = paths.get(combo.path)
    outcome = outcome_at(index, rng)
    failed = outcome in (Outcome.FAIL, Outcome.EXPECTED_FAIL, Outcome.FLAKE)
    kind = rng.choice(FAILURES) if failed else None
    rendered = outcome.renders
    mesa = RUNTIMES[combo.runtime]
    scenario_id = f"{combo.path}/{combo.runtime}/{combo.probe}"
    folder = f"scenarios/{scenario_id.replace('/', '__')}"
    versions: Dict[str, Optional[str]] = {"mesa": HOST_MESA,
                                          "runtime_gl": f"OpenGL ES 3.2 Mesa {mesa}"}
    if "virgl_test_server" in spec.services:
        versions["virgl_test_server"] = SERVERS[index % len(SERVERS)]
    phases = {"setup_s": round(rng.uniform(0.001, 0.4), 4),
              "services_ready_s": round(rng.uniform(0, 0.02), 4),
              "probe_s": round(rng.uniform(0.1, 0.6), 4)}
    rss = {"probe": rng.randint(80000, 120000)}
    if spec.family in ("vm", "vfio"):
        phases.update(qemu_start_s=round(rng.uniform(0.05, 0.3), 4), boot_s=round(rng.uniform(1.8,
                                                                                              2.4),
                                                                                  4))
        rss["qemu"] = rng.randint(500000, 650000)
    if "virgl_test_server" in spec.services:
        rss["virgl_test_server"] = rng.randint(90000, 110000)
    subject = SUBJECTS[kind] if kind else None
    reason = {Outcome.PASS: "all checks passed", Outcome.SKIP: skip_reason(spec, combo.runtime),
              Outcome.UNEXPECTED_PASS: "passed, but the baseline knows it as a failure (old Mesa)",
              Outcome.FLAKE: f"passed on attempt 2 after: {kind} in vkMapMemory"}.get(
        outcome, f"{kind} {subject}: the runtime lacks it")
    fps = (NATIVE_FPS if spec.fps_reference else round(NATIVE_FPS * rng.uniform(0.01, 1.3),
                                                       2)) if rendered else None
    entry = {
        "id": scenario_id, "path": combo.path, "runtime": combo.runtime, "probe": combo.probe,
        "outcome": outcome.value, "reason": reason,
        "failure_kind": kind.value if kind else None,
        "diagnosis": {"class": kind.value, "subject": subject} if kind else None,
        "expect": {"outcome": "fail" if outcome is Outcome.EXPECTED_FAIL else "pass", "reason": ""},
        "checks": [{"name": "renderer", "ok": rendered, "detail": "renderer checked",
                    "artifacts": {}}],
        "renderer": renderer_for(spec, combo.probe) if rendered else None,
        "wall_s": round(sum(phases.values()), 4), "attempts": 2 if outcome is Outcome.FLAKE else 1,
        "phases_s": phases, "fps": fps,
        "peak_rss_kb": rss if outcome is not Outcome.SKIP else {},
        "image": f"{folder}/probe/probe.png" if rendered else None, "result_dir": folder,
        "logs": {"probe": f"{folder}/probe.log"},
        "versions": versions, "runtime_facts": {"mesa": mesa} if combo.runtime != "host" else None,
    }
    if outcome is not Outcome.SKIP:
        used = "host-driver" if spec.host_driver else "runtime"
        mismatch = spec.needs_render_node and mesa != HOST_MESA
        entry.update(
            isolation=isolation(spec, combo.runtime, index, rng), exposure=exposure(spec,
                                                                                    combo.runtime,
                                                                                    rng),
            driver_match={"runtime_mesa": mesa, "host_driver": f"mesa {HOST_MESA}",
                          "kernel_driver": "i915",
                          "kernel_driver_version": None, "used": used, "mismatch": mismatch,
                          "note": f"runtime Mesa {mesa}, host Mesa {HOST_MESA}" if mismatch
                          else ""})
    return entry


def document(count: int = 150, seed: int = 16) -> dict:
    """A results.json document of `count` scenarios, as `gpu-harness run` writes it."""
    rng = random.Random(seed)
    entries = report_document.with_fps_share([scenario(c, i, rng) for i,
                                              c in enumerate(spread(combos(), count))])
    summary: Dict[str, int] = {}
    for entry in entries:
        summary[entry["outcome"]] = summary.get(entry["outcome"], 0) + 1
    return {"schema": results.SCHEMA, "harness_version": "test",
            "matrix": f"generated (seed {seed})",
            "started": "2026-11-23T00:00:00+00:00", "finished": "2026-11-23T00:01:00+00:00",
            "wall_s": 60.0,
            "host": {"kernel": "6.1.0", "machine": "x86_64",
                     "render_nodes": ["/dev/dri/renderD128"]},
            "toolset": {"source": "discovery", "tools": {
                "virgl_test_server": {"path": "/usr/bin/virgl_test_server", "version": "0.10.4"},
                "qemu-system-x86_64": {"path": "/usr/bin/qemu-system-x86_64",
                                       "version": "7.2.22"}}},
            "summary": summary, "scenarios": entries}


def colour_of(scenario_id: str, shade: int = 0) -> tuple:
    """A solid colour per scenario (and shade): the image a scenario 'rendered'."""
    value = sum(scenario_id.encode()) % 200
    return (value, 255 - value, (value + shade) % 256)


def write(folder: Path, data: dict, shades: Optional[Dict[str, int]] = None) -> Path:
    """The run's folder: results.json and an image for each scenario that has one."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in data["scenarios"]:
        if entry.get("image"):
            image = folder / entry["image"]
            image.parent.mkdir(parents=True, exist_ok=True)
            shade = (shades or {}).get(entry["id"], 0)
            Image.new("RGB", IMAGE_SIZE, colour_of(entry["id"], shade)).save(image)
    (folder / "results.json").write_text(json.dumps(data, indent=1))
    return folder


def changed(data: dict, scenario_id: str, **fields) -> dict:
    """A copy of the document with one scenario's fields replaced (None removes the scenario)."""
    new = copy.deepcopy(data)
    for index, entry in enumerate(new["scenarios"]):
        if entry["id"] == scenario_id:
            if fields.get("remove"):
                del new["scenarios"][index]
            else:
                entry.update(fields)
            return new
    raise KeyError(scenario_id)


def first(data: dict, outcome: Outcome, **where) -> dict:
    """The first scenario with this outcome (and these field values)."""
    return next(s for s in data["scenarios"] if s["outcome"] == outcome.value
                and all(s.get(k) == v for k, v in where.items()))
