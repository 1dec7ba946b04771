"""The GPU tier: what a lent GPU machine lacks, packed here (`pack`), and the GPU half of the
matrix run there in one command (`run`), into a prefix and an output folder only.

A lent machine starts bare, with no package registry, and takes at most 64 MiB of files; each run
must end well inside 10 minutes. The working tree travels, and the harness runs from it. `pack`
gathers into one ignored folder qemu.qmp as a wheel (the machine's Python has jinja2, Pillow,
numpy and rich) and the Debian packages of
the host-side pieces (bubblewrap, virglrenderer's server, glvnd's loaders, Mesa's drivers for the
software path), with what they need beyond a base system. `run` unpacks them into a prefix (never
over the machine's root), writes a toolset for it, runs harness/data/gpu.toml with the cache, the
temp folders and everything written inside the prefix and the output folder, and leaves there
results.json, report.html, junit.xml and the scenarios' logs in one archive."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from . import toolset as toolset_mod
from .errors import InputError

ROOT = Path(__file__).resolve().parent.parent
PACK_DIR = ROOT / ".gpu-tier"
MATRIX = Path(__file__).resolve().parent / "data" / "gpu.toml"
LIMIT_BYTES = 64 * 2**20 - 8 * 2**20  # what travels is 64 MiB with the working tree: leave it 8 MiB
RETURN_LIMIT = 16 * 2**20  # one file brought back
# The host-side pieces and their libraries beyond a base system (a base system's C and C++
# runtimes, compression and PCRE are the machine's own, never shadowed by older ones).
PACKAGES = ("bubblewrap", "virgl-server", "libvirglrenderer1", "libepoxy0", "libva2", "libva-drm2",
            "libglvnd0", "libegl1", "libgles2", "libgl1", "libglx0", "libopengl0", "libvulkan1",
            "libegl-mesa0", "libgbm1", "libglx-mesa0", "libgl1-mesa-dri", "libglapi-mesa", "libllvm15", "libz3-4",
            "libicu72", "libxml2", "libedit2", "libelf1", "libsensors5", "libsensors-config", "libdrm2",
            "libdrm-common", "libdrm-amdgpu1", "libdrm-intel1", "libdrm-nouveau2", "libdrm-radeon1",
            "libpciaccess0", "libwayland-client0", "libwayland-server0", "libx11-6", "libx11-data", "libx11-xcb1",
            "libxau6", "libxdmcp6", "libxcb1", "libxcb-dri2-0", "libxcb-dri3-0", "libxcb-glx0", "libxcb-present0",
            "libxcb-randr0", "libxcb-shm0", "libxcb-sync1", "libxcb-xfixes0", "libxext6", "libxfixes3",
            "libxshmfence1", "libxxf86vm1", "libbsd0", "libmd0")
WHEELS = ("qemu.qmp",)  # what the GPU machine's Python does not have
LIB_DIR = "usr/lib/x86_64-linux-gnu"


@dataclass(frozen=True)
class Packed:
    folder: Path
    wheels: List[str]
    debs: List[str]
    size: int

    def to_dict(self) -> dict:
        return {"wheels": self.wheels, "debs": self.debs, "size_bytes": self.size}


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def checked(argv: Sequence[str], what: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise InputError(f"gpu-tier pack: {what} failed: {said}")


def pack(folder: Path = PACK_DIR) -> Packed:
    """The harness's Python packages the machine lacks and the host-side Debian packages, in `folder`."""
    if folder.exists():
        shutil.rmtree(folder)
    wheels, debs = folder / "wheels", folder / "debs"
    wheels.mkdir(parents=True)
    debs.mkdir()
    checked([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
             *WHEELS], "fetching qemu.qmp")
    checked(["apt-get", "download", *PACKAGES], "apt-get download (the Debian packages)", cwd=debs)
    packed = Packed(folder, sorted(p.name for p in wheels.iterdir()), sorted(p.name for p in debs.iterdir()),
                    size_of(folder))
    (folder / "pack.json").write_text(json.dumps(packed.to_dict(), indent=1) + "\n")
    if packed.size > LIMIT_BYTES:
        raise InputError(f"gpu-tier pack: {packed.size / 2**20:.1f} MiB packed, more than the "
                         f"{LIMIT_BYTES / 2**20:.0f} MiB that may travel with the working tree")
    return packed


def unpack(folder: Path, prefix: Path) -> Dict[str, str]:
    """The packed debs into the prefix and the wheels into its site folder; the environment that
    finds them (programs, libraries, glvnd vendors and Vulkan ICDs the machine's and the prefix's)."""
    root, site = prefix / "root", prefix / "site"
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted((folder / "debs").glob("*.deb")):
        checked(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    wheels = sorted(str(p) for p in (folder / "wheels").glob("*.whl"))
    checked([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target",
             str(site), *wheels], "installing the wheels")
    libs = root / LIB_DIR
    vendors = [d for d in ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d",
                           "/usr/local/nvidia/share/glvnd/egl_vendor.d") if os.path.isdir(d)]
    return {"PATH": f"{root}/usr/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LD_LIBRARY_PATH": ":".join([str(libs), os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":"),
            "__EGL_VENDOR_LIBRARY_DIRS": ":".join([*vendors, str(root / "usr/share/glvnd/egl_vendor.d")]),
            "LIBGL_DRIVERS_PATH": str(libs / "dri"),
            "PYTHONPATH": ":".join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
            "XDG_CACHE_HOME": str(prefix / "cache"), "PYTHONUNBUFFERED": "1"}


def toolset_for(prefix: Path, env: Dict[str, str]) -> Path:
    """The toolset the run uses: what discovery finds with the prefix first on the paths, Mesa's
    drivers from the prefix where the machine has none of its own."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        found = toolset_mod.discover()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    dri = prefix / "root" / LIB_DIR / "dri"
    mesa = found.tools.get("mesa")
    if (mesa is None or not mesa.found) and dri.is_dir():
        found.tools["mesa"] = toolset_mod.Tool("mesa", str(dri), "22.3 (gpu-tier prefix)",
                                               {"dri_dirs": [str(dri)], "env": {"LIBGL_DRIVERS_PATH": str(dri)}})
    manifest = prefix / "toolset.json"
    data = found.to_dict()
    data["source"] = f"gpu-tier prefix {prefix}"
    manifest.write_text(json.dumps(data, indent=1) + "\n")
    return manifest


def bring_back(out: Path) -> List[Path]:
    """The scenarios' folders as one compressed archive beside the reports: few files to fetch."""
    archive = out / "scenarios.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("scenarios", "machines"):
            if (out / name).is_dir():
                tar.add(out / name, arcname=name)
    for name in ("scenarios", "machines"):
        shutil.rmtree(out / name, ignore_errors=True)  # in the archive: the folder holds files to fetch only
    kept = [out / name for name in ("results.json", "report.html", "junit.xml", "run.log", "toolset.json")
            if (out / name).exists()]
    if archive.stat().st_size <= RETURN_LIMIT:
        kept.append(archive)
    else:
        archive.unlink()
    return kept


SHORT_TMP = 32  # characters of a temp folder under which the harness's socket paths fit


def run(out: Path, prefix: Path, folder: Path = PACK_DIR, jobs: int = 4, timeout_s: float = 480.0) -> int:
    """Unpack into `prefix`, run the GPU matrix into `out`, leave the files to bring back there."""
    if not (folder / "pack.json").exists():
        raise InputError(f"gpu-tier run: {folder} holds no pack (run `scripts/gpu-tier pack` first)")
    for made in (prefix, out):
        made.mkdir(parents=True, exist_ok=True)
    env = unpack(folder, prefix)
    # Sockets live in the temp folder (108 bytes at most): the prefix's when its path is short.
    short = len(str(prefix / "tmp")) <= SHORT_TMP
    temp = prefix / "tmp" if short else Path(tempfile.mkdtemp(prefix="gh-tier-"))
    temp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(temp)
    try:
        return run_in(out, prefix, env, jobs, timeout_s)
    finally:
        if not short:
            shutil.rmtree(temp, ignore_errors=True)


def run_in(out: Path, prefix: Path, env: Dict[str, str], jobs: int, timeout_s: float) -> int:
    manifest = toolset_for(prefix, env)
    shutil.copyfile(manifest, out / "toolset.json")
    argv = [sys.executable, "-m", "harness.cli", "run", "--matrix", str(MATRIX), "--toolset", str(manifest),
            "--out", str(out / "run"), "-j", str(jobs)]
    with open(out / "run.log", "w") as log:
        try:
            done = subprocess.run(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout_s, cwd=prefix)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = 124
    for name in ("results.json", "report.html", "junit.xml"):
        if (out / "run" / name).exists():
            shutil.move(str(out / "run" / name), out / name)
    for name in ("scenarios", "machines"):
        if (out / "run" / name).exists():
            shutil.move(str(out / "run" / name), out / name)
    shutil.rmtree(out / "run", ignore_errors=True)
    bring_back(out)
    return code


def main(argv: List[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="gpu-tier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("pack", help="gather what a GPU machine lacks into .gpu-tier/ (run it here)")
    running = sub.add_parser("run", help="unpack into --prefix and run the GPU matrix into --out (run it there)")
    running.add_argument("--out", type=Path, required=True, help="the folder of what to bring back")
    running.add_argument("--prefix", type=Path, default=Path("/tmp/gpu-tier"), help="where the pack is unpacked "
                         "and everything else of the run is written (default: %(default)s)")
    running.add_argument("-j", "--jobs", type=int, default=4, help="scenarios at a time (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            packed = pack()
            print(f"{packed.folder}: {len(packed.wheels)} wheels, {len(packed.debs)} Debian packages, "
                  f"{packed.size / 2**20:.1f} MiB")
            return 0
        code = run(args.out.absolute(), args.prefix.absolute(), jobs=args.jobs)
        print(f"{args.out}: " + ", ".join(sorted(p.name for p in args.out.iterdir())) + f" (the run's exit code {code})")
        return code
    except InputError as exc:
        print(f"gpu-tier: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
