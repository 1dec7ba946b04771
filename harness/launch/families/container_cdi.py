"""The CDI container paths' side of a launch: the spec a scenario's podman applies (the harness's,
written into the scenario's private spec folder, or the host's own), judged by `cdi check` before
the run, and for podman-cdi-stale, made stale the way a driver upgrade makes it."""
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ...host import cdi, cdicheck, hostdriver
from ...core.errors import InputError
from ..lifecycle import LaunchContext
from ...scenario.pathspec import CdiSource, DriverMode

SPEC_NAME = "gpu-harness.json"


@dataclass(frozen=True)
class CdiSetup:
    device: str  # what podman's --device names: KIND=all
    # the scenario's private spec folder (/var/run/cdi in podman's namespace), if any
    spec_dir: Optional[str]
    findings: List[cdicheck.Finding]


def system_device() -> Optional[str]:
    """The device to ask for from the host's own specs: the first spec's `all`, or its first
    device."""
    for path in cdi.system_specs():
        try:
            spec = cdicheck.load(path)
        except InputError:
            continue
        names = [device["name"] for device in spec["devices"]]
        if names:
            return f"{spec['kind']}={cdi.ALL if cdi.ALL in names else names[0]}"
    return None


def system_unavailable() -> Optional[str]:
    if system_device() is None:
        return (f"no CDI spec in {' or '.join(cdi.SPEC_DIRS)} (nvidia-ctk cdi generate writes one, "
                "or gpu-harness "
                "cdi generate --out /etc/cdi/gpu-harness.json)")
    return None


def link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows (Mesa's DRI drivers are one file linked many times),
    else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def moved_aside(spec: dict, driver: hostdriver.HostDriver, tree: Path) -> dict:
    """The spec pointed at a copy of the driver's own files in `tree` (as a driver's package puts
    them in place), the copy then removed: what an upgrade that replaced those files leaves a
    spec made before it naming."""
    own = set(driver.libraries) | set(driver.dri_dirs)
    for device in spec["devices"]:
        for mount in device["containerEdits"].get("mounts", []):
            if mount["hostPath"] in own:
                copy = tree / mount["hostPath"].lstrip("/")
                if not copy.exists():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    if os.path.isdir(mount["hostPath"]):
                        shutil.copytree(mount["hostPath"], copy, copy_function=link_or_copy)
                    else:
                        link_or_copy(mount["hostPath"], str(copy))
                mount["hostPath"] = str(copy)
    shutil.rmtree(tree)
    return spec


def judged(path: str, live: cdicheck.LiveDriver) -> List[cdicheck.Finding]:
    """A host's spec as cdi check judges it; one that is no spec at all is said, not raised."""
    try:
        return cdicheck.check(cdicheck.load(path), live)
    except InputError as exc:
        return [cdicheck.Finding(True, str(exc))]


def prepare(ctx: LaunchContext) -> CdiSetup:
    """The spec for this scenario, written (cdi/ in its folder) and judged (cdi-check.txt)."""
    source = ctx.scenario.spec.cdi
    out = ctx.workspace.result_dir
    live = cdicheck.live_driver(ctx.toolset)
    if source == CdiSource.SYSTEM:
        device = system_device() or f"{cdi.KIND}={cdi.ALL}"
        findings = [f for path in cdi.system_specs() for f in judged(path, live)]
        spec_dir = None
    else:
        spec_dir = str(out / "cdi")  # kept with the scenario: rerun.sh applies the same spec
        spec_file = Path(spec_dir) / SPEC_NAME
        generated = cdi.generate(live.driver, ctx.scenario.spec.host_driver or DriverMode.DEPS,
                                 spec_file,
                                 ctx.toolset.path("bwrap"))
        generated.write(spec_file)
        if source == CdiSource.STALE:
            tree = ctx.workspace.tmp_dir / "driver-before-upgrade"
            spec_file.write_text(json.dumps(moved_aside(generated.spec, live.driver, tree),
                                            indent=1) + "\n")
        findings = cdicheck.check(cdicheck.load(str(spec_file)), live)
        device = f"{cdi.KIND}={cdi.ALL}"
    (out / "cdi-check.txt").write_text("".join(f"{'stale: ' if f.stale else ''}{f.text}\n"
                                               for f in findings))
    return CdiSetup(device, spec_dir, findings)


def wrapped(setup: CdiSetup, state: str, argv: List[str], privatens: Path) -> List[str]:
    """podman's command line where the spec folder is private: /var/run/cdi in podman's own mount
    namespace."""
    if setup.spec_dir is None:
        return argv
    return [sys.executable, str(privatens), state, "--cdi", setup.spec_dir, "--", *argv]
