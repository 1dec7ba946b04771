"""Runtimes: pinned Debian root filesystems a workload runs in (the app's own Mesa and libc),
built from their recipes and locks (harness.runtimes.recipes) with mmdebstrap, cached by content.

- A build installs the locked versions and checks each downloaded .deb against its SHA256. The
  plain archive keeps only the newest version of a suite, so a lock drifts: where a locked
  version is gone the build takes the archive's, records each drift (package, locked, now) in
  the runtime's facts, and goes on; `strict` makes drift an error.

mmdebstrap is the builder: apt-based, so it resolves and verifies against the signed archive,
takes `package=version`, and builds a minbase root in well under a minute here (debootstrap
takes no versions and is slower). Built roots live in ~/.cache/gpu-harness/runtimes/<digest>:
the digest covers the recipe and the lock, a second run builds nothing, and a build becomes
visible only by one rename when it is complete. A runtime's image (a container image archive)
is cached beside them."""
import dataclasses
import datetime
import json
import os
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cache, glext, imagearchive, prepjournal
from ..system import reaper
from ..core.errors import ComponentError, InputError, ToolMissing
from ..scenario.model import Runtime
from ..system.process import Child
from .recipes import (RECIPES_DIR, Lock, LockedPackage, Recipe, component_versions, digest,
                      load_lock, load_recipe, lock_file, mirror_line, recipe_names)
from ..system import process
from ..core import log

LOG = log.get(__name__)

CACHE_DIR = cache.ROOT / "runtimes"
# Not needed to render: docs, manuals, translations (the runtimes stay small).
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*",
            "/usr/share/lintian/*")
NOT_FOUND = re.compile(r"Version '([^']+)' for '([^']+)' was not found")
UNKNOWN_PACKAGE = re.compile(r"Unable to locate package (\S+)")
BUILD_TIMEOUT_S = 1200.0
IMAGES_DIR = CACHE_DIR.parent / "images"
# bump when imagearchive.write's output changes: cached archives are keyed by it
IMAGE_FORMAT = "v2"


class RuntimeBuildError(ComponentError):
    """A runtime could not be built (archive unreachable, a .deb that does not match its lock)."""


class BuilderMissing(RuntimeBuildError, ToolMissing):
    """This machine lacks the program that builds runtimes: whatever needs one cannot run here
    (a Skip), which is not a failure of the runtime."""

    def __init__(self, tool: str, package: str):
        super().__init__(f"building a runtime needs {tool} (apt-get install {package})")
        self.tool = tool


@dataclass
class BuiltRuntime:
    name: str
    root: Path
    facts: Dict[str, Any] = field(default_factory=dict)

    @property
    def drift(self) -> List[str]:
        return list(self.facts.get("drift") or [])


def mmdebstrap_argv(recipe: Recipe, root: Path, includes: List[str], hashes: Path) -> List[str]:
    # Not --quiet: apt's "Version ... was not found" (a drifted lock) is only printed without it.
    argv = ["mmdebstrap", f"--variant={recipe.variant}", f"--architectures={recipe.architecture}",
            f"--include={','.join(includes)}", "--skip=essential/unlink",
            "--skip=cleanup/apt/cache",
            "--skip=cleanup/apt/lists"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED]
    if recipe.allow_expired:
        argv.append('--aptopt=Acquire::Check-Valid-Until "false"')
    # Record the SHA256 of every .deb apt fetched, then drop them: the lock is checked against
    # these.
    argv.append(f'--customize-hook=cd "$1/var/cache/apt/archives" && sha256sum -- *.deb > {hashes} '
                f'&& rm -f -- *.deb')
    return argv + [recipe.suite, str(root), mirror_line(recipe)]


def run_mmdebstrap(argv: List[str], log: Path) -> Tuple[int, str]:
    """The builder as a Child: its process group is known to the reaper, so a harness killed
    mid-build leaves no mmdebstrap (or apt, or dpkg) running."""
    end = Child(argv, dict(os.environ), str(log)).wait(BUILD_TIMEOUT_S)
    if end.timed_out:
        raise RuntimeBuildError(f"mmdebstrap did not finish within {BUILD_TIMEOUT_S:g} s")
    return (end.code if end.code is not None else 128 + (end.signal
                                                         or 0)), log.read_text(errors="replace")


def installed(root: Path) -> Dict[str, Tuple[str, str]]:
    """package -> (version, architecture) of what dpkg installed in the root; for an image
    runtime, whose root is its archive file, what the image's own files say (imagearchive)."""
    if root.is_file():
        try:
            return dict(imagearchive.read(str(root)).packages)
        except imagearchive.ImageArchiveError:
            return {}
    done = process.run_program(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                           "-f", "${Package}\t${Version}\t${Architecture}\n"], capture_output=True,
                               text=True)
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
            fields = dict(re.findall(r"^(Package|Version|Architecture|Filename): (.+)$", block,
                                     re.MULTILINE))
            if len(fields) == 4:
                table[f"{fields['Package']}/{fields['Version']}/"
                      f"{fields['Architecture']}"] = fields["Filename"]
    return table


def facts_of(recipe: Recipe, root: Path, packages: Dict[str, Tuple[str, str]], drift: List[str],
             lock_digest: str, built_s: float) -> Dict[str, object]:
    facts: Dict[str, object] = {"runtime": recipe.name, "suite": recipe.suite,
                                "arch": recipe.architecture,
                                "lock_digest": lock_digest, "drift": drift,
                                "build_s": round(built_s, 1),
                                "packages": len(packages),
                                "size_mb": round(cache.size_of(root) / 2**20)}
    return {**facts, **component_versions(packages)}


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
    lines += [f"{name}: not locked, now {version}" for name, (version,
                                                              _) in sorted(packages.items())
              if name not in locked_names]
    return lines


def check_hashes(lock: Lock, hashes: Dict[Tuple[str, str, str], str]) -> None:
    """Every .deb fetched at a locked version must be the locked file."""
    for locked in lock.packages:
        sha = hashes.get((locked.name, locked.version, locked.architecture))
        if sha is not None and sha != locked.sha256:
            raise RuntimeBuildError(f"{locked.name}_{locked.version}_{locked.architecture}.deb has "
                                    f"SHA256 {sha[:16]}..., "
                                    f"the lock says {locked.sha256[:16]}...")


def drift_error(recipe: Recipe, drift: List[str]) -> InputError:
    return InputError(f"runtime {recipe.name}: the lock has drifted ({len(drift)} packages, first: "
                      f"{drift[0]}); "
                      f"run `gpu-harness runtimes lock {recipe.name}`")


def bootstrap(recipe: Recipe, lock: Optional[Lock], work: Path,
              strict: bool = False) -> Tuple[Path, Dict[Tuple[str, str, str], str]]:
    """mmdebstrap the root, pinned to the lock's versions where the archive still has them."""
    if not shutil.which("mmdebstrap"):
        raise BuilderMissing("mmdebstrap", "mmdebstrap")
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
            raise drift_error(recipe, [f"{name}: locked {pins[name]}, now not in the archive"
                                       for name in gone])
        LOG.info(f"{recipe.name}: {len(gone)} locked versions are gone from the archive; taking "
                 "the archive's")
        for name in gone:
            pins.pop(name, None)
    raise RuntimeBuildError("mmdebstrap kept failing on versions the archive no longer has")


def build(recipe: Recipe, lock: Optional[Lock], strict: bool = False,
          cache_dir: Path = CACHE_DIR) -> BuiltRuntime:
    """The built root for this recipe and lock: from the cache, or built now (atomically)."""
    key = digest(recipe, lock)
    target = cache_dir / key
    found = from_cache(recipe.name, target)
    if found is None:
        # another process building it: wait, then take its build
        with cache.building(target) as waited:
            found = from_cache(recipe.name, target)
            if found is not None:
                prepjournal.note("runtime", recipe.name, waited, "waited")
            else:
                with prepjournal.timed("runtime", recipe.name):
                    return build_now(recipe, lock, strict, cache_dir, target)
    cache.mark_used(target)  # a run uses it (listing the runtimes does not)
    return found


def build_now(recipe: Recipe, lock: Optional[Lock], strict: bool, cache_dir: Path,
              target: Path) -> BuiltRuntime:
    """Build it into a partial folder of the cache, renamed to `target` once whole."""
    key = target.name
    started = time.monotonic()
    LOG.info(f"building runtime {recipe.name} ({recipe.suite}/{recipe.architecture}) with "
             "mmdebstrap")
    with reaper.temp_dir(f"{key}.partial-", parent=str(cache_dir)) as folder:
        work = Path(folder)
        cache.record_made(work, cache_dir.parent)  # a killed build's partial is known to be a run's
        root, hashes = bootstrap(recipe, lock, work, strict)
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
            cache.record_made(target, cache_dir.parent)
        except OSError:
            if not (target / "facts.json").exists():  # a parallel build of the same digest won
                raise
    LOG.info(f"built runtime {recipe.name} in {time.monotonic() - started:.0f} s, "
             f"{facts['size_mb']} MB")
    return BuiltRuntime(recipe.name, target / "root", facts)


def lock(recipe: Recipe, folder: Path = RECIPES_DIR, cache_dir: Path = CACHE_DIR) -> Lock:
    """Build from the recipe alone (the archive as it is now) and write what it installed."""
    built = build(recipe, None, cache_dir=cache_dir)
    hashes = json.loads((built.root.parent / "hashes.json").read_text())
    filenames = json.loads((built.root.parent / "filenames.json").read_text())
    packages = []
    for name, (version, arch) in sorted(installed(built.root).items()):
        sha = hashes.get(f"{name}/{version}/{arch}")
        if sha is None:
            raise RuntimeBuildError(f"no .deb hash recorded for {name} {version} {arch}")
        packages.append(LockedPackage(name, version, arch, sha,
                                      filenames.get(f"{name}/{version}/{arch}", "")))
    date = (archive_date(recipe)
            or datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC"))
    new = Lock(recipe.suite, recipe.architecture, date, tuple(packages))
    lock_file(recipe, folder).write_text(new.to_json(recipe))
    # That build is exactly what the lock describes: keep it under the lock's digest.
    locked_target = cache_dir / digest(recipe, new)
    if not locked_target.exists():
        facts = dict(built.facts, lock_digest=locked_target.name)
        (built.root.parent / "facts.json").write_text(json.dumps(facts, indent=1,
                                                                 sort_keys=True) + "\n")
        os.rename(built.root.parent, locked_target)
        cache.record_made(locked_target, cache_dir.parent)
    return new


def derived(recipe: Recipe, extra_packages: Sequence[str]) -> Recipe:
    """The recipe with a workload's packages besides its own: the base lock still pins what both
    have, the extras come from the archive at build time (their versions are in the facts)."""
    if not extra_packages:
        return recipe
    return dataclasses.replace(recipe, name="+".join((recipe.name, *extra_packages)),
                               packages=tuple(dict.fromkeys((*recipe.packages, *extra_packages))))


def ensure(name: str, strict: bool = False, folder: Path = RECIPES_DIR,
           extra_packages: Sequence[str] = ()) -> BuiltRuntime:
    recipe = load_recipe(name, folder)
    return build(derived(recipe, extra_packages), load_lock(recipe, folder), strict=strict
                 and not extra_packages)


def is_cached(runtime: Runtime) -> bool:
    """Whether a run would find this runtime (or the image made from it) made already."""
    if runtime.image_from_recipe:
        return image_archive_path(runtime.recipe, extra_packages=runtime.extra_packages).exists()
    return bool(runtime.recipe) and cached(runtime.recipe,
                                           extra_packages=runtime.extra_packages) is not None


def cached(name: str, folder: Path = RECIPES_DIR,
           extra_packages: Sequence[str] = ()) -> Optional[BuiltRuntime]:
    """The built runtime if it is in the cache (nothing is built)."""
    recipe = load_recipe(name, folder)
    return from_cache(name, CACHE_DIR / digest(derived(recipe, extra_packages), load_lock(recipe,
                                                                                          folder)))


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


def image_archive_path(name: str, folder: Path = RECIPES_DIR,
                       extra_packages: Sequence[str] = ()) -> Path:
    """Where the image made from runtime `name` is cached: keyed by its recipe and lock."""
    base = load_recipe(name, folder)
    recipe = derived(base, extra_packages)
    return (IMAGES_DIR
            / f"{recipe.name}-{digest(recipe, load_lock(base, folder))}-{IMAGE_FORMAT}.tar.gz")


def write_image(name: str, out: Path, folder: Path = RECIPES_DIR,
                extra_packages: Sequence[str] = ()) -> imagearchive.ImageInfo:
    """The image of runtime `name` (built if it is not yet) as a docker-archive at `out`."""
    built = ensure(name, folder=folder, extra_packages=extra_packages)
    recipe = derived(load_recipe(name, folder), extra_packages)
    started = time.monotonic()
    try:
        imagearchive.write(built.root, out, image_spec(recipe, str(built.facts.get("lock_digest",
                                                                                   ""))))
    except OSError as exc:
        raise RuntimeBuildError(f"cannot write {out}: {exc.strerror or exc}") from None
    except imagearchive.ImageArchiveError as exc:
        raise RuntimeBuildError(str(exc)) from None
    LOG.info(f"wrote the image of {name} to {out} in {time.monotonic() - started:.1f} s")
    return imagearchive.read(str(out))


def image_archive(name: str, extra_packages: Sequence[str] = ()) -> Path:
    """The cached image of runtime `name` (with a workload's extra packages), made now if it is
    not there (once, however many scenarios ask at the same time)."""
    target = image_archive_path(name, extra_packages=extra_packages)
    if not target.exists():
        with cache.building(target) as waited:  # once, however many threads and processes ask
            if target.exists():
                prepjournal.note("image", target.name, waited, "waited")
            else:
                with prepjournal.timed("image", target.name):
                    write_image(name, target, extra_packages=extra_packages)
    cache.mark_used(target)
    return target


def current() -> cache.Current:
    """What the shipped recipes, locks and GL split make now: the cache's entries no run of this
    checkout can use are the others."""
    digests = set()
    for name in recipe_names():
        try:
            recipe = load_recipe(name)
            digests.add(digest(recipe, load_lock(recipe)))
        # a recipe unread makes nothing current: never a reason to remove
        except (InputError, OSError, ValueError):
            return cache.Current()
    return cache.Current(frozenset(digests), IMAGE_FORMAT, glext.layout_digest())
