"""Runtime recipes and their locks: what a shipped runtime is made of, read and checked.

- A recipe (harness/data/runtimes/NAME.toml) names a suite, an architecture and the packages.
- A lock (NAME.lock.json beside it) lists every package of the built root with its exact
  version, architecture and the .deb's SHA256, and the archive's date: the snapshot archive can
  serve exactly these files wherever it is reachable (the Nix layer fetches them from there).
The digest of a recipe and its lock names the built root in the cache (harness.runtimes.builds
builds it)."""
import datetime
import email.utils
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..core import places
from ..core.errors import InputError, parse_json, read_text, shown

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

RECIPES_DIR = places.DATA / "runtimes"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid", "fixture")
ARCHITECTURES = ("amd64", "i386", "arm64", "riscv64")
VARIANTS = ("minbase", "custom")
RECIPE_KEYS = {"suite", "architecture", "packages", "variant", "mirror", "trusted", "allow_expired",
               "description"}
LOCK_SCHEMA = "gpu-harness/runtime-lock/v1"
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Debian's package names, then Nix's (an image from dockerTools has no dpkg, only store entries).
FACT_PACKAGES = {"mesa": ("libgl1-mesa-dri", "libegl-mesa0", "mesa"), "libc": ("libc6", "glibc"),
                 "python": ("python3",)}


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    architecture: str
    packages: Tuple[str, ...]
    variant: str = "minbase"
    mirror: str = MIRROR
    trusted: bool = False  # a local test archive without a signature
    description: str = ""
    # Accept a Release file past its Valid-Until (signatures are still checked; the lock pins
    # versions and hashes anyway): a mirror can serve sid's metadata expired.
    allow_expired: bool = False

    @property
    def source(self) -> str:
        return str(RECIPES_DIR / f"{self.name}.toml")


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    architecture: str
    sha256: str
    # the .deb's path in the archive (pool/...), where the snapshot archive has it
    filename: str = ""


@dataclass(frozen=True)
class Lock:
    suite: str
    architecture: str
    archive_date: str
    packages: Tuple[LockedPackage, ...]

    @property
    def snapshot(self) -> str:
        """The snapshot archive's timestamp for the archive date
        (snapshot.debian.org/archive/debian/<it>/)."""
        try:
            when = email.utils.parsedate_to_datetime(self.archive_date)
        except (TypeError, ValueError):
            return ""
        return when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    def to_json(self, recipe: Recipe) -> str:
        data = {"schema": LOCK_SCHEMA, "recipe": recipe.name, "suite": self.suite,
                "architecture": self.architecture,
                "archive_date": self.archive_date, "snapshot": self.snapshot,
                "packages": [asdict(p) for p in self.packages]}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

def recipe_names(folder: Path = RECIPES_DIR) -> List[str]:
    return sorted(path.stem for path in folder.glob("*.toml"))


def load_recipe(name: str, folder: Path = RECIPES_DIR) -> Recipe:
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise InputError(f"runtime {shown(name)}: no recipe {path.name} (known: "
                         f"{', '.join(recipe_names(folder))})")
    try:
        data = tomllib.loads(read_text(path, "runtime recipe"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    return parse_recipe(name, data, str(path))


def parse_recipe(name: str, data: dict, where: str) -> Recipe:
    problems = [f"{where}: {key}: unknown key (known: {', '.join(sorted(RECIPE_KEYS))})"
                for key in sorted(set(data) - RECIPE_KEYS)]
    suite, arch = data.get("suite"), data.get("architecture", "amd64")
    if suite not in SUITES:
        problems.append(f"{where}: suite: {shown(suite)} is not a known Debian suite "
                        f"({', '.join(SUITES)})")
    if arch not in ARCHITECTURES:
        problems.append(f"{where}: architecture: {shown(arch)} is not one of "
                        f"{', '.join(ARCHITECTURES)}")
    packages = data.get("packages")
    if not isinstance(packages, list) or not packages or not all(isinstance(p, str)
                                                                 for p in packages):
        problems.append(f"{where}: packages: must be a non-empty list of package names")
        packages = []
    for package in packages:
        if not PACKAGE_NAME.match(package):
            problems.append(f"{where}: packages: {shown(package)} is not a Debian package name")
    variant, mirror = data.get("variant", "minbase"), data.get("mirror", MIRROR)
    if variant not in VARIANTS:
        problems.append(f"{where}: variant: {shown(variant)} is not one of {', '.join(VARIANTS)}")
    if not (isinstance(mirror, str) and re.match(r"^(https?|file)://\S+$", mirror)):
        problems.append(f"{where}: mirror: {shown(mirror)} is not an http(s) or file URL")
    trusted, allow_expired = data.get("trusted", False), data.get("allow_expired", False)
    description = data.get("description", "")
    if not isinstance(trusted, bool) or not isinstance(allow_expired,
                                                       bool) or not isinstance(description, str):
        problems.append(f"{where}: trusted and allow_expired must be true or false, description a "
                        "string")
    if problems:
        raise InputError(problems)
    return Recipe(name, str(suite), str(arch), tuple(packages), str(variant), str(mirror),
                  bool(trusted),
                  str(description), bool(allow_expired))


def lock_file(recipe: Recipe, folder: Path = RECIPES_DIR) -> Path:
    return folder / f"{recipe.name}.lock.json"


def load_lock(recipe: Recipe, folder: Path = RECIPES_DIR) -> Optional[Lock]:
    path = lock_file(recipe, folder)
    if not path.exists():
        return None
    data = parse_json(read_text(path, "runtime lock"), str(path))
    return parse_lock(recipe, data, str(path))


def parse_lock(recipe: Recipe, data: object, where: str) -> Lock:
    if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
        raise InputError(f"{where}: not a runtime lock (schema {LOCK_SCHEMA})")
    if data.get("architecture") != recipe.architecture or data.get("suite") != recipe.suite:
        raise InputError(f"{where}: locks "
                         f"{shown(data.get('suite'))}/{shown(data.get('architecture'))}, but the "
                         f"recipe is {recipe.suite}/{recipe.architecture}: run `gpu-harness "
                         f"runtimes lock {recipe.name}`")
    packages = []
    for index, entry in enumerate(data.get("packages") or []):
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("name",
                                                                                     "version",
                                                                                     "sha256"))
        if not ok or not re.match(r"^[0-9a-f]{64}$",
                                  entry["sha256"]) or not PACKAGE_NAME.match(entry["name"]):
            raise InputError(f"{where}: packages[{index}]: needs name, version, architecture and a "
                             "sha256 (64 hex)")
        if entry.get("architecture") not in (recipe.architecture, "all"):
            raise InputError(f"{where}: packages[{index}]: {entry['name']} is for "
                             f"{shown(entry.get('architecture'))}, "
                             f"not {recipe.architecture}")
        filename = entry.get("filename", "")
        if not isinstance(filename, str) or (filename and not re.match(r"^pool/[\w.+~%/-]+\.deb$",
                                                                       filename)):
            raise InputError(f"{where}: packages[{index}]: filename must be a pool/... .deb path")
        packages.append(LockedPackage(entry["name"], entry["version"], entry["architecture"],
                                      entry["sha256"],
                                      filename))
    if not packages:
        raise InputError(f"{where}: packages: the lock lists no package")
    return Lock(recipe.suite, recipe.architecture, str(data.get("archive_date", "")),
                tuple(packages))


def digest(recipe: Recipe, lock: Optional[Lock]) -> str:
    text = json.dumps([asdict(recipe), lock.to_json(recipe) if lock else None], sort_keys=True)
    return hashlib.sha256(f"gpu-harness-runtime-v1\0{text}".encode()).hexdigest()[:24]


def mirror_line(recipe: Recipe) -> str:
    options = "[trusted=yes] " if recipe.trusted else ""
    return f"deb {options}{recipe.mirror} {recipe.suite} main"


def upstream_version(version: str) -> str:
    return re.sub(r"^\d+:", "", version).split("-")[0].split("+")[0]


def component_versions(packages: Dict[str, Tuple[str, str]]) -> Dict[str, Optional[str]]:
    """Mesa, libc and python versions from a root's (or a lock's) packages."""
    found: Dict[str, Optional[str]] = {}
    for fact, names in FACT_PACKAGES.items():
        version = next((packages[n][0] for n in names if n in packages), None)
        found[fact] = upstream_version(version) if version else None
    return found


def facts_from_lock(name: str, root: str, folder: Path = RECIPES_DIR) -> Dict[str, Any]:
    """Facts of a runtime built elsewhere from its lock (the Nix layer): what the lock says."""
    recipe = load_recipe(name, folder)
    lock = load_lock(recipe, folder)
    packages = {p.name: (p.version, p.architecture) for p in lock.packages} if lock else {}
    facts: Dict[str, Any] = {"runtime": name, "suite": recipe.suite, "arch": recipe.architecture,
                             "built_by": root,
                             "lock_digest": digest(recipe, lock), "drift": [],
                             "packages": len(packages)}
    return {**facts, **component_versions(packages)}
