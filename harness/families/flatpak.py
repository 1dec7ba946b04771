"""The Flatpak family (flatpak-vtest, flatpak-dri): the real `flatpak run`, as seed 000 runs it.

Each scenario gets a private installation (FLATPAK_USER_DIR), a private HOME and XDG_RUNTIME_DIR
and no session bus. A stub runtime and app are exported to a local repo and installed there
(about 0.3 s); `flatpak run --usr-path=<runtime>/usr` then puts the harness runtime's /usr under
the app without exporting it (a full `build-export` of a runtime costs 76 s, measured), and the
probe is the app's own files (`--app-path`), so no host path is needed for it. The report says
which mode ran.

flatpak-vtest is seed 000's command: `--nodevice=dri`, the server's socket exposed with
`--filesystem` and named in VTEST_SOCKET_NAME. Mesa 22.3 ignores that variable and connects to
/tmp/.virgl_test, which inside Flatpak is the app's own persistent tmp folder: the app's
command links /tmp/.virgl_test to the socket it was given before it starts, from inside, so
nothing depends on where Flatpak keeps that folder on the host."""
import os
import shutil
import subprocess
from typing import Dict, List, Optional

from .. import vtest
from ..lifecycle import LaunchContext
from ..model import Scenario
from ..services import ServiceSpec
from .base import Family, Plan, ProcessLaunch, icd_env, probe_spec
from .sandbox import services_for

APP_ID = "org.gpuharness.Probe"
RUNTIME_ID = "org.gpuharness.Stub"
BRANCH = "1"
MODE = "usr-path"  # flatpak run --usr-path over a stub runtime (no export of the harness runtime)
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


def flatpak_step(flatpak: str, env: Dict[str, str], *args: str, cwd: Optional[str] = None) -> None:
    done = subprocess.run([flatpak, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = " | ".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise FlatpakError(f"flatpak {' '.join(args[:2])} failed: {said}")


def install_stub(flatpak: str, folder: str, probe_files: List[str]) -> None:
    """A stub runtime and an app whose files are the probe, installed privately in `folder`."""
    env = private_env(folder)
    for part in ("home", "installation", "xdg", "build/runtime/files", "build/runtime/usr"):
        os.makedirs(f"{folder}/{part}", exist_ok=True)
    os.chmod(f"{folder}/xdg", 0o700)
    build, repo = f"{folder}/build", f"{folder}/build/repo"
    with open(f"{build}/runtime/metadata", "w") as metadata:
        metadata.write(f"[Runtime]\nname={RUNTIME_ID}\nruntime={RUNTIME_ID}/x86_64/{BRANCH}\n"
                       f"sdk={RUNTIME_ID}/x86_64/{BRANCH}\n")
    flatpak_step(flatpak, env, "build-export", "--runtime", "--files=files", repo, f"{build}/runtime", BRANCH)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "local", repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "local", f"{RUNTIME_ID}//{BRANCH}")
    app = f"{build}/app"
    flatpak_step(flatpak, env, "build-init", app, APP_ID, RUNTIME_ID, RUNTIME_ID, BRANCH)
    for path in probe_files:
        shutil.copy2(path, f"{app}/files/{os.path.basename(path)}")
    flatpak_step(flatpak, env, "build-finish", app, "--command=/bin/sh")
    flatpak_step(flatpak, env, "build-export", repo, app)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "local", APP_ID)


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
        install_stub(self.ctx.toolset.path("flatpak"), folder, files)
        self.result.facts["flatpak_mode"] = MODE
        return super().prepare()


class FlatpakFamily(Family):
    name = "flatpak"
    launch_class = FlatpakLaunch
    nix_systems = ()  # flatpak's system helper and bwrap setup do not run in a Nix build sandbox

    def unavailable_in(self, ctx: LaunchContext) -> Optional[str]:
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
                "--no-documents-portal", "--device=dri" if scenario.spec.needs_render_node else "--nodevice=dri",
                f"--usr-path={scenario.runtime.root.rstrip('/')}/usr", f"--app-path={folder}/build/app/files"]
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
