"""The GPU tier's pack, made here: what a lent GPU machine lacks, gathered into one ignored folder
for `gpu-tier run` there (harness/cli/gputier.py).

A lent machine starts bare, with no package registry, and takes at most 64 MiB of files. `pack`
gathers the harness's Python dependencies and what they need, as wheels for each CPython it packs
for (x86-64 manylinux), but numpy and Pillow (theirs do not fit: the machine's Python has them, and
`run` checks), and the Debian packages of the host-side pieces (bubblewrap, virglrenderer's server,
glvnd's loaders, Mesa's drivers for the software path) with what they need beyond a base system.
The standard library only, as the run that imports it there."""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..core import places
from ..core.errors import InputError, cut, read_text, shown

ROOT = places.CHECKOUT
PACK_DIR = ROOT / ".gpu-tier"
LIMIT_BYTES = 64 * 2**20 - 8 * 2**20  # what travels is 64 MiB with the working tree: leave it 8 MiB
# The host-side pieces and their libraries beyond a base system (a base system's C and C++
# runtimes, compression and PCRE are the machine's own, never shadowed by older ones).
PACKAGES = ("bubblewrap", "virgl-server", "libvirglrenderer1", "libepoxy0", "libva2", "libva-drm2",
            "libglvnd0", "libegl1", "libgles2", "libgl1", "libglx0", "libopengl0", "libvulkan1",
            "libegl-mesa0", "libgbm1", "libglx-mesa0", "libgl1-mesa-dri", "libglapi-mesa",
            "libllvm15", "libz3-4", "libicu72", "libxml2", "libedit2", "libelf1", "libsensors5",
            "libsensors-config", "libdrm2", "libdrm-common", "libdrm-amdgpu1", "libdrm-intel1",
            "libdrm-nouveau2", "libdrm-radeon1", "libpciaccess0", "libwayland-client0",
            "libwayland-server0", "libx11-6", "libx11-data", "libx11-xcb1", "libxau6", "libxdmcp6",
            "libxcb1", "libxcb-dri2-0", "libxcb-dri3-0", "libxcb-glx0", "libxcb-present0",
            "libxcb-randr0", "libxcb-shm0", "libxcb-sync1", "libxcb-xfixes0", "libxext6",
            "libxfixes3", "libxshmfence1", "libxxf86vm1", "libbsd0", "libmd0")
PYTHONS = ("3.12", "3.11")  # the lent machine's Python, and the one that tests the tier here
# Left to the machine's Python, which has them (`run` checks): their wheels, numpy's about 16 MiB
# and Pillow's 7 per Python, do not fit beside the Debian packages (50 MiB) in what may travel.
FROM_TARGET = ("numpy", "pillow")
MACHINE = "x86_64"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64",
             "manylinux1_x86_64")
LEGACY_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?")


@dataclass(frozen=True)
class Packed:
    folder: Path
    pythons: Dict[str, List[str]]  # a Python version -> the wheels installed for it
    # left to the machine's Python: name -> the least version ('' for any)
    from_target: Dict[str, str]
    glibc: str
    debs: List[str]
    size: int

    @property
    def wheels(self) -> List[str]:
        return sorted({name for names in self.pythons.values() for name in names})

    def python_bytes(self, python: str) -> int:
        return sum((self.folder / "wheels" / name).stat().st_size for name in self.pythons[python])

    def to_dict(self) -> dict:
        return {"implementation": "cpython", "machine": MACHINE, "glibc": self.glibc,
                "pythons": self.pythons,
                "python_bytes": {python: self.python_bytes(python) for python in self.pythons},
                "from_target": self.from_target, "wheels": self.wheels, "debs": self.debs,
                "size_bytes": self.size}


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def checked(argv: Sequence[str], what: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise InputError(f"gpu-tier pack: {what} failed: {said}")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependencies(pyproject: Path = ROOT / "pyproject.toml") -> List[str]:
    """The harness's Python dependencies, as pyproject.toml's [project] says them."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        declared = tomllib.loads(read_text(pyproject, "pyproject.toml"))["project"]["dependencies"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"gpu-tier pack: {cut(pyproject)}: no [project] dependencies: "
                         f"{exc}") from None
    return [str(requirement) for requirement in declared]


def split_requirements(requirements: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """The requirements to pack, and those left to the machine's Python (name -> least version)."""
    packed: List[str] = []
    left: Dict[str, str] = {}
    for requirement in requirements:
        found = REQUIREMENT.fullmatch(requirement.strip())
        if found is None:
            raise InputError(f"gpu-tier pack: cannot read the dependency {shown(requirement)}")
        name, spec = found.group(1), found.group(2)
        if normalized(name) not in FROM_TARGET:
            packed.append(requirement)
            continue
        least = re.fullmatch(r">=\s*(\d+(?:\.\d+)*)", spec)
        if (spec and least is None) or found.group(3):
            raise InputError(f"gpu-tier pack: {shown(requirement)} is left to the machine's "
                             "Python, where "
                             "`run` checks a least version (>=) only")
        left[name] = least.group(1) if least else ""
    return packed, left


def glibc_of(wheel: str) -> Tuple[int, int]:
    """The oldest glibc a wheel runs on, by its platform tags ((0, 0): a pure wheel)."""
    needs = []
    for tag in wheel[:-len(".whl")].split("-")[-1].split("."):
        versioned = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
        if versioned:
            needs.append((int(versioned.group(1)), int(versioned.group(2))))
        elif tag.split("_")[0] in LEGACY_GLIBC:
            needs.append(LEGACY_GLIBC[tag.split("_")[0]])
    return min(needs) if needs else (0, 0)


def fetch_wheels(requirements: Sequence[str], python: str, wheels: Path) -> List[str]:
    """The wheels of `requirements` and what they need, for CPython `python` on x86-64 Linux, into
    `wheels` (one file for what several Pythons share); their names."""
    staging = Path(tempfile.mkdtemp(prefix=f"python{python}-", dir=wheels.parent))
    try:
        checked([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                 "--implementation", "cp",
                 "--python-version", python, *(f"--platform={tag}" for tag in PLATFORMS), "-d",
                 str(staging),
                 *requirements], f"fetching the wheels for Python {python}")
        names = sorted(path.name for path in staging.glob("*.whl"))
        for name in names:
            if not (wheels / name).exists():
                (staging / name).rename(wheels / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pack(folder: Path = PACK_DIR, pythons: Sequence[str] = PYTHONS) -> Packed:
    """The harness's Python dependencies as wheels for each of `pythons` (but what is left to the
    machine's Python) and the host-side Debian packages, in `folder`."""
    for python in pythons:
        if not re.fullmatch(r"3\.\d{1,2}", python):
            raise InputError(f"gpu-tier pack: --python {shown(python)}: not a Python version like "
                             "3.12")
    requirements, left = split_requirements(dependencies())
    if folder.exists():
        shutil.rmtree(folder)
    wheels, debs = folder / "wheels", folder / "debs"
    wheels.mkdir(parents=True)
    debs.mkdir()
    by_python = {python: fetch_wheels(requirements, python, wheels)
                 for python in dict.fromkeys(pythons)}
    checked(["apt-get", "download", *PACKAGES], "apt-get download (the Debian packages)", cwd=debs)
    glibc = max((glibc_of(name) for names in by_python.values() for name in names), default=(0, 0))
    packed = Packed(folder, by_python, left, "%d.%d" % glibc, sorted(p.name
                                                                     for p in debs.iterdir()),
                    size_of(folder))
    (folder / "pack.json").write_text(json.dumps(packed.to_dict(), indent=1) + "\n")
    if packed.size > LIMIT_BYTES:
        raise InputError(f"gpu-tier pack: {packed.size / 2**20:.1f} MiB packed, more than the "
                         f"{LIMIT_BYTES / 2**20:.0f} MiB that may travel with the working tree")
    return packed


def described(packed: Packed) -> str:
    """What `pack` says it packed: per Python, the Debian packages, what is left to the machine."""
    pythons = ", ".join(f"{python} ({len(names)} wheels, {packed.python_bytes(python) / 2**20:.1f} "
                        "MiB)"
                        for python, names in packed.pythons.items())
    left = ", ".join(f"{name}>={least}" if least else name for name,
                     least in packed.from_target.items())
    return (f"{packed.folder}: wheels for CPython {pythons}; {len(packed.debs)} Debian packages "
            f"({size_of(packed.folder / 'debs') / 2**20:.1f} MiB); {packed.size / 2**20:.1f} MiB "
            "in all; "
            f"left to the machine's Python: {left or 'nothing'}")

