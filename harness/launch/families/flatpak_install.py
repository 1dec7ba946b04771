"""A scenario's private Flatpak installation, made with flatpak's own commands: its app (the probe's
files, or a user's bundle), the runtime and extensions it runs on, for the Flatpak arch of the
runtime (aarch64 for an arm64 runtime: `flatpak run --arch=aarch64`, run by qemu-user)."""
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ...host import emulation
from ...core.errors import ComponentError
from ...system import process

APP_ID = "org.gpuharness.Probe"
RUNTIME_ID = "org.gpuharness.Stub"
BRANCH = "1"
# in the scenario's flatpak folder: the app id of the user's bundle it installed
BUNDLE_APP = "bundle-app"
APP_COMMAND = "gpu-harness-app"  # the app mode's own command: runs the workload inside the app
UNSAFE_IN_FILESYSTEM = (":",)  # --filesystem=PATH:ro splits on ':'
HOST_ARCH = "x86_64"  # the Flatpak arch of this host's (and of a multiarch 32-bit) runtime
FLATPAK_ARCHES = {"amd64": "x86_64", "i386": "i386", "arm64": "aarch64", "armhf": "arm",
                  "riscv64": "riscv64"}


class FlatpakError(ComponentError):
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


STEP_TIMEOUT_S = 600  # a whole runtime exported or installed on a loaded 2-core machine


def flatpak_step(flatpak: str, env: Dict[str, str], *args: str) -> str:
    try:
        done = process.run_program([flatpak, *args], env=env, capture_output=True, text=True,
                                   timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FlatpakError(f"flatpak {' '.join(args[:2])} did not finish in {STEP_TIMEOUT_S} s "
                           "(killed)") from None
    if done.returncode != 0:
        said = " | ".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())
        raise FlatpakError(f"flatpak {' '.join(args[:2])} failed: {said}")
    return done.stdout


def runtime_metadata(folder: str, runtime_id: str, branch: str = BRANCH,
                     arch: str = HOST_ARCH) -> None:
    with open(f"{folder}/metadata", "w") as metadata:
        metadata.write(f"[Runtime]\nname={runtime_id}\nruntime={runtime_id}/{arch}/{branch}\n"
                       f"sdk={runtime_id}/{arch}/{branch}\n")


def flatpak_arch(root: str) -> str:
    """The Flatpak arch a runtime's refs are made for: an emulated architecture's own (aarch64:
    `flatpak run --arch` runs it through binfmt_misc's qemu-user), else the host's (a 32-bit
    runtime runs as multiarch under the host's arch)."""
    found = emulation.tree_architecture(root) if root else None
    if not found or found in emulation.NATIVE.get(emulation.host_architecture(), ()):
        return HOST_ARCH
    return FLATPAK_ARCHES.get(found, found)


def install_app(flatpak: str, folder: str, probe_files: List[str],
                runtime: Optional[Tuple[str, str]],
                extensions: Tuple[Tuple[str, str], ...] = (), arch: str = HOST_ARCH,
                app_id: str = APP_ID, command: Optional[List[str]] = None) -> None:
    """An app whose files are the probe, and its runtime, installed privately in `folder`: a
    runtime exported in a cached repo (`runtime` = (repo, id)), or a stub runtime for --usr-path;
    and any extensions ((repo, id) each) besides; all for Flatpak arch `arch`. The app is `app_id`;
    its own command is /bin/sh, or with `command` a script that runs that argv (what `flatpak run
    APP_ID` with no --command runs)."""
    env = private_env(folder)
    on_arch = f"--arch={arch}"
    for part in ("home", "installation", "xdg", "build/runtime/files"):
        os.makedirs(f"{folder}/{part}", exist_ok=True)
    os.chmod(f"{folder}/xdg", 0o700)
    build, repo = f"{folder}/build", f"{folder}/build/repo"
    if runtime is not None:
        runtime_repo, runtime_id = runtime
    else:
        runtime_repo, runtime_id = repo, RUNTIME_ID
        runtime_metadata(f"{build}/runtime", runtime_id, arch=arch)
        flatpak_step(flatpak, env, "build-export", on_arch, "--runtime", "--files=files", repo,
                     f"{build}/runtime",
                     BRANCH)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "runtimes", runtime_repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", on_arch, "runtimes",
                 f"{runtime_id}//{BRANCH}")
    for index, (extension_repo, extension_id) in enumerate(extensions):
        flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", f"extension{index}",
                     extension_repo)
        flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", on_arch,
                     f"extension{index}",
                     f"{extension_id}//{BRANCH}")
    app = f"{build}/app"
    flatpak_step(flatpak, env, "build-init", on_arch, app, app_id, runtime_id, runtime_id, BRANCH)
    for path in probe_files:
        shutil.copy2(path, f"{app}/files/{os.path.basename(path)}")
    own_command = "/bin/sh"
    if command is not None:
        os.makedirs(f"{app}/files/bin", exist_ok=True)
        script = Path(app, "files", "bin", APP_COMMAND)
        script.write_text("#!/bin/sh\nexec " + shlex.join(command) + ' "$@"\n')
        script.chmod(0o755)
        own_command = APP_COMMAND
    flatpak_step(flatpak, env, "build-finish", app, f"--command={own_command}")
    flatpak_step(flatpak, env, "build-export", on_arch, repo, app)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "--if-not-exists", "apps",
                 repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", on_arch, "apps",
                 app_id)


def install_bundle(flatpak: str, folder: str, bundle: str) -> Tuple[str, str]:
    """A user's Flatpak bundle installed privately in `folder` over a stub of the runtime it names
    (the scenario's runtime's /usr stands in for it with --usr-path): its app id and that
    runtime."""
    env = private_env(folder)
    for part in ("home", "installation", "xdg", "build/stub/files"):
        os.makedirs(f"{folder}/{part}", exist_ok=True)
    os.chmod(f"{folder}/xdg", 0o700)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "--no-deps",
                 "--bundle", bundle)
    listed = flatpak_step(flatpak, env, "--user", "list", "--app",
                          "--columns=application,runtime").split()
    if len(listed) != 2 or listed[1].count("/") != 2:
        raise FlatpakError(f"the bundle {bundle} installed as {' '.join(listed) or 'nothing'}, not "
                           "one app")
    app_id, runtime_ref = listed
    runtime_id, _, branch = runtime_ref.split("/")
    runtime_metadata(f"{folder}/build/stub", runtime_id, branch)
    repo = f"{folder}/build/stub-repo"
    flatpak_step(flatpak, env, "build-export", "--runtime", "--files=files", repo,
                 f"{folder}/build/stub", branch)
    flatpak_step(flatpak, env, "--user", "remote-add", "--no-gpg-verify", "stubs", repo)
    flatpak_step(flatpak, env, "--user", "install", "-y", "--noninteractive", "stubs",
                 f"{runtime_id}//{branch}")
    Path(folder, BUNDLE_APP).write_text(app_id)
    return app_id, runtime_ref


def bundled_app(folder: str) -> Optional[str]:
    """The app id of the bundle installed in `folder`, or None where the scenario runs no bundle."""
    path = Path(folder, BUNDLE_APP)
    return path.read_text() if path.exists() else None
