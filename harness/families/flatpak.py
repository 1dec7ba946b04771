"""The Flatpak family (flatpak-vtest, flatpak-dri): the real `flatpak run`, as seed 000 runs it.

Each scenario gets a private installation (FLATPAK_USER_DIR), a private HOME and XDG_RUNTIME_DIR
and no session bus, and an app whose files are the probe. Two modes, and the report says which
ran: `export` (the harness runtime's /usr exported as a real Flatpak runtime with `build-export
--runtime`, once per runtime into a cached repo, 15 s for trixie; installed per scenario, 2 s)
and `usr-path` (a stub runtime, with `flatpak run --usr-path=<runtime>/usr` putting the harness
runtime's /usr under the app without any export: 0.3 s).

flatpak-vtest is seed 000's command: `--nodevice=dri`, the server's socket exposed with
`--filesystem` and named in VTEST_SOCKET_NAME. Mesa 22.3 ignores that variable and connects to
/tmp/.virgl_test, which inside Flatpak is the app's own persistent tmp folder: the app's
command links /tmp/.virgl_test to the socket it was given before it starts, from inside, so
nothing depends on where Flatpak keeps that folder on the host."""
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import reaper, vtest
from ..lifecycle import LaunchContext
from ..model import HOST_KIND, Runtime, Scenario
from ..services import ServiceSpec
from .base import Family, Plan, ProcessLaunch, icd_env, probe_spec
from .sandbox import services_for

APP_ID = "org.gpuharness.Probe"
RUNTIME_ID = "org.gpuharness.Stub"
BRANCH = "1"
USR_PATH = "usr-path"  # flatpak run --usr-path over a stub runtime (no export of the harness runtime)
EXPORT = "export"  # the harness runtime exported as a Flatpak runtime (cached per runtime) and installed
FLATPAK_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpu-harness" / "flatpak"
APP_INSIDE = "/app"
UNSAFE_IN_FILESYSTEM = (":",)  # --filesystem=PATH:ro splits on ':'
# The app's command: link Mesa's fixed vtest socket name to the one it was given, then run.
LINK_AND_RUN = 'if [ -n "$VTEST_SOCKET_NAME" ]; then ln -sfn "$VTEST_SOCKET_NAME" /tmp/.virgl_test; fi; exec "$@"'


class FlatpakError(Exception):
    """Setting up the private installation failed; the message has flatpak's own words."""


def filesystem(path: str, *options: str) -> str:
    if any(char in path for char in UNSAFE_IN_FILESYSTEM):
        raise FlatpakError(f"cannot expose {path!r} to a Flatpak app: --filesystem splits on ':'")
    return "--filesystem=" + ":".join((path, *options))


def private_env(folder: str) -> Dict[str, str]:
    """flatpak's environment: its installation, HOME and runtime folder all in `folder`."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": f"{folder}/home",
            "FLATPAK_USER_DIR": f"{folder}/installation", "XDG_RUNTIME_DIR": f"{folder}/xdg",
            "XDG_DATA_HOME": f"{folder}/home/.local/share", "LANG": "C.UTF-8"}


def flatpak_step(flatpak: str, env: Dict[str, str], *args: str) -> None:
    done = subprocess.run([flatpak, *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = " | ".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise FlatpakError(f"flatpak {' '.join(args[:2])} failed: {said}")


def runtime_metadata(folder: str, runtime_id: str) -> None:
    with open(f"{folder}/metadata", "w") as metadata:
        metadata.write(f"[Runtime]\nname={runtime_id}\nruntime={runtime_id}/x86_64/{BRANCH}\n"
                       f"sdk={runtime_id}/x86_64/{BRANCH}\n")


def exported_runtime(flatpak: str, runtime: Runtime) -> Tuple[str, str]:
    """(repo, runtime id): the runtime's /usr as a Flatpak runtime, exported once into a repo in
    FLATPAK_CACHE keyed by the runtime's root (itself keyed by content), under a lock while one
    run builds it."""
    runtime_id = "org.gpuharness.Runtime." + re.sub(r"[^A-Za-z0-9_]", "_", runtime.name)
    cache = FLATPAK_CACHE / hashlib.sha256(os.path.realpath(runtime.root).encode()).hexdigest()[:24]
    cache.mkdir(parents=True, exist_ok=True)
    repo = cache / "repo"
    with open(cache / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (repo / "done").exists():
            shutil.rmtree(repo, ignore_errors=True)
            try:
                with reaper.temp_dir("build-", str(cache)) as build:
                    # A hard-linked copy: build-export reads a real folder, and links cost no space.
                    subprocess.run(["cp", "-al", os.path.join(runtime.root, "usr"), f"{build}/files"], check=True,
                                   capture_output=True, timeout=600)
                    runtime_metadata(build, runtime_id)
                    flatpak_step(flatpak, private_env(build), "build-export", "--runtime", "--files=files",
                                 str(repo), build, BRANCH)
            except BaseException:
                shutil.rmtree(repo, ignore_errors=True)  # a half-written repo is never taken for a built one
                raise
            (repo / "done").write_text(runtime_id + "\n")
    return str(repo), runtime_id


def install_app(flatpak: str, folder: str, probe_files: List[str], runtime: Optional[Runtime]) -> None:
    """An app whose files are the probe, and its runtime, installed privately in `folder`: the
    harness runtime exported (`runtime` given) or a stub runtime for --usr-path."""
    env = private_env(folder)
    for part in ("home", "installation", "xdg", "build/runtime/files"):
        os.makedirs(f"{folder}/{part}", exist_ok=True)
    os.chmod(f"{folder}/xdg", 0o700)
    build, repo = f"{folder}/build", f"{folder}/build/repo"
    if runtime is not None:
        runtime_repo, runtime_id = exported_runtime(flatpak, runtime)
    else:
        runtime_repo, runtime_id = repo, RUNTIME_ID
        runtime_metadata(f"{build}/runtime", runtime_id)
        flatpak_step(flatpak, env, "build-export", "--runtime", "--files=files", repo, f"{build}/runtime", BRANCH)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "runtimes", runtime_repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "runtimes", f"{runtime_id}//{BRANCH}")
    app = f"{build}/app"
    flatpak_step(flatpak, env, "build-init", app, APP_ID, runtime_id, runtime_id, BRANCH)
    for path in probe_files:
        shutil.copy2(path, f"{app}/files/{os.path.basename(path)}")
    flatpak_step(flatpak, env, "build-finish", app, "--command=/bin/sh")
    flatpak_step(flatpak, env, "build-export", repo, app)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "--if-not-exists", "apps", repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "apps", APP_ID)


def app_env(scenario: Scenario, socket: Optional[str]) -> Dict[str, str]:
    env = dict(scenario.spec.env)
    env.update(icd_env(scenario.spec, scenario.runtime))
    if socket:
        env["VTEST_SOCKET_NAME"] = socket
    env.update(dict(scenario.env))
    return env


class FlatpakLaunch(ProcessLaunch):
    def prepare(self) -> List[ServiceSpec]:
        workspace = self.ctx.workspace
        folder = str(workspace.tmp_dir / "flatpak")
        files = [str(path) for path in probe_spec(self.ctx).files] if self.ctx.workload.command is None else []
        mode = self.ctx.scenario.spec.flatpak_mode
        t0 = time.monotonic()
        install_app(self.ctx.toolset.path("flatpak"), folder, files,
                    self.ctx.scenario.runtime if mode == EXPORT else None)
        self.result.phases["image_build_s"] = time.monotonic() - t0
        self.result.facts["flatpak_mode"] = mode
        return super().prepare()


class FlatpakFamily(Family):
    name = "flatpak"
    launch_class = FlatpakLaunch
    nix_systems = ()  # flatpak's system helper and bwrap setup do not run in a Nix build sandbox

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
        if ctx.scenario.spec.flatpak_mode == EXPORT and ctx.scenario.runtime.kind == HOST_KIND:
            return "the host's own /usr is not exported as a Flatpak runtime (all of it, other filesystems too): " \
                   "the usr-path mode runs over it"
        root = ctx.scenario.runtime.root
        if not os.path.islink(os.path.join(root, "lib")):
            return (f"runtime {ctx.scenario.runtime.name} keeps /bin and /lib outside /usr (not merged-/usr): "
                    "flatpak run --usr-path mounts only /usr, so its libc and shell are not there")
        return super().unavailable_in(ctx)

    def plan(self, ctx: LaunchContext) -> Plan:
        scenario, toolset, workspace, workload = ctx.scenario, ctx.toolset, ctx.workspace, ctx.workload
        folder = str(workspace.tmp_dir / "flatpak")
        services = services_for(ctx)
        socket = next((s.ready_socket for s in services if s.name == vtest.SERVICE and s.ready_socket), None)
        argv = [toolset.path("flatpak"), "run", "--user", "--die-with-parent", "--no-session-bus", "--no-a11y-bus",
                "--no-documents-portal", "--device=dri" if scenario.spec.needs_render_node else "--nodevice=dri"]
        if scenario.spec.flatpak_mode == USR_PATH:
            argv += [f"--usr-path={scenario.runtime.root.rstrip('/')}/usr", f"--app-path={folder}/build/app/files"]
        if socket:
            argv.append(filesystem(socket))
        if workload.command is not None:
            command = list(workload.command)
        else:
            argv.append(filesystem(str(workspace.probe_out)))
            spec = probe_spec(ctx)
            command = spec.argv(["/usr/bin/python3"], f"{APP_INSIDE}/{spec.file.name}", str(workspace.probe_out),
                                [str(workspace.sentinel)], workload.probe_args)
        for key, value in sorted(app_env(scenario, socket).items()):
            argv.append(f"--env={key}={value}")
        argv += ["--command=/bin/sh", APP_ID, "-c", LINK_AND_RUN, "sh", *command]
        return Plan(argv=argv, env=private_env(folder), env_mode="inherit", services=services,
                    dirs=[str(workspace.tmp_dir)])


FAMILY = FlatpakFamily()
