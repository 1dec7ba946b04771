"""The container family (podman-vtest, podman-dri and their --cap-drop=ALL variants): the
workload runs in a rootful podman container over the runtime's root (`--rootfs ROOT:O`, an
overlay: nothing is written into the runtime), as seed 003 runs GPU containers.

Everything podman keeps is private to the scenario: its storage (`--root`), run state
(`--runroot`), temp files and network config live in the scenario's temp folder, events go
nowhere, the container's cgroups hang under a per-scenario parent that is removed afterwards.
podman's conmon leaves the harness's process group, so stopping a container is podman's own
`rm --force` on that private state, and the reaper's deep clean of the state folder (kill what
still names it, unmount what is mounted under it) covers a harness that dies."""
import os
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

from .. import reaper, vtest
from ..lifecycle import LaunchContext, Workspace
from ..model import DEBOOTSTRAP_KIND, Scenario
from ..probes import INSIDE
from ..services import ServiceSpec
from ..toolset import Toolset
from .base import Family, Plan, ProcessLaunch, probe_spec, workload_env
from .sandbox import services_for

if TYPE_CHECKING:
    from ..paths import PathSpec

# podman's default open-file limit (1048576) is above a caller's usual hard limit, and any
# --ulimit replaces the whole default list: both limits, explicitly (measured).
ULIMITS = ("nofile=1024:4096", "nproc=4096:4096")
UNSAFE_IN_VOLUME = (":", ",")  # -v and --rootfs split on these: such a path could add an option
STATE_PARENT, STATE_PREFIX = "/tmp", "gh-podman-"  # podman's per-scenario state (a runroot must be short)


class ContainerError(Exception):
    """A value that cannot be passed to podman safely; the message says which."""


def volume(source: str, target: str, *options: str) -> str:
    for path in (source, target):
        if any(char in path for char in UNSAFE_IN_VOLUME):
            raise ContainerError(f"cannot bind {path!r} into a container: podman splits volumes on ':' and ','")
    return ":".join((source, target, *options))


def overlay_root(root: str) -> str:
    """--rootfs ROOT:O: an overlay on the runtime's tree (without :O podman writes into it)."""
    if any(char in root for char in UNSAFE_IN_VOLUME):
        raise ContainerError(f"cannot use {root!r} as a container root: podman splits it on ':' and ','")
    return f"{root}:O"


def render_device(node: str) -> str:
    """--device HOST:CONTAINER for a render node: at its own name under /dev/dri inside (a
    stand-in node from elsewhere, as tests use, appears as renderD128)."""
    name = os.path.basename(node)
    inside = f"/dev/dri/{name}" if name.startswith("renderD") else "/dev/dri/renderD128"
    return volume(node, inside)


def card_for(render_node: str) -> Optional[str]:
    """The KMS node of the GPU a render node belongs to (both under its sysfs device)."""
    device = f"/sys/class/drm/{os.path.basename(render_node)}/device/drm"
    try:
        cards = sorted(name for name in os.listdir(device) if name.startswith("card"))
    except OSError:
        return None
    return f"/dev/dri/{cards[0]}" if cards else None


def dri_devices(scope: str, render_node: str) -> List[str]:
    """seed 003's three ways to give a container the GPU: the render node only (rendering, the
    least), the card node too (KMS, a display), or the whole /dev/dri."""
    if scope == "all":
        return ["/dev/dri"]
    devices = [render_device(render_node)]
    if scope == "kms":
        card = card_for(render_node)
        devices += [volume(card, card)] if card else []
    return devices


def podman_state(podman: str, state: str) -> List[str]:
    """podman with every piece of its state in `state` (the scenario's own short folder, Names)."""
    return [podman, "--root", f"{state}/root", "--runroot", f"{state}/runroot", "--tmpdir", f"{state}/tmp",
            "--network-config-dir", f"{state}/net", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none"]


def container_env(scenario: Scenario) -> Dict[str, str]:
    return workload_env(scenario, "/tmp", vtest.SOCKET_INSIDE if vtest.SERVICE in scenario.spec.services else None)


@dataclass(frozen=True)
class Names:
    """What one scenario's container is called, where its podman state lives, and its cgroup
    parent: from the scenario's temp folder, unique per run and scenario."""

    state: str
    container: str
    cgroup: str

    @classmethod
    def of(cls, workspace: Workspace) -> "Names":
        tmp = workspace.tmp_dir
        unique = f"gpu-harness-{tmp.parent.name}-{tmp.name}"
        # podman refuses a runroot longer than 50 characters (measured), wherever TMPDIR points.
        return cls(f"{STATE_PARENT}/{STATE_PREFIX}{tmp.parent.name}-{tmp.name}", unique, unique)


class ContainerLaunch(ProcessLaunch):
    def prepare(self) -> List[ServiceSpec]:
        names = Names.of(self.ctx.workspace)
        guardian = reaper.get()
        guardian.track_tree(names.state)  # before it exists: a harness killed now leaves nothing
        guardian.track_cgroup(names.cgroup)
        for part in ("root", "runroot", "tmp", "net"):
            os.makedirs(f"{names.state}/{part}", exist_ok=True)
        self.result.facts.update(podman_state=names.state, cgroup=names.cgroup, container=names.container)
        return super().prepare()

    def stop_workload(self) -> None:
        names = Names.of(self.ctx.workspace)
        if os.path.isdir(names.state):
            try:  # conmon is not in our process group: podman itself stops the container
                subprocess.run(podman_state(self.ctx.toolset.path("podman"), names.state)
                               + ["rm", "--force", "--time", "0", names.container],
                               capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                pass
        super().stop_workload()
        reaper.deep_clean(names.state)
        reaper.remove_cgroup(names.cgroup)
        guardian = reaper.get()
        guardian.untrack_tree(names.state)
        guardian.untrack_cgroup(names.cgroup)


class ContainerFamily(Family):
    name = "container"
    launch_class = ContainerLaunch
    runtime_kinds = (DEBOOTSTRAP_KIND, "rootfs")  # a root to lay the container's overlay on
    nix_systems = ()  # rootful podman does not run in a Nix build sandbox

    def available(self, spec: "PathSpec", toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        if reason is None and os.geteuid() != 0:
            reason = "the container paths run rootful podman: run as root"
        return reason

    def own_dirs(self, workspace: Workspace) -> List[str]:
        return [Names.of(workspace).state]  # podman's /etc/hosts, /etc/hostname, .containerenv

    def plan(self, ctx: LaunchContext) -> Plan:
        scenario, toolset, workspace, workload = ctx.scenario, ctx.toolset, ctx.workspace, ctx.workload
        names = Names.of(workspace)
        services = services_for(ctx)
        argv = podman_state(toolset.path("podman"), names.state) + [
            "run", "--rm", "--name", names.container, "--network", "none", "--cgroup-parent", f"/{names.cgroup}",
            "--pull", "never"]
        for limit in ULIMITS:
            argv += ["--ulimit", limit]
        if scenario.spec.cap_drop_all:
            argv += ["--cap-drop", "ALL"]
        if scenario.spec.needs_render_node:
            for device in dri_devices(scenario.spec.dri_devices, toolset.render_nodes[0]):
                argv += ["--device", device]
        for service in services:
            if service.name == vtest.SERVICE and service.ready_socket:
                argv += ["--volume", volume(service.ready_socket, vtest.SOCKET_INSIDE)]
        if workload.command is not None:
            command = list(workload.command)
        else:
            spec = probe_spec(ctx)
            for path in spec.files:
                argv += ["--volume", volume(str(path), f"{INSIDE}/{path.name}", "ro")]
            argv += ["--volume", volume(str(workspace.probe_out), f"{INSIDE}/out")]
            command = spec.container_argv("/usr/bin/python3", workspace.host_only_paths(), workload.probe_args)
        env = container_env(scenario)
        for key, value in sorted(env.items()):
            argv += ["--env", f"{key}={value}"]
        argv += ["--rootfs", overlay_root(scenario.runtime.root), *command]
        return Plan(argv=argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, env_mode="inherit",
                    services=services, dirs=[str(workspace.tmp_dir)])


FAMILY = ContainerFamily()
