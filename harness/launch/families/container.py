"""The container family (podman-vtest, podman-dri and their --cap-drop=ALL variants): the
workload runs in a rootful podman container over the runtime's root (`--rootfs ROOT:O`, an
overlay: nothing is written into the runtime), as GPU containers are run.

Everything podman keeps is private to the scenario: its storage (`--root`), run state
(`--runroot`), temp files and network config live in the scenario's temp folder, events go
nowhere, the container's cgroups hang under a per-scenario parent that is removed afterwards.
podman's conmon leaves the harness's process group, so stopping a container is podman's own
`rm --force` on that private state; then what is left in the container's cgroup (conmon, runc,
the container's processes: podman puts them all under the per-scenario parent) and whatever
carries the launch's mark is killed, and what is mounted under the state folder unmounted. The
reaper does the same for a harness that dies.

An image runtime (an archive file: docker-archive or OCI archive, plain or gzip) is loaded into
that private store first, each scenario anew: `gzip -dc ARCHIVE | podman load` (podman 4.3
cannot read a compressed docker-archive), podman in a mount namespace of its own where /var/lib
and /var/tmp are folders of the state (privatens.py: podman load writes its blob-info cache and
its copies of the archive there, whatever --root says). The container then runs the image, with
the image's own python and environment, everything else as over a tree."""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Union

from ...system import privatens
from ...host import emulation
from ...runtimes import imagearchive, recipes, builds
from ...system import process, reaper
from .. import presenting, vtest
from ...core.errors import InputError, one_line
from ...runtimes.imagearchive import ImageInfo
from ...system.interrupts import INTERRUPTS
from ..lifecycle import LaunchAborted, LaunchContext, Workspace
from ...scenario.model import (DEBOOTSTRAP_KIND, IMAGE_KIND, ROOTFS_KIND, Display, Runtime,
                               Scenario)
from ...scenario.pathspec import CdiSource, DriDevices, PathSpec
from ...scenario.outcomes import FailureKind
from ...scenario.probes import INSIDE
from ...system.services import ServiceSpec
from ...host.toolset import Toolset
from .base import EnvMode, Plan, ProcessFamily, ProcessLaunch, probe_spec, workload_env
from .exec_files import files_of
from . import container_cdi
from .sandbox import services_for

# podman's default open-file limit (1048576) is above a caller's usual hard limit, and any
# --ulimit replaces the whole default list: both limits, explicitly (measured).
ULIMITS = ("nofile=1024:4096", "nproc=4096:4096")
UNSAFE_IN_VOLUME = (":", ",")  # -v and --rootfs split on these: such a path could add an option
# podman's per-scenario state (a runroot must be short)
STATE_PARENT, STATE_PREFIX = "/tmp", "gh-podman-"
PRIVATENS = Path(privatens.__file__)  # run by path: a program of its own
LOAD_TIMEOUT_S = 600.0  # a 400 MB image loads in 6-9 s here
PYTHON = re.compile(r"^python3(\.\d+)?$")
HARNESS_DEFAULTS = ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR")  # what workload_env gives every path


class ContainerError(InputError):
    """A value that cannot be passed to podman safely; the message says which."""


def volume(source: str, target: str, *options: str) -> str:
    for path in (source, target):
        if any(char in path for char in UNSAFE_IN_VOLUME):
            raise ContainerError(f"cannot bind {path!r} into a container: podman splits volumes on "
                                 "':' and ','")
    # A relative source is a named volume to podman, never a folder.
    return ":".join((os.path.abspath(source), target, *options))


def overlay_root(root: str) -> str:
    """--rootfs ROOT:O: an overlay on the runtime's tree (without :O podman writes into it)."""
    if any(char in root for char in UNSAFE_IN_VOLUME):
        raise ContainerError(f"cannot use {root!r} as a container root: podman splits it on ':' "
                             "and ','")
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


def dri_devices(scope: DriDevices, render_node: str) -> List[str]:
    """The three ways to give a container the GPU: the render node only (rendering, the
    least), the card node too (KMS, a display), or the whole /dev/dri."""
    if scope == DriDevices.ALL:
        return ["/dev/dri"]
    devices = [render_device(render_node)]
    if scope == DriDevices.KMS:
        card = card_for(render_node)
        devices += [volume(card, card)] if card else []
    return devices


def podman_state(podman: str, state: str) -> List[str]:
    """podman with every piece of its state in `state` (the scenario's own short folder, Names)."""
    return [podman, "--root", f"{state}/root", "--runroot", f"{state}/runroot", "--tmpdir",
            f"{state}/tmp",
            "--network-config-dir", f"{state}/net", "--runtime", "runc", "--cgroup-manager",
            "cgroupfs",
            "--events-backend", "none"]


def container_env(scenario: Scenario, image: Optional[ImageInfo] = None) -> Dict[str, str]:
    """The workload's environment; in an image, the image's own Env stays where only the harness's
    defaults would replace it (its PATH, say): what the path or the matrix sets still wins."""
    env = workload_env(scenario, "/tmp", vtest.SOCKET_INSIDE
                       if vtest.SERVICE in scenario.spec.services else None)
    if image is None:
        return env
    chosen = set(dict(scenario.spec.env)) | set(dict(scenario.env))
    return {key: value for key, value in env.items()
            if not (key in HARNESS_DEFAULTS and key in image.env_names and key not in chosen)}


def image_python(image: ImageInfo) -> str:
    """The image's python: the first element of its Entrypoint, or else of its Cmd, where that
    is a python (Nix's images name one in the store); else python3 on the image's PATH."""
    for argv in (image.entrypoint, image.cmd):
        if argv and PYTHON.match(os.path.basename(argv[0])):
            return argv[0]
    return "python3"


def host_oci_architecture() -> str:
    host = emulation.host_architecture()
    return imagearchive.OCI_ARCHITECTURES.get(host, host)


def image_of(runtime: Runtime) -> Optional[ImageInfo]:
    return imagearchive.read(runtime.root) if runtime.kind == IMAGE_KIND else None


def container_root(runtime: Runtime, image: Optional[ImageInfo], command: List[str]) -> List[str]:
    """What the container runs in, then its command: the runtime's tree as an overlay, or the
    loaded image by id with the command's program as its entrypoint (the image's own
    Entrypoint would otherwise run first). The entrypoint is a JSON list: one program, whatever
    its name looks like."""
    if image is None:
        return ["--rootfs", overlay_root(runtime.root), *command]
    return ["--entrypoint", json.dumps(command[:1]), image.id, *command[1:]]


def load_argvs(podman: str, state: str, archive: str, compression: str) -> List[List[str]]:
    """The processes that load an archive into the scenario's store, in pipe order: a gzip
    archive is decompressed by gzip -dc (what zcat runs, without its shell wrapper) into
    `podman load` on stdin; a plain one is read by podman itself."""
    load = [sys.executable, str(PRIVATENS), state, "--", *podman_state(podman, state), "load"]
    if compression == "gzip":
        return [["gzip", "--decompress", "--stdout", "--", archive], load]
    return [load + [f"--input={archive}"]]


def pipeline(argvs: List[List[str]], log: IO[bytes], timeout_s: float) -> Optional[str]:
    """Run the processes, each one's stdout into the next one's stdin, each in its own process
    group known to the reaper; their stderr (and the last one's stdout) to `log`. None when the
    last one succeeds, else why not (the log says the rest)."""
    guardian, procs = reaper.get(), []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           reaper.MARK_VAR: reaper.mark_value(reaper.new_mark())}
    stdin: Union[int, IO[bytes]] = subprocess.DEVNULL
    try:
        for index, argv in enumerate(argvs):
            last = index == len(argvs) - 1
            proc = process.start_program(argv, stdin=stdin, stdout=log if last else subprocess.PIPE,
                                         stderr=log, env=env,
                                    start_new_session=True)
            guardian.track_group(proc.pid)
            procs.append(proc)
            if not isinstance(stdin, int):
                # the next process holds the pipe now: the writer sees it close if it dies
                stdin.close()
            stdin = proc.stdout if proc.stdout is not None else subprocess.DEVNULL
    except OSError as exc:
        why: Optional[str] = f"cannot start {argvs[len(procs)][0]}: {exc.strerror or exc}"
    else:
        why = wait_for(procs[-1], timeout_s)
    finally:
        for proc in procs:
            process.end_group(proc)
    failed = [(argv[0], proc.returncode) for argv, proc in zip(argvs, procs[:-1], strict=False)
              if proc.returncode]
    if why is None and failed:  # the reader took a short input for a whole one
        why = f"{failed[0][0]} exit code {failed[0][1]}"
    return why


def wait_for(proc: "subprocess.Popen[bytes]", timeout_s: float) -> Optional[str]:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return f"did not finish within {timeout_s:g} s"
        if INTERRUPTS.requested:
            return INTERRUPTS.reason() or "interrupted"
        time.sleep(0.05)
    return None if proc.returncode == 0 else f"exit code {proc.returncode}"


def said(log_path: str, image_format: str) -> str:
    """What gzip and podman said, in one line: podman's error with its reason for the archive's
    own format (it lists one per format it tried), or else the last lines."""
    try:
        with open(log_path, "rb") as handle:
            text = handle.read()[-8192:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("Error:")), None)
    reason = next((line for line in lines if line.startswith(f"* {image_format}:")), None)
    gzip_said = [line for line in lines if line.startswith("gzip:")]
    picked = [*gzip_said, f"{error} {reason}"] if error and reason else lines[-4:]
    return one_line(" | ".join(picked), 600)


def load_script(argvs: List[List[str]], scenario_id: str) -> str:
    """load-image.sh: the load a re-run needs before rerun.sh (the image lives in the scenario's
    store, and that goes when the scenario does)."""
    pipe = " | ".join(" ".join(shlex.quote(arg) for arg in argv) for argv in argvs)
    return (f"#!/bin/sh\n# Loads the image of scenario {scenario_id} into its podman state, as "
            "gpu-harness did;"
            f"\n# then run rerun.sh.\nset -e\n{pipe}\n")


def image_facts(archive: str, image: ImageInfo, python: str) -> Dict[str, object]:
    versions = recipes.component_versions(image.packages)
    return {"archive": archive, "id": image.id, "format": image.format,
            "compression": image.compression,
            "tags": list(image.tags), "python_command": python, "mesa": versions["mesa"],
            "libc": versions["libc"],
            "python": versions["python"]}


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
        self.result.facts.update(podman_state=names.state, cgroup=names.cgroup,
                                 container=names.container)
        if self.ctx.scenario.runtime.kind == IMAGE_KIND:
            self.load_image(names)
        return super().prepare()

    def image_archive(self) -> str:
        """The runtime's archive; one made from a runtime is made now if it is not cached yet."""
        runtime = self.ctx.scenario.runtime
        try:
            if runtime.recipe:
                return str(builds.image_archive(runtime.recipe,
                                                extra_packages=runtime.extra_packages))
            imagearchive.read(runtime.root)
            return runtime.root
        except builds.BuilderMissing as exc:  # as the runner says of a runtime it cannot build here
            self.result.skipped = f"runtime {runtime.name}: {exc}"
            raise LaunchAborted() from None
        except (imagearchive.ImageArchiveError, builds.RuntimeBuildError, InputError) as exc:
            self.result.fail(f"image {runtime.name}: {exc}", FailureKind.RUNTIME_BUILD)
            raise LaunchAborted() from None

    def load_image(self, names: Names) -> None:
        """The image into the scenario's own store: load time is the image's cost per scenario."""
        archive = self.image_archive()
        image = imagearchive.read(archive)
        out = self.ctx.workspace.result_dir
        argvs = load_argvs(self.ctx.toolset.path("podman"), names.state, archive, image.compression)
        (out / "load-image.sh").write_text(load_script(argvs, self.ctx.scenario.id))
        log = out / "podman-load.log"
        self.result.logs["podman-load"] = str(log)
        self.result.facts["image"] = image_facts(archive, image, image_python(image))
        started = time.monotonic()
        with open(log, "wb") as handle:
            why = pipeline(argvs, handle, LOAD_TIMEOUT_S)
        self.result.phases["image_build_s"] = time.monotonic() - started
        if why and INTERRUPTS.requested:
            self.result.fail(INTERRUPTS.reason() or why, FailureKind.INTERRUPTED)
            raise LaunchAborted()
        if why:
            self.result.fail(f"podman load of {archive}: {why}: {said(str(log), image.format)}",
                             FailureKind.RUNTIME_BUILD)
            raise LaunchAborted()

    def stop_workload(self) -> None:
        names = Names.of(self.ctx.workspace)
        if os.path.isdir(names.state):
            try:  # conmon is not in our process group: podman itself stops the container
                process.run_program(podman_state(self.ctx.toolset.path("podman"), names.state)
                               + ["rm", "--force", "--time", "0", names.container],
                               capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                pass
        super().stop_workload()
        # conmon, runc and the container's processes are in the cgroup made for it: killed with
        # it, before what they held mounted under the state folder goes.
        reaper.remove_cgroup(names.cgroup)
        reaper.deep_clean(names.state)
        reaper.remove_cgroup(names.cgroup)
        guardian = reaper.get()
        guardian.untrack_tree(names.state)
        guardian.untrack_cgroup(names.cgroup)


class ContainerFamily(ProcessFamily):
    name = "container"
    displays = (Display.WAYLAND, Display.X11, Display.XWAYLAND)
    launch_class = ContainerLaunch
    # a root to lay the container's overlay on, or an image
    runtime_kinds = (DEBOOTSTRAP_KIND, ROOTFS_KIND, IMAGE_KIND)
    nix_systems = ()  # rootful podman does not run in a Nix build sandbox

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        if reason is None and os.geteuid() != 0:
            reason = "the container paths run rootful podman: run as root"
        if reason is None and spec.cdi == CdiSource.SYSTEM:
            reason = container_cdi.system_unavailable()
        return reason

    def own_dirs(self, workspace: Workspace) -> List[str]:
        return [Names.of(workspace).state]  # podman's /etc/hosts, /etc/hostname, .containerenv

    def plan(self, ctx: LaunchContext) -> Plan:
        scenario, toolset, workspace, workload = (ctx.scenario, ctx.toolset, ctx.workspace,
                                                  ctx.workload)
        names = Names.of(workspace)
        services = services_for(ctx)
        argv = podman_state(toolset.path("podman"), names.state) + [
            "run", "--rm", "--name", names.container, "--network", "none", "--cgroup-parent",
                                                                    f"/{names.cgroup}",
            "--pull", "never"]
        for limit in ULIMITS:
            argv += ["--ulimit", limit]
        if ctx.inherit_stdio:
            # exec: the command reads the harness's stdin (podman closes it else)
            argv.append("--interactive")
        if scenario.spec.cap_drop_all:
            argv += ["--cap-drop", "ALL"]
        if scenario.spec.needs_render_node:
            for device in dri_devices(scenario.spec.dri_devices, toolset.render_nodes[0]):
                argv += ["--device", device]
        cdi = container_cdi.prepare(ctx) if scenario.spec.cdi else None
        facts: Dict[str, object] = {}
        if cdi:
            argv += ["--device", cdi.device]
            facts = {"cdi_device": cdi.device, "cdi_stale": [f.text for f in cdi.findings
                                                             if f.stale]}
        for service in services:
            if service.name == vtest.SERVICE and service.ready_socket:
                argv += ["--volume", volume(service.ready_socket, vtest.SOCKET_INSIDE)]
        image = image_of(scenario.runtime)
        if image and image.architecture and image.architecture != host_oci_architecture():
            # An arm64 image on this host: said, so podman takes it for the platform it is (and
            # binfmt_misc's qemu-user runs it), rather than warning that it does not match.
            argv += ["--arch", image.architecture]
        if workload.command is not None:
            command = list(workload.command)
            for placed in files_of(ctx):  # exec --file
                argv += ["--volume", volume(placed.host, placed.inside, "ro")]
        else:
            spec = probe_spec(ctx)
            for path in spec.files:
                argv += ["--volume", volume(str(path), f"{INSIDE}/{path.name}", "ro")]
            argv += ["--volume", volume(str(workspace.probe_out), f"{INSIDE}/out")]
            python = image_python(image) if image else "/usr/bin/python3"
            command = spec.container_argv(python, workspace.host_only_paths(), workload.probe_args)
        env = container_env(scenario, image)
        if ctx.display is not None:  # its socket bound under the container's runtime folder
            reach = ctx.display.reach(env.get("XDG_RUNTIME_DIR", "/tmp"))
            for host_path, inside in reach.binds:
                argv += ["--volume", volume(host_path, inside)]
            env.update(presenting.client_env(ctx.display, env.get("XDG_RUNTIME_DIR", "/tmp")))
        for key, value in sorted(env.items()):
            argv += ["--env", f"{key}={value}"]
        mark = reaper.new_mark()  # the container's processes carry podman's mark too
        argv += ["--env", f"{reaper.MARK_VAR}={reaper.mark_value(mark)}"]
        argv += container_root(scenario.runtime, image, command)
        argv = container_cdi.wrapped(cdi, names.state, argv, PRIVATENS) if cdi else argv
        return Plan(argv=argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    env_mode=EnvMode.INHERIT,
                    services=services, dirs=[str(workspace.tmp_dir), names.state], facts=facts,
                    mark=mark)


FAMILY = ContainerFamily()
