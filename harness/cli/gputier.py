"""The GPU tier: what a lent GPU machine lacks, packed here (`pack`), and the GPU half of the
matrix run there in one command (`run`), into a prefix and an output folder only.

A lent machine starts bare, with no package registry, and takes at most 64 MiB of files; each run
must end well inside 10 minutes. The working tree travels, and the harness runs from it with the
machine's Python. `pack` (harness/cli/gputier_pack.py) gathers into one ignored folder the harness's
Python dependencies as wheels, but numpy and Pillow (the machine's Python has them, and `run`
checks), and the Debian packages of the host-side pieces. `run` checks that the wheels are for the
Python running it, unzips them into the prefix with the standard library only (nothing else is
imported before they are on the path), the debs too (never over the machine's root), writes a
toolset for it, runs harness/data/gpu.toml with the cache, the temp folders and everything written
inside the prefix and the output folder, and leaves there results.json, report.html, junit.xml and
the scenarios' logs in one archive."""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core import places
from ..host import toolset as toolset_mod
from ..core.errors import InputError, cut, parse_json, read_text, shown
from .gputier_pack import MACHINE, PACK_DIR, PYTHONS, checked, described, normalized, pack

MATRIX = places.DATA / "gpu.toml"
RETURN_LIMIT = 16 * 2**20  # one file brought back
LIB_DIR = "usr/lib/x86_64-linux-gnu"
HERE = "%d.%d" % sys.version_info[:2]


def release(version: str) -> Tuple[int, ...]:
    """A version's release numbers, for a least-version check: '2.4.6rc1' -> (2, 4, 6)."""
    found = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in found.group(0).split(".")) if found else ()


def manifest_of(folder: Path) -> dict:
    """The pack's pack.json, its shape checked: every failure one InputError line."""
    where = folder / "pack.json"
    if not where.exists():
        raise InputError(f"gpu-tier run: {cut(folder)} holds no pack (run `scripts/gpu-tier pack` "
                         "first)")
    manifest = parse_json(read_text(where, "the pack's manifest"), cut(where))
    pythons = manifest.get("pythons") if isinstance(manifest, dict) else None
    if not isinstance(pythons, dict) or not pythons:
        raise InputError(f"gpu-tier run: {cut(where)} names no Python the wheels are for (an older "
                         "pack?): "
                         "run `scripts/gpu-tier pack` again")
    lists = all(isinstance(names, list) and all(isinstance(n, str) and "/" not in n for n in names)
                for names in pythons.values())
    left = manifest.get("from_target", {})
    if not lists or not isinstance(left, dict) or not all(isinstance(v, str)
                                                          for v in left.values()):
        raise InputError(f"gpu-tier run: {cut(where)}: 'pythons' or 'from_target' is not what "
                         "`pack` writes")
    return manifest


def glibc_here() -> Tuple[int, ...]:
    lib, version = platform.libc_ver()
    return release(version)[:2] if lib == "glibc" else ()


def wheels_for(manifest: dict) -> List[str]:
    """The pack's wheels for the Python running this, or an InputError naming what was packed for
    and what was found."""
    pythons, machine, glibc = (manifest["pythons"], str(manifest.get("machine", MACHINE)),
                               glibc_here())
    needed = release(str(manifest.get("glibc", "0.0")))[:2]
    if (sys.implementation.name != "cpython" or HERE not in pythons
            or platform.machine() != machine or (needed > (0, 0) and glibc < needed)):
        found = (f"{sys.implementation.name} {platform.python_version()} on {platform.machine()} "
                 "with "
                 f"{'glibc %d.%d' % glibc if glibc else 'no glibc'} ({cut(sys.executable)})")
        hint = (f": pack for it with `scripts/gpu-tier pack --python {HERE}`"
                if HERE not in pythons else "")
        raise InputError(f"gpu-tier run: the pack holds wheels for CPython {', '.join(pythons)} on "
                         f"{machine} with "
                         f"glibc >= {manifest.get('glibc', '?')}; this is {found}{hint}")
    return list(pythons[HERE])


def install_wheels(wheels: Sequence[Path], site: Path) -> None:
    """Pure and manylinux wheels unzipped into `site`, as pip install --target puts them, with the
    standard library only (the machine's Python may have no pip): a wheel's purelib and platlib
    data go with its modules, its scripts, headers and data files nowhere."""
    site.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.infolist():
                    parts = member.filename.split("/")
                    if parts[0].endswith(".data"):
                        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                            continue
                        parts = parts[2:]
                    if member.is_dir() or not parts[-1]:
                        continue
                    if parts[0] == "" or ".." in parts:
                        raise InputError(f"gpu-tier run: {wheel.name}: {shown(member.filename)} "
                                         "leaves the site folder")
                    target = site.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as source, open(target, "wb") as sink:
                        shutil.copyfileobj(source, sink)
                    mode = (member.external_attr >> 16) & 0o777
                    if mode:
                        target.chmod(mode | 0o600)
        except (OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"gpu-tier run: cannot install the wheel {cut(wheel.name)}: "
                             f"{exc}") from None


def versions_on(names: Sequence[str], paths: Sequence[str]) -> Dict[str, Optional[str]]:
    """The version of each distribution in `names` that an import would find on `paths` (None:
    none)."""
    from importlib import metadata

    found: Dict[str, str] = {}
    for dist in metadata.distributions(path=list(paths)):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            # the first on the path, as an import takes
            found.setdefault(normalized(name), dist.version)
    return {name: found.get(normalized(name)) for name in names}


def lacking(least: Dict[str, str], versions: Dict[str, Optional[str]]) -> List[str]:
    """What of `least` (name -> least version) `versions` lacks, each with what was found."""
    said = []
    for name, version in least.items():
        have = versions.get(name)
        if have is None:
            said.append(f"{name}{'>=' + version if version else ''} (none found)")
        elif version and release(have) < release(version):
            said.append(f"{name}>={version} (found {have})")
    return said


def unpack(folder: Path, prefix: Path, site: Path) -> Dict[str, str]:
    """The packed debs into the prefix; the environment that finds them (programs, libraries, glvnd
    vendors and Vulkan ICDs the machine's and the prefix's) and the wheels installed in `site`."""
    root = prefix / "root"
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted((folder / "debs").glob("*.deb")):
        checked(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    libs = root / LIB_DIR
    vendors = [d for d in ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d",
                           "/usr/local/nvidia/share/glvnd/egl_vendor.d") if os.path.isdir(d)]
    return {"PATH": f"{root}/usr/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LD_LIBRARY_PATH": ":".join([str(libs), os.environ.get("LD_LIBRARY_PATH",
                                                                   "")]).rstrip(":"),
            "__EGL_VENDOR_LIBRARY_DIRS": ":".join([*vendors,
                                                   str(root / "usr/share/glvnd/egl_vendor.d")]),
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
                                               {"dri_dirs": [str(dri)],
                                                "env": {"LIBGL_DRIVERS_PATH": str(dri)}})
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
        # in the archive: the folder holds files to fetch only
        shutil.rmtree(out / name, ignore_errors=True)
    kept = [out / name for name in ("results.json", "report.html", "junit.xml", "run.log",
                                    "toolset.json")
            if (out / name).exists()]
    if archive.stat().st_size <= RETURN_LIMIT:
        kept.append(archive)
    else:
        archive.unlink()
    return kept


SHORT_TMP = 32  # characters of a temp folder under which the harness's socket paths fit


def prepare(folder: Path, prefix: Path) -> Tuple[Path, str]:
    """The pack's wheels for this Python in the prefix's site folder, once this Python is one they
    are for and has what the pack leaves to it: the site folder, and a line saying so."""
    manifest = manifest_of(folder)
    names = wheels_for(manifest)
    site = prefix / "site"
    shutil.rmtree(site, ignore_errors=True)  # another Python's wheels from an earlier run
    install_wheels([folder / "wheels" / name for name in names], site)
    left: Dict[str, str] = manifest.get("from_target", {})
    versions = versions_on(list(left), [str(site), *sys.path])
    missing = lacking(left, versions)
    python = f"Python {platform.python_version()} ({cut(sys.executable)})"
    if missing:
        raise InputError(f"gpu-tier run: {python} lacks {', '.join(missing)}: the pack leaves "
                         f"{' and '.join(left)} to the machine's Python (it packs wheels for "
                         f"{', '.join(manifest['pythons'])})")
    own = " and ".join(f"{name} {version}" for name, version in versions.items())
    return site, (f"gpu-tier run: {python}: {len(names)} of the pack's wheels for it (packed for "
                  "Python "
                  f"{', '.join(manifest['pythons'])}) in {site}{'; found ' + own if own else ''}")


def run(out: Path, prefix: Path, folder: Path = PACK_DIR, jobs: int = 4,
        timeout_s: float = 480.0) -> int:
    """Unpack into `prefix`, run the GPU matrix into `out`, leave the files to bring back there."""
    site, said = prepare(folder, prefix)
    print(said, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    env = unpack(folder, prefix, site)
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
    argv = [sys.executable, "-m", "harness.cli", "run", "--matrix", str(MATRIX), "--toolset",
            str(manifest),
            "--out", str(out / "run"), "-j", str(jobs)]
    with open(out / "run.log", "w") as log:
        try:
            done = subprocess.run(argv, env={**os.environ, **env}, stdout=log,
                                  stderr=subprocess.STDOUT,
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
    packing = sub.add_parser("pack",
                             help="gather what a GPU machine lacks into --pack (run it here)")
    packing.add_argument("--python", action="append", metavar="X.Y",
                         help="a CPython version to pack wheels "
                         f"for, once for each (default: {', '.join(PYTHONS)})")
    running = sub.add_parser("run",
                             help="unpack into --prefix and run the GPU matrix into --out (run it "
                                  "there)")
    running.add_argument("--out", type=Path, required=True, help="the folder of what to bring back")
    running.add_argument("--prefix", type=Path, default=Path("/tmp/gpu-tier"),
                         help="where the pack is unpacked "
                         "and everything else of the run is written (default: %(default)s)")
    running.add_argument("-j", "--jobs", type=int, default=4,
                         help="scenarios at a time (default: %(default)s)")
    for verb in (packing, running):
        verb.add_argument("--pack", type=Path, default=PACK_DIR,
                          help="the pack's folder (default: .gpu-tier)")
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            print(described(pack(args.pack.absolute(), args.python or PYTHONS)))
            return 0
        code = run(args.out.absolute(), args.prefix.absolute(), args.pack.absolute(),
                   jobs=args.jobs)
        print(f"{args.out}: " + ", ".join(sorted(p.name for p in args.out.iterdir()))
              + f" (the run's exit code {code})")
        return code
    except InputError as exc:
        print(f"gpu-tier: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
