"""The Flatpak family (flatpak-vtest, flatpak-dri, flatpak-ext*): the real `flatpak run`.

Each scenario gets a private installation (FLATPAK_USER_DIR), a private HOME and XDG_RUNTIME_DIR
and no session bus, and an app whose files are the probe. Three modes, and the report says which
ran: `export` (the harness runtime's /usr exported as a real Flatpak runtime with `build-export
--runtime`, once per runtime into a cached repo, 15 s for trixie; installed per scenario, 2 s),
`usr-path` (a stub runtime, with `flatpak run --usr-path=<runtime>/usr` putting the harness
runtime's /usr under the app without any export: 0.3 s), and `gl-extension` (the runtime
exported without its Mesa, with a GL extension point, and a GL extension made from a runtime's
Mesa installed beside it: harness/runtimes/glext.py; both cached, installed per scenario). flatpak
mounts
runtime extensions only under the runtime's own /usr (with --usr-path they go to
/run/parent/usr), so the extension mode exports.

flatpak-vtest is the documented vtest command: `--nodevice=dri`, the server's socket exposed with
`--filesystem` and named in VTEST_SOCKET_NAME. Mesa 22.3 ignores that variable and connects to
/tmp/.virgl_test, which inside Flatpak is the app's own persistent tmp folder: the app's
command links /tmp/.virgl_test to the socket it was given before it starts, from inside, so
nothing depends on where Flatpak keeps that folder on the host."""
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ...runtimes import cache, glext, prepjournal, builds
from ...system import reaper
from .. import presenting, vtest
from ...workloads import registry as workloads
from ..lifecycle import LaunchAborted, LaunchContext
from ...scenario.model import GUEST_KERNEL_PARTS, HOST_KIND, Display, Runtime, Scenario
from ...scenario.pathspec import FlatpakMode, PathSpec
from ...host.toolset import Toolset
from ...system.services import ServiceSpec
from .base import EnvMode, Plan, ProcessFamily, ProcessLaunch, icd_env, probe_spec
from . import exec_files, flatpak_fallback
from .flatpak_install import (APP_ID, BRANCH, HOST_ARCH, filesystem, flatpak_arch, flatpak_step,
                              install_app, install_bundle, bundled_app, private_env,
                              runtime_metadata)
from .sandbox import services_for
from ...core.errors import ToolMissing
from ...system import process

FLATPAK_CACHE = cache.ROOT / "flatpak"
APP_INSIDE = "/app"
# in the probe's output folder: the probe's files, where a bundle's app (whose /app is its own) runs
# them
CODE = "code"
# The app's command: link Mesa's fixed vtest socket name to the one it was given, then run.
LINK_AND_RUN = ('if [ -n "$VTEST_SOCKET_NAME" ]; then ln -sfn "$VTEST_SOCKET_NAME" '
                '/tmp/.virgl_test; fi; exec "$@"')


def runtime_label(runtime: Runtime) -> str:
    """What names a runtime's Flatpak ids: its recipe (runtimes declared twice under other names
    in a matrix share one export), else its name."""
    return runtime.recipe or runtime.name


def flatpak_id(prefix: str, name: str) -> str:
    """A Flatpak id from a runtime's name: ids are letters, digits and '_' ('-' in the last
    part)."""
    part = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return f"{prefix}.{'_' if part[:1].isdigit() else ''}{part}"


@dataclass(frozen=True)
class Exported:
    """A Flatpak runtime in a cached repo: its id, and what building it recorded."""

    repo: str
    ref_id: str
    facts: Dict[str, object]


def cached_export(flatpak: str, key: str, ref_id: str, fill: Callable[[str], Dict[str, object]],
                  source_root: str, layout: Optional[str] = None,
                  arch: str = HOST_ARCH) -> Exported:
    """A repo in FLATPAK_CACHE holding one runtime exported from `build/files` and `build/metadata`,
    which `fill(build)` writes (returning facts to keep); built once per key and id, under a lock
    while one run builds it, a half-written repo never taken for a built one. What it was built
    from (the runtime's root, the GL split's layout) is written beside it for `gpu-harness
    cache`."""
    cache_dir = FLATPAK_CACHE / hashlib.sha256(f"{key}\0{ref_id}".encode()).hexdigest()[:24]
    cache_dir.mkdir(parents=True, exist_ok=True)
    repo = cache_dir / "repo"
    with open(cache_dir / "lock", "a+") as lock:
        waiting = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        # another process exported it
        if (repo / "done").exists() and time.monotonic() - waiting > 1.0:
            prepjournal.note("flatpak export", ref_id, time.monotonic() - waiting, "waited")
        source = cache_dir / cache.SOURCE_FILE
        if not source.exists():
            source.write_text(json.dumps({"root": source_root, "layout": layout}) + "\n")
        if not (repo / "done").exists():
            shutil.rmtree(repo, ignore_errors=True)
            started = time.monotonic()
            try:
                with reaper.temp_dir("build-", str(cache_dir)) as build:
                    facts = fill(build)
                    flatpak_step(flatpak, private_env(build), "build-export", f"--arch={arch}",
                                 "--runtime",
                                 "--files=files", str(repo), build, BRANCH)
            except BaseException:
                shutil.rmtree(repo, ignore_errors=True)
                raise
            prepjournal.note("flatpak export", ref_id, time.monotonic() - started)
            facts = {**facts, "id": ref_id, "build_s": round(time.monotonic() - started, 2),
                     "repo_mb": round(cache.size_of(repo) / 2**20, 1)}
            (repo / "done").write_text(json.dumps(facts, sort_keys=True) + "\n")
            cache.record_made(cache_dir)
        cache.mark_used(cache_dir)
    return Exported(str(repo), ref_id, recorded(repo / "done"))


def recorded(done: Path) -> Dict[str, object]:
    """What building a cached repo recorded (a repo from before facts were kept has none)."""
    try:
        facts = json.loads(done.read_text())
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def hard_linked_usr(root: str, build: str) -> None:
    # build-export reads a real folder, and hard links cost no space. A runtime's own kernel's
    # modules are its guest's: not an app's.
    process.run_program(["cp", "-al", os.path.join(root, "usr"), f"{build}/files"], check=True,
                        capture_output=True,
                   timeout=600)
    for part in GUEST_KERNEL_PARTS:
        if part.startswith("usr/"):
            shutil.rmtree(os.path.join(build, "files", part[len("usr/"):]), ignore_errors=True)


def exported_runtime(flatpak: str, runtime: Runtime) -> Tuple[str, str]:
    """(repo, runtime id): the runtime's /usr as a Flatpak runtime, exported once into a repo in
    FLATPAK_CACHE keyed by the runtime's root (itself keyed by content)."""
    runtime_id = flatpak_id("org.gpuharness.Runtime", runtime_label(runtime))

    arch = flatpak_arch(runtime.root)

    def fill(build: str) -> Dict[str, object]:
        hard_linked_usr(runtime.root, build)
        runtime_metadata(build, runtime_id, arch=arch)
        return {"arch": arch}

    root = os.path.realpath(runtime.root)
    exported = cached_export(flatpak, root, runtime_id, fill, root, arch=arch)
    return exported.repo, exported.ref_id


FLATPAK_MULTIARCH = "x86_64-linux-gnu"  # the runtimes and extensions here are exported for x86_64


def split_of(runtime: Runtime) -> glext.Split:
    arch = glext.multiarch(runtime.root)
    if arch != FLATPAK_MULTIARCH:
        raise ExtensionUnavailable(f"runtime {runtime.name} is {arch or 'not Debian multiarch'}: "
                                   "GL extensions are made "
                                   f"for {FLATPAK_MULTIARCH} runtimes here (a 32-bit driver is "
                                   "Flatpak's GL32 point)")
    try:
        return glext.split(runtime.root)
    except glext.ExtensionError as exc:
        raise ExtensionUnavailable(f"runtime {runtime.name}: {exc}") from None


class ExtensionUnavailable(ToolMissing):
    """This runtime cannot be split into a platform and a GL extension (no Mesa, not Debian's
    layout)."""


def platform_runtime(flatpak: str, runtime: Runtime) -> Exported:
    """The runtime with no Mesa of its own, exported with a GL extension point in its metadata."""
    runtime_id = flatpak_id("org.gpuharness.NoMesa", runtime_label(runtime))

    def fill(build: str) -> Dict[str, object]:
        parts = split_of(runtime)
        hard_linked_usr(runtime.root, build)
        removed = glext.strip(parts, f"{build}/files")
        with open(f"{build}/metadata", "w") as metadata:
            metadata.write(glext.platform_metadata(runtime_id, parts.multiarch, BRANCH))
        return {"multiarch": parts.multiarch, "removed": len(removed)}

    root = os.path.realpath(runtime.root)
    key = "\0".join(("platform", glext.layout_digest(), root))
    return cached_export(flatpak, key, runtime_id, fill, root, glext.layout_digest())


def extension_name(source: Runtime) -> str:
    """The extension's last id part: its folder under GL/ and the name FLATPAK_GL_DRIVERS
    activates."""
    return flatpak_id(glext.EXTENSION_POINT, runtime_label(source)).rsplit(".", 1)[1]


def gl_extension(flatpak: str, source: Runtime) -> Exported:
    """A GL extension (`<EXTENSION_POINT>.<source>`) made from the source runtime's Mesa."""
    name = extension_name(source)
    extension_id = f"{glext.EXTENSION_POINT}.{name}"

    def fill(build: str) -> Dict[str, object]:
        parts = split_of(source)
        size = glext.write_extension(parts, name, f"{build}/files")
        with open(f"{build}/metadata", "w") as metadata:
            metadata.write(glext.extension_metadata(extension_id))
        return {"built_from": runtime_label(source), "mount": glext.mount_point(parts.multiarch,
                                                                                name),
                "libraries": sorted(parts.libraries), "dri_drivers": len(parts.dri),
                "loader_files": sorted(f"{f.folder}/{f.name}" for f in parts.loader_files),
                "files_mb": round(size / 2**20, 1), "missing": parts.missing}

    root = os.path.realpath(source.root)
    key = "\0".join(("gl-extension", glext.layout_digest(), root))
    return cached_export(flatpak, key, extension_id, fill, root, glext.layout_digest())


def extension_source(scenario: Scenario) -> Runtime:
    """The runtime the scenario's GL extension is made from (matrix: gl_extension; else its own),
    built if it is not yet."""
    source = scenario.gl_extension or scenario.runtime
    if source.name == scenario.runtime.name:
        return scenario.runtime
    if source.needs_build and not source.root:
        return Runtime(source.name, source.kind, str(builds.ensure(source.recipe).root),
                       source.description,
                       source.recipe)
    return source


def app_env(scenario: Scenario, socket: Optional[str]) -> Dict[str, str]:
    env = dict(scenario.spec.env)
    env.update(icd_env(scenario.spec, scenario.runtime))
    if socket:
        env["VTEST_SOCKET_NAME"] = socket
    env.update(dict(scenario.env))
    return env


def inside_command(ctx: LaunchContext, bundled: bool) -> List[str]:
    """What runs inside the app: the exec command (its staged files linked first) or the probe,
    whose files are the app's (a bundle's app has its own: the probe's are in its output folder)."""
    workspace, workload = ctx.workspace, ctx.workload
    if workload.command is not None:
        return exec_files.linked_first(exec_files.staged(ctx), workload.command)
    spec = probe_spec(ctx)
    code = f"{workspace.probe_out}/{CODE}" if bundled else APP_INSIDE
    return spec.argv(["/usr/bin/python3"], f"{code}/{spec.file.name}", str(workspace.probe_out),
                     [str(workspace.sentinel)], workload.probe_args)


def own_app_id(ctx: LaunchContext) -> str:
    """The id the app is exported and run under in the app mode: the workload's (app_id), else
    the harness's probe app's."""
    declared = ctx.scenario.declared
    return str(declared.settings.get("app_id") or APP_ID) if declared else APP_ID


class FlatpakLaunch(ProcessLaunch):
    def prepare(self) -> List[ServiceSpec]:
        workspace, scenario = self.ctx.workspace, self.ctx.scenario
        folder = str(workspace.tmp_dir / "flatpak")
        files = ([str(path) for path in probe_spec(self.ctx).files]
                 if self.ctx.workload.command is None else [])
        mode = scenario.spec.flatpak_mode
        flatpak = self.ctx.toolset.path("flatpak")
        t0 = time.monotonic()
        runtime: Optional[Tuple[str, str]] = None
        extensions: Tuple[Tuple[str, str], ...] = ()
        if mode in (FlatpakMode.EXPORT, FlatpakMode.APP):
            runtime = exported_runtime(flatpak, scenario.runtime)
        elif mode is FlatpakMode.GL_EXTENSION:
            try:
                platform, extension = platform_runtime(flatpak, scenario.runtime), self.extension()
            except ExtensionUnavailable as exc:
                self.result.skipped = str(exc)
                raise LaunchAborted() from None
            runtime, extensions = (platform.repo, platform.ref_id), ((extension.repo,
                                                                      extension.ref_id),)
            self.result.facts["gl_extension"] = {**extension.facts, "platform": platform.facts}
        t1 = time.monotonic()
        shipped = workloads.shipped_in(scenario.declared) if scenario.declared else None
        if shipped and shipped[0] == "bundle":
            (self.result.facts["bundle"],
             self.result.facts["bundle_runtime"]) = install_bundle(flatpak, folder, shipped[1])
            (workspace.probe_out / CODE).mkdir(exist_ok=True)
            for path in files:
                shutil.copy2(path, workspace.probe_out / CODE)
        elif mode is FlatpakMode.APP:
            app_id = own_app_id(self.ctx)
            install_app(flatpak, folder, files, runtime, arch=flatpak_arch(scenario.runtime.root),
                        app_id=app_id, command=inside_command(self.ctx, False))
            self.result.facts["app_id"] = app_id
        else:
            install_app(flatpak, folder, files, runtime, extensions,
                        arch=flatpak_arch(scenario.runtime.root))
        self.result.phases["image_build_s"] = time.monotonic() - t0
        self.result.facts["flatpak_mode"] = mode.value
        self.result.facts["flatpak_arch"] = flatpak_arch(scenario.runtime.root)
        self.result.facts["flatpak_install_s"] = round(time.monotonic() - t1, 2)
        return super().prepare()

    def extension(self) -> Exported:
        try:
            source = extension_source(self.ctx.scenario)
        except builds.RuntimeBuildError as exc:
            raise ExtensionUnavailable(f"the GL extension's runtime could not be built: "
                                       f"{exc}") from None
        self.result.facts["gl_extension_source"] = source.name
        # the Mesa that renders: driver matching reads it there
        self.result.facts["driver_root"] = source.root
        return gl_extension(self.ctx.toolset.path("flatpak"), source)


class FlatpakFamily(ProcessFamily):
    name = "flatpak"
    displays = (Display.WAYLAND, Display.X11)
    launch_class = FlatpakLaunch
    nix_systems = ()  # flatpak's system helper and bwrap setup do not run in a Nix build sandbox

    def refuses_shipped(self, ctx: LaunchContext, kind: str) -> Optional[str]:
        if kind == "bundle" and ctx.scenario.spec.flatpak_mode is FlatpakMode.USR_PATH:
            return None
        return super().refuses_shipped(ctx, kind)

    def available(self, spec: PathSpec, toolset: Toolset) -> Optional[str]:
        reason = super().available(spec, toolset)
        return vtest.venus_missing(toolset) if reason is None and spec.venus else reason

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        if (ctx.scenario.spec.flatpak_mode is not FlatpakMode.USR_PATH
                and ctx.scenario.runtime.kind == HOST_KIND):
            return ("the host's own /usr is not exported as a Flatpak runtime (all of it, other "
                    "filesystems too): the usr-path mode (flatpak-vtest, flatpak-dri) runs over it")
        root = ctx.scenario.runtime.root
        if not os.path.islink(os.path.join(root, "lib")):
            return (f"runtime {ctx.scenario.runtime.name} keeps /bin and /lib outside /usr (not "
                    "merged-/usr): "
                    "a Flatpak runtime is only a /usr (--usr-path or exported), so its libc and "
                    "shell are not there")
        return super().unavailable_in(ctx)

    def plan(self, ctx: LaunchContext) -> Plan:
        scenario, toolset, workspace, workload = (ctx.scenario, ctx.toolset, ctx.workspace,
                                                  ctx.workload)
        folder = str(workspace.tmp_dir / "flatpak")
        services = services_for(ctx)
        socket = next((s.ready_socket for s in services if s.name == vtest.SERVICE
                       and s.ready_socket), None)
        argv = [toolset.path("flatpak"), "run", "--user", "--die-with-parent", "--no-session-bus",
                "--no-a11y-bus",
                "--no-documents-portal", "--device=dri" if scenario.spec.needs_render_node
                else "--nodevice=dri"]
        arch = flatpak_arch(scenario.runtime.root)
        if arch != HOST_ARCH:
            # an emulated runtime's own arch: qemu-user runs it (binfmt_misc)
            argv.append(f"--arch={arch}")
        elif glext.multiarch(scenario.runtime.root) not in (None, FLATPAK_MULTIARCH):
            # A 32-bit runtime: Flatpak's seccomp filter kills 32-bit syscalls (SIGSYS, measured)
            # unless the app may run multiarch binaries, as a 32-bit app's own metadata says.
            argv.append("--allow=multiarch")
        app_id = bundled_app(folder)
        if scenario.spec.flatpak_mode is FlatpakMode.USR_PATH:
            argv.append(f"--usr-path={scenario.runtime.root.rstrip('/')}/usr")
            argv += [] if app_id else [f"--app-path={folder}/build/app/files"]
        if socket:
            argv.append(filesystem(socket))
        if workload.command is not None and exec_files.files_of(ctx):
            # exec --file: copies beside the app, read-only, linked into place from inside (flatpak
            # shows a host path at that path only)
            argv.append(filesystem(str(workspace.probe_out / exec_files.STAGED), "ro"))
        elif workload.command is None:
            argv.append(filesystem(str(workspace.probe_out)))
        app_variables = app_env(scenario, socket)
        if ctx.display is not None:  # flatpak binds the server's socket itself, as for any app
            argv.append(f"--socket={ctx.display.display}")
            app_variables.update(presenting.TRACE_ENV if ctx.display.display == "wayland" else {})
        for key, value in sorted(app_variables.items()):
            argv.append(f"--env={key}={value}")
        if scenario.spec.flatpak_mode is FlatpakMode.APP:  # the app's own command runs it
            argv.append(own_app_id(ctx))
        else:
            argv += ["--command=/bin/sh", app_id or APP_ID, "-c", LINK_AND_RUN, "sh",
                     *inside_command(ctx, bool(app_id))]
        env = private_env(folder)
        if ctx.display is not None:  # where flatpak finds the server (its socket's absolute path)
            env.update({key: value for key, value in ctx.display.env.items()
                        if key != "XDG_RUNTIME_DIR"})
            if ctx.display.display == "wayland":
                env["WAYLAND_DISPLAY"] = str(ctx.display.socket)
        if scenario.spec.flatpak_mode is FlatpakMode.GL_EXTENSION:
            # The extension point is enable-if=active-gl-driver: flatpak mounts the extension this
            # names.
            env["FLATPAK_GL_DRIVERS"] = extension_name(scenario.gl_extension or scenario.runtime)
        plan = Plan(argv=argv, env=env, env_mode=EnvMode.INHERIT, services=services,
                    dirs=[str(workspace.tmp_dir)])
        server = next((s for s in services if s.name == vtest.SERVICE), None)
        if scenario.spec.flatpak_mode is FlatpakMode.APP and server is not None and socket:
            plan.facts["fallback_command"] = flatpak_fallback.facts(
                argv, server.argv, socket, own_app_id(ctx),
                toolset.render_nodes[0] if toolset.render_nodes else None)
        return plan


FAMILY = FlatpakFamily()
