"""Runtimes: pinned Debian root filesystems a workload runs in (the app's own Mesa and libc),
declared once as recipes, pinned by locks, built with mmdebstrap and cached by content.

- A recipe (harness/data/runtimes/NAME.toml) names a suite, an architecture and the packages.
- A lock (NAME.lock.json beside it) lists every package of the built root with its exact
  version, architecture and the .deb's SHA256, and the archive's date: the snapshot archive can
  serve exactly these files wherever it is reachable (the Nix layer fetches them from there).
- A build installs the locked versions and checks each downloaded .deb against its SHA256. The
  plain archive keeps only the newest version of a suite, so a lock drifts: where a locked
  version is gone the build takes the archive's, records each drift (package, locked, now) in
  the runtime's facts, and goes on; `strict` makes drift an error.

mmdebstrap is the builder: apt-based, so it resolves and verifies against the signed archive,
takes `package=version`, and builds a minbase root in well under a minute here (debootstrap
takes no versions and is slower). Built roots live in ~/.cache/gpu-harness/runtimes/<digest>:
the digest covers the recipe and the lock, a second run builds nothing, and a build becomes
visible only by one rename when it is complete."""
import datetime
import email.utils
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import cache, imagearchive, model, reaper
from .errors import InputError, parse_json, read_text, shown
from .process import Child

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

RECIPES_DIR = Path(__file__).parent / "data" / "runtimes"
CACHE_DIR = cache.ROOT / "runtimes"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid", "fixture")
ARCHITECTURES = ("amd64", "i386", "arm64")
VARIANTS = ("minbase", "custom")
RECIPE_KEYS = {"suite", "architecture", "packages", "variant", "mirror", "trusted", "allow_expired", "description"}
LOCK_SCHEMA = "gpu-harness/runtime-lock/v1"
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Not needed to render: docs, manuals, translations (the runtimes stay small).
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*",
            "/usr/share/lintian/*")
NOT_FOUND = re.compile(r"Version '([^']+)' for '([^']+)' was not found")
UNKNOWN_PACKAGE = re.compile(r"Unable to locate package (\S+)")
BUILD_TIMEOUT_S = 1200.0
# Debian's package names, then Nix's (an image from dockerTools has no dpkg, only store entries).
FACT_PACKAGES = {"mesa": ("libgl1-mesa-dri", "libegl-mesa0", "mesa"), "libc": ("libc6", "glibc"),
                 "python": ("python3",)}
IMAGE_KIND = model.IMAGE_KIND
IMAGES_DIR = CACHE_DIR.parent / "images"
IMAGE_FORMAT = "v1"  # bump when imagearchive.write's output changes: cached archives are keyed by it


class RuntimeBuildError(Exception):
    """A runtime could not be built (archive unreachable, a .deb that does not match its lock)."""


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
    filename: str = ""  # the .deb's path in the archive (pool/...), where the snapshot archive has it


@dataclass(frozen=True)
class Lock:
    suite: str
    architecture: str
    archive_date: str
    packages: Tuple[LockedPackage, ...]

    @property
    def snapshot(self) -> str:
        """The snapshot archive's timestamp for the archive date (snapshot.debian.org/archive/debian/<it>/)."""
        try:
            when = email.utils.parsedate_to_datetime(self.archive_date)
        except (TypeError, ValueError):
            return ""
        return when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    def to_json(self, recipe: Recipe) -> str:
        data = {"schema": LOCK_SCHEMA, "recipe": recipe.name, "suite": self.suite, "architecture": self.architecture,
                "archive_date": self.archive_date, "snapshot": self.snapshot,
                "packages": [asdict(p) for p in self.packages]}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


@dataclass
class BuiltRuntime:
    name: str
    root: Path
    facts: Dict[str, Any] = field(default_factory=dict)

    @property
    def drift(self) -> List[str]:
        return list(self.facts.get("drift") or [])


def recipe_names(folder: Path = RECIPES_DIR) -> List[str]:
    return sorted(path.stem for path in folder.glob("*.toml"))


def load_recipe(name: str, folder: Path = RECIPES_DIR) -> Recipe:
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise InputError(f"runtime {shown(name)}: no recipe {path.name} (known: {', '.join(recipe_names(folder))})")
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
        problems.append(f"{where}: suite: {shown(suite)} is not a known Debian suite ({', '.join(SUITES)})")
    if arch not in ARCHITECTURES:
        problems.append(f"{where}: architecture: {shown(arch)} is not one of {', '.join(ARCHITECTURES)}")
    packages = data.get("packages")
    if not isinstance(packages, list) or not packages or not all(isinstance(p, str) for p in packages):
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
    if not isinstance(trusted, bool) or not isinstance(allow_expired, bool) or not isinstance(description, str):
        problems.append(f"{where}: trusted and allow_expired must be true or false, description a string")
    if problems:
        raise InputError(problems)
    return Recipe(name, str(suite), str(arch), tuple(packages), str(variant), str(mirror), bool(trusted),
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
        raise InputError(f"{where}: locks {shown(data.get('suite'))}/{shown(data.get('architecture'))}, but the "
                         f"recipe is {recipe.suite}/{recipe.architecture}: run `gpu-harness runtimes lock {recipe.name}`")
    packages = []
    for index, entry in enumerate(data.get("packages") or []):
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("name", "version", "sha256"))
        if not ok or not re.match(r"^[0-9a-f]{64}$", entry["sha256"]) or not PACKAGE_NAME.match(entry["name"]):
            raise InputError(f"{where}: packages[{index}]: needs name, version, architecture and a sha256 (64 hex)")
        if entry.get("architecture") not in (recipe.architecture, "all"):
            raise InputError(f"{where}: packages[{index}]: {entry['name']} is for {shown(entry.get('architecture'))}, "
                             f"not {recipe.architecture}")
        filename = entry.get("filename", "")
        if not isinstance(filename, str) or (filename and not re.match(r"^pool/[\w.+~%/-]+\.deb$", filename)):
            raise InputError(f"{where}: packages[{index}]: filename must be a pool/... .deb path")
        packages.append(LockedPackage(entry["name"], entry["version"], entry["architecture"], entry["sha256"],
                                      filename))
    if not packages:
        raise InputError(f"{where}: packages: the lock lists no package")
    return Lock(recipe.suite, recipe.architecture, str(data.get("archive_date", "")), tuple(packages))


def digest(recipe: Recipe, lock: Optional[Lock]) -> str:
    text = json.dumps([asdict(recipe), lock.to_json(recipe) if lock else None], sort_keys=True)
    return hashlib.sha256(f"gpu-harness-runtime-v1\0{text}".encode()).hexdigest()[:24]


def mirror_line(recipe: Recipe) -> str:
    options = "[trusted=yes] " if recipe.trusted else ""
    return f"deb {options}{recipe.mirror} {recipe.suite} main"


def mmdebstrap_argv(recipe: Recipe, root: Path, includes: List[str], hashes: Path) -> List[str]:
    # Not --quiet: apt's "Version ... was not found" (a drifted lock) is only printed without it.
    argv = ["mmdebstrap", f"--variant={recipe.variant}", f"--architectures={recipe.architecture}",
            f"--include={','.join(includes)}", "--skip=essential/unlink", "--skip=cleanup/apt/cache",
            "--skip=cleanup/apt/lists"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED]
    if recipe.allow_expired:
        argv.append('--aptopt=Acquire::Check-Valid-Until "false"')
    # Record the SHA256 of every .deb apt fetched, then drop them: the lock is checked against these.
    argv.append(f'--customize-hook=cd "$1/var/cache/apt/archives" && sha256sum -- *.deb > {hashes} '
                f'&& rm -f -- *.deb')
    return argv + [recipe.suite, str(root), mirror_line(recipe)]


def run_mmdebstrap(argv: List[str], log: Path) -> Tuple[int, str]:
    """The builder as a Child: its process group is known to the reaper, so a harness killed
    mid-build leaves no mmdebstrap (or apt, or dpkg) running."""
    end = Child(argv, dict(os.environ), str(log)).wait(BUILD_TIMEOUT_S)
    if end.timed_out:
        raise RuntimeBuildError(f"mmdebstrap did not finish within {BUILD_TIMEOUT_S:g} s")
    return (end.code if end.code is not None else 128 + (end.signal or 0)), log.read_text(errors="replace")


def installed(root: Path) -> Dict[str, Tuple[str, str]]:
    """package -> (version, architecture) of what dpkg installed in the root; for an image
    runtime, whose root is its archive file, what the image's own files say (imagearchive)."""
    if root.is_file():
        try:
            return dict(imagearchive.read(str(root)).packages)
        except imagearchive.ImageArchiveError:
            return {}
    done = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                           "-f", "${Package}\t${Version}\t${Architecture}\n"], capture_output=True, text=True)
    table = {}
    for line in done.stdout.splitlines():
        name, version, arch = line.split("\t")
        table[name] = (version, arch)
    return table


def deb_hashes(hashes: Path) -> Dict[Tuple[str, str, str], str]:
    """(package, version, architecture) -> SHA256, from `sha256sum *.deb` over apt's archive
    (apt names a file NAME_VERSION_ARCH.deb, the epoch's ':' written as %3a)."""
    table = {}
    for line in hashes.read_text().splitlines() if hashes.exists() else []:
        sha, _, filename = line.partition("  ")
        parts = filename.removesuffix(".deb").split("_")
        if len(parts) == 3:
            table[(parts[0], parts[1].replace("%3a", ":"), parts[2])] = sha
    return table


def archive_filenames(root: Path) -> Dict[str, str]:
    """"name/version/arch" -> Filename (pool/...), from the archive indexes apt left in the root."""
    table: Dict[str, str] = {}
    for index in (root / "var/lib/apt/lists").glob("*_Packages"):
        for block in index.read_text(errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|Architecture|Filename): (.+)$", block, re.MULTILINE))
            if len(fields) == 4:
                table[f"{fields['Package']}/{fields['Version']}/{fields['Architecture']}"] = fields["Filename"]
    return table


def upstream_version(version: str) -> str:
    return re.sub(r"^\d+:", "", version).split("-")[0].split("+")[0]


def facts_of(recipe: Recipe, root: Path, packages: Dict[str, Tuple[str, str]], drift: List[str],
             lock_digest: str, built_s: float) -> Dict[str, object]:
    facts: Dict[str, object] = {"runtime": recipe.name, "suite": recipe.suite, "arch": recipe.architecture,
                                "lock_digest": lock_digest, "drift": drift, "build_s": round(built_s, 1),
                                "packages": len(packages), "size_mb": round(cache.size_of(root) / 2**20)}
    return {**facts, **component_versions(packages)}


def component_versions(packages: Dict[str, Tuple[str, str]]) -> Dict[str, Optional[str]]:
    """Mesa, libc and python versions from a root's (or a lock's) packages."""
    found: Dict[str, Optional[str]] = {}
    for fact, names in FACT_PACKAGES.items():
        version = next((packages[n][0] for n in names if n in packages), None)
        found[fact] = upstream_version(version) if version else None
    return found


def archive_date(recipe: Recipe) -> str:
    """The Release file's Date: where the snapshot archive has exactly these packages."""
    url = f"{recipe.mirror}/dists/{recipe.suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read(65536).decode(errors="replace")
    except (OSError, ValueError):
        return ""
    match = re.search(r"^Date: (.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def drift_of(lock: Lock, packages: Dict[str, Tuple[str, str]]) -> List[str]:
    lines = []
    for locked in lock.packages:
        now = packages.get(locked.name, ("(not installed)", ""))[0]
        if now != locked.version:
            lines.append(f"{locked.name}: locked {locked.version}, now {now}")
    locked_names = {p.name for p in lock.packages}
    lines += [f"{name}: not locked, now {version}" for name, (version, _) in sorted(packages.items())
              if name not in locked_names]
    return lines


def check_hashes(lock: Lock, hashes: Dict[Tuple[str, str, str], str]) -> None:
    """Every .deb fetched at a locked version must be the locked file."""
    for locked in lock.packages:
        sha = hashes.get((locked.name, locked.version, locked.architecture))
        if sha is not None and sha != locked.sha256:
            raise RuntimeBuildError(f"{locked.name}_{locked.version}_{locked.architecture}.deb has SHA256 {sha[:16]}..., "
                                    f"the lock says {locked.sha256[:16]}...")


def drift_error(recipe: Recipe, drift: List[str]) -> InputError:
    return InputError(f"runtime {recipe.name}: the lock has drifted ({len(drift)} packages, first: {drift[0]}); "
                      f"run `gpu-harness runtimes lock {recipe.name}`")


def bootstrap(recipe: Recipe, lock: Optional[Lock], work: Path, say: Callable[[str], None],
              strict: bool = False) -> Tuple[Path, Dict[Tuple[str, str, str], str]]:
    """mmdebstrap the root, pinned to the lock's versions where the archive still has them."""
    if not shutil.which("mmdebstrap"):
        raise RuntimeBuildError("building a runtime needs mmdebstrap (apt-get install mmdebstrap)")
    pins = {p.name: p.version for p in lock.packages} if lock else {}
    wanted = sorted(set(recipe.packages) | set(pins))
    for _ in range(3):
        root, hashes, log = work / "root", work / "debs.sha256", work / "mmdebstrap.log"
        shutil.rmtree(root, ignore_errors=True)
        includes = [f"{name}={pins[name]}" if name in pins else name for name in wanted]
        code, output = run_mmdebstrap(mmdebstrap_argv(recipe, root, includes, hashes), log)
        if code == 0:
            return root, deb_hashes(hashes)
        gone = [name for _, name in NOT_FOUND.findall(output)]
        unknown = UNKNOWN_PACKAGE.findall(output)
        if unknown and not gone:
            raise InputError(f"{recipe.source}: packages: {', '.join(sorted(set(unknown)))} not in "
                             f"{recipe.suite}/{recipe.architecture}")
        if not gone:
            tail = " | ".join(line.strip() for line in output.splitlines()[-3:] if line.strip())
            raise RuntimeBuildError(f"mmdebstrap failed (exit {code}): {tail}")
        if strict:  # no need to build what would be refused
            raise drift_error(recipe, [f"{name}: locked {pins[name]}, now not in the archive" for name in gone])
        say(f"{recipe.name}: {len(gone)} locked versions are gone from the archive; taking the archive's")
        for name in gone:
            pins.pop(name, None)
    raise RuntimeBuildError("mmdebstrap kept failing on versions the archive no longer has")


def build(recipe: Recipe, lock: Optional[Lock], strict: bool = False, cache_dir: Path = CACHE_DIR,
          say: Callable[[str], None] = lambda text: None) -> BuiltRuntime:
    """The built root for this recipe and lock: from the cache, or built now (atomically)."""
    key = digest(recipe, lock)
    target = cache_dir / key
    found = from_cache(recipe.name, target)
    if found is not None:
        cache.mark_used(target)  # a run uses it (listing the runtimes does not)
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"building runtime {recipe.name} ({recipe.suite}/{recipe.architecture}) with mmdebstrap")
    with reaper.temp_dir(f"{key}.partial-", parent=str(cache_dir)) as folder:
        work = Path(folder)
        root, hashes = bootstrap(recipe, lock, work, say, strict)
        packages = installed(root)
        if lock:
            check_hashes(lock, hashes)
        drift = drift_of(lock, packages) if lock else []
        if drift and strict:
            raise drift_error(recipe, drift)
        (work / "filenames.json").write_text(json.dumps(archive_filenames(root)))
        for leftover in ("var/lib/apt/lists", "var/cache/apt"):
            shutil.rmtree(root / leftover, ignore_errors=True)
        facts = facts_of(recipe, root, packages, drift, key, time.monotonic() - started)
        (work / "hashes.json").write_text(json.dumps({"/".join(k): v for k, v in hashes.items()}))
        (work / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        try:
            os.rename(work, target)  # the one step that makes the runtime visible
        except OSError:
            if not (target / "facts.json").exists():  # a parallel build of the same digest won
                raise
    say(f"built runtime {recipe.name} in {time.monotonic() - started:.0f} s, {facts['size_mb']} MB")
    return BuiltRuntime(recipe.name, target / "root", facts)


def lock(recipe: Recipe, folder: Path = RECIPES_DIR, cache_dir: Path = CACHE_DIR,
         say: Callable[[str], None] = lambda text: None) -> Lock:
    """Build from the recipe alone (the archive as it is now) and write what it installed."""
    built = build(recipe, None, cache_dir=cache_dir, say=say)
    hashes = json.loads((built.root.parent / "hashes.json").read_text())
    filenames = json.loads((built.root.parent / "filenames.json").read_text())
    packages = []
    for name, (version, arch) in sorted(installed(built.root).items()):
        sha = hashes.get(f"{name}/{version}/{arch}")
        if sha is None:
            raise RuntimeBuildError(f"no .deb hash recorded for {name} {version} {arch}")
        packages.append(LockedPackage(name, version, arch, sha, filenames.get(f"{name}/{version}/{arch}", "")))
    date = archive_date(recipe) or datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")
    new = Lock(recipe.suite, recipe.architecture, date, tuple(packages))
    lock_file(recipe, folder).write_text(new.to_json(recipe))
    # That build is exactly what the lock describes: keep it under the lock's digest.
    locked_target = cache_dir / digest(recipe, new)
    if not locked_target.exists():
        facts = dict(built.facts, lock_digest=locked_target.name)
        (built.root.parent / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        os.rename(built.root.parent, locked_target)
    return new


def ensure(name: str, strict: bool = False, folder: Path = RECIPES_DIR,
           say: Callable[[str], None] = lambda text: None) -> BuiltRuntime:
    recipe = load_recipe(name, folder)
    return build(recipe, load_lock(recipe, folder), strict=strict, say=say)


def facts_from_lock(name: str, root: str, folder: Path = RECIPES_DIR) -> Dict[str, Any]:
    """Facts of a runtime built elsewhere from its lock (the Nix layer): what the lock says."""
    recipe = load_recipe(name, folder)
    lock = load_lock(recipe, folder)
    packages = {p.name: (p.version, p.architecture) for p in lock.packages} if lock else {}
    facts: Dict[str, Any] = {"runtime": name, "suite": recipe.suite, "arch": recipe.architecture, "built_by": root,
                             "lock_digest": digest(recipe, lock), "drift": [], "packages": len(packages)}
    return {**facts, **component_versions(packages)}


def cached(name: str, folder: Path = RECIPES_DIR) -> Optional[BuiltRuntime]:
    """The built runtime if it is in the cache (nothing is built)."""
    recipe = load_recipe(name, folder)
    return from_cache(name, CACHE_DIR / digest(recipe, load_lock(recipe, folder)))


def from_cache(name: str, target: Path) -> Optional[BuiltRuntime]:
    """A complete build in the cache (its facts are written last), or None."""
    facts = target / "facts.json"
    if not facts.exists():
        return None
    return BuiltRuntime(name, target / "root", json.loads(facts.read_text()))


def image_spec(recipe: Recipe, lock_digest: str) -> imagearchive.ImageSpec:
    """What the image of a runtime says about itself: its name and lock, its python as Cmd."""
    return imagearchive.ImageSpec(tag=f"localhost/gpu-harness/{recipe.name}:{lock_digest[:12]}",
                                  architecture=recipe.architecture, cmd=("/usr/bin/python3",),
                                  labels=(("org.gpu-harness.runtime", recipe.name),
                                          ("org.gpu-harness.lock-digest", lock_digest)),
                                  created_by=f"gpu-harness runtimes image {recipe.name}")


def image_archive_path(name: str, folder: Path = RECIPES_DIR) -> Path:
    """Where the image made from runtime `name` is cached: keyed by its recipe and lock."""
    recipe = load_recipe(name, folder)
    return IMAGES_DIR / f"{recipe.name}-{digest(recipe, load_lock(recipe, folder))}-{IMAGE_FORMAT}.tar.gz"


def write_image(name: str, out: Path, say: Callable[[str], None] = lambda text: None,
                folder: Path = RECIPES_DIR) -> imagearchive.ImageInfo:
    """The image of runtime `name` (built if it is not yet) as a docker-archive at `out`."""
    built = ensure(name, folder=folder, say=say)
    recipe = load_recipe(name, folder)
    started = time.monotonic()
    try:
        imagearchive.write(built.root, out, image_spec(recipe, str(built.facts.get("lock_digest", ""))))
    except OSError as exc:
        raise RuntimeBuildError(f"cannot write {out}: {exc.strerror or exc}") from None
    except imagearchive.ImageArchiveError as exc:
        raise RuntimeBuildError(str(exc)) from None
    say(f"wrote the image of {name} to {out} in {time.monotonic() - started:.1f} s")
    return imagearchive.read(str(out))


_image_locks: Dict[str, threading.Lock] = {}
_image_locks_lock = threading.Lock()


def image_archive(name: str, say: Callable[[str], None] = lambda text: None) -> Path:
    """The cached image of runtime `name`, made now if it is not there (once, however many
    scenarios ask at the same time)."""
    target = image_archive_path(name)
    with _image_locks_lock:
        lock = _image_locks.setdefault(str(target), threading.Lock())
    with lock:
        if not target.exists():
            write_image(name, target, say)
    cache.mark_used(target)
    return target
