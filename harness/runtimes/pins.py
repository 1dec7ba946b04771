"""Source pins for the Nix layer: nix/pins/<name>.json, read by nix/pins.nix.

A pin is what a Nix fetcher needs and nothing else:
  {"fetcher": "git", "url": ".../mesa.git", "rev": "mesa-26.1.4", "hash": "sha256-...",
   "version": "26.1.4", "tag_prefix": "mesa-"}
  {"fetcher": "url", "url": "https://download.qemu.org/qemu-10.1.2.tar.xz", "hash": "sha256-...",
   "version": "10.1.2", "url_template": "https://download.qemu.org/qemu-{version}.tar.xz"}
"git" pins are fetched with fetchgit: the hash is the NAR hash of a clean checkout without
.git, which nix-prefetch-git prints (and `nix-hash --type sha256 DIR` of such a checkout gives).
"url" pins are fetched with fetchurl: the hash is the file's flat sha256.

`gpu-harness pins update [NAME] [--rev REV]` moves a git pin to REV, or to the newest tag
that starts with tag_prefix; `--version V` moves a url pin. Hashes come from nix-prefetch-git /
nix-prefetch-url where installed, else from git / a download plus nix-hash.
"""
import base64
import binascii
import hashlib
import json
import re
import shutil
import subprocess
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..core import places
from ..system import reaper
from ..core.errors import (ComponentError, InputError, bad_character, parse_json, read_text, shown,
                           shown_key)
from ..system.process import run_tracked

PINS_DIR = places.CHECKOUT / "nix" / "pins"
FETCH_TIMEOUT_S = 1800.0  # a git fetch of Mesa or a QEMU tarball on a slow link
FETCHERS = ("git", "url")
# A pin may instead follow a flake input: the package is that nixpkgs' own, unmodified (binary
# cache hits; Mesa's recipe is tied to its release, so its source cannot simply be swapped).
FLAKE_INPUTS = ("nixpkgs", "nixpkgs-old")
FOLLOWS_KEYS = ("follows", "source")
REQUIRED = ("fetcher", "url", "hash", "version")
OPTIONAL = ("rev", "tag_prefix", "url_template", "source")
SRI_SHA256 = re.compile(r"^sha256-[A-Za-z0-9+/]{43}=$")
VERSION_TAG = re.compile(r"^\d+(\.\d+)*$")


class PinError(ComponentError):
    """A pin could not be updated (fetch failed, no such rev); the message says why."""


@dataclass
class Pin:
    name: str
    fetcher: Optional[str] = None
    url: Optional[str] = None
    hash: Optional[str] = None
    version: Optional[str] = None
    follows: Optional[str] = None  # a flake input whose own package is used as is
    rev: Optional[str] = None
    tag_prefix: Optional[str] = None
    url_template: Optional[str] = None
    source: Optional[str] = None  # where the seeded values came from

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k != "name" and v is not None}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def parse_follows(name: str, data: dict, where: str) -> Pin:
    problems = [f"{where}: {shown_key(key)}: not with follows (known: {', '.join(FOLLOWS_KEYS)})"
                for key in sorted(set(data) - set(FOLLOWS_KEYS))]
    if data["follows"] not in FLAKE_INPUTS:
        problems.append(f"{where}: follows: {shown(data['follows'])} is not a flake input "
                        f"({', '.join(FLAKE_INPUTS)})")
    if "source" in data and not isinstance(data["source"], str):
        problems.append(f"{where}: source: must be a string, not {shown(data['source'])}")
    if problems:
        raise InputError(problems)
    return Pin(name=name, **data)


def parse(name: str, data: object, where: str) -> Pin:
    problems: List[str] = []
    if not isinstance(data, dict):
        raise InputError(f"{where}: a pin is a JSON object, not {shown(data)}")
    if "follows" in data:
        return parse_follows(name, data, where)
    for key in REQUIRED:
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(f"{where}: {key}: required, a non-empty string")
    for key in sorted(set(data) - set(REQUIRED) - set(OPTIONAL)):
        problems.append(f"{where}: {shown_key(key)}: unknown key (known: "
                        f"{', '.join(REQUIRED + OPTIONAL)})")
    for key in OPTIONAL:
        if key in data and not isinstance(data[key], str):
            problems.append(f"{where}: {key}: must be a string, not {shown(data[key])}")
    for key in REQUIRED + OPTIONAL:
        why = bad_character(data[key]) if isinstance(data.get(key), str) else None
        if why:  # the values become git and nix-prefetch arguments
            problems.append(f"{where}: {key}: {shown(data[key])} {why}")
    if not problems:
        if data["fetcher"] not in FETCHERS:
            problems.append(f"{where}: fetcher: {shown(data['fetcher'])} is not one of "
                            f"{', '.join(FETCHERS)}")
        if not SRI_SHA256.match(data["hash"]):
            problems.append(f"{where}: hash: {shown(data['hash'])} is not an SRI sha256 hash "
                            "(sha256-<base64>)")
        if data["fetcher"] == "git" and not data.get("rev"):
            problems.append(f"{where}: rev: required for a git pin (a tag or a commit)")
        if data["fetcher"] == "url" and data.get("url_template"):
            why = template_problem(data["url_template"])
            if why:
                problems.append(f"{where}: url_template: {why}")
    if problems:
        raise InputError(problems)
    return Pin(name=name, **data)


def template_problem(template: str) -> Optional[str]:
    if "{version}" not in template:
        return "must contain {version}"
    try:
        template.format(version="1")
    except (KeyError, IndexError, ValueError, AttributeError):
        return (f"{shown(template)} must have {{version}} as its only field ({{{{ and }}}} for "
                "braces)")
    return None


def load(path: Path) -> Pin:
    return parse(path.stem, parse_json(read_text(path, "pin file"), str(path)), str(path))


def load_all(pins_dir: Path = PINS_DIR) -> Dict[str, Pin]:
    return {path.stem: load(path) for path in sorted(pins_dir.glob("*.json"))}


def sri_from_base16(digest: str) -> str:
    try:
        raw = binascii.unhexlify(digest.strip())
    except binascii.Error:
        raise PinError(f"not a base16 sha256 digest: {digest.strip()!r}") from None
    return "sha256-" + base64.b64encode(raw).decode()


def run(argv: List[str], cwd: Optional[str] = None) -> str:
    try:
        done = run_tracked(argv, FETCH_TIMEOUT_S, cwd=cwd)
    except FileNotFoundError:
        raise PinError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise PinError(f"{' '.join(argv[:3])} ... did not finish within "
                       f"{FETCH_TIMEOUT_S:g} s") from None
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise PinError(f"{' '.join(argv[:3])} ... failed: {last}")
    return done.stdout.decode("utf-8", "replace")


def newest_tag(url: str, prefix: str) -> str:
    """The tag with the highest version among prefix<digits.dots> tags (release candidates
    skipped)."""
    tags = []
    for line in run(["git", "ls-remote", "--tags", "--refs", url]).splitlines():
        tag = line.split("refs/tags/", 1)[-1]
        if tag.startswith(prefix) and VERSION_TAG.match(tag[len(prefix):]):
            tags.append(tag)
    if not tags:
        raise PinError(f"{url} has no tag like {prefix}<version>")
    return max(tags, key=lambda t: tuple(int(p) for p in t[len(prefix):].split(".")))


def prefetch_git(url: str, rev: str) -> Tuple[str, str]:
    """(commit, SRI hash of a clean checkout without .git) for rev (a tag, branch or commit)."""
    if shutil.which("nix-prefetch-git"):
        info = json.loads(run(["nix-prefetch-git", "--quiet", "--url", url, "--rev", rev]))
        digest = info.get("hash") or info["sha256"]
        return info["rev"], digest if digest.startswith("sha256-") else sri_from_nix32(digest)
    with reaper.temp_dir("gh-pin-") as work:
        run(["git", "init", "-q", work])
        run(["git", "-C", work, "fetch", "-q", "--depth", "1", url, rev])
        run(["git", "-C", work, "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"])
        commit = run(["git", "-C", work, "rev-parse", "HEAD"]).strip()
        shutil.rmtree(Path(work) / ".git")
        return commit, sri_from_base16(run(["nix-hash", "--type", "sha256", work]))


def sri_from_nix32(digest: str) -> str:
    return sri_from_base16(run(["nix-hash", "--type", "sha256", "--to-base16", digest]))


def prefetch_url(url: str) -> str:
    """SRI hash of the file at url (flat sha256, what fetchurl checks)."""
    if shutil.which("nix-prefetch-url"):
        try:
            return sri_from_nix32(run(["nix-prefetch-url", "--type", "sha256",
                                       url]).strip().splitlines()[-1])
        except PinError:
            pass  # e.g. no writable Nix store: hash it here instead
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=600) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise PinError(f"cannot download {url}: {exc}") from None
    return "sha256-" + base64.b64encode(digest.digest()).decode()


@dataclass
class Change:
    name: str
    changed: Dict[str, Tuple[str, str]] = field(default_factory=dict)  # key -> (old, new)
    note: str = ""

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        if not self.changed:
            return f"{self.name}: unchanged"
        return f"{self.name}: " + ", ".join(f"{k} {old} -> {new}"
                                            for k, (old, new) in sorted(self.changed.items()))


def updated(pin: Pin, rev: Optional[str] = None, version: Optional[str] = None) -> Pin:
    new = Pin(**asdict(pin))
    assert pin.url is not None  # a fetch pin (parse requires it); follows pins are not fetched
    if pin.fetcher == "git":
        target = rev or (newest_tag(pin.url, pin.tag_prefix) if pin.tag_prefix else pin.rev)
        if not target:
            raise PinError(f"{pin.name}: no rev to fetch (give --rev, or a tag_prefix)")
        _, new.hash = prefetch_git(pin.url, target)
        new.rev = target
        if (pin.tag_prefix and target.startswith(pin.tag_prefix)
                and VERSION_TAG.match(target[len(pin.tag_prefix):])):
            new.version = target[len(pin.tag_prefix):]
    else:
        if rev:
            raise PinError(f"{pin.name}: --rev is for git pins; a url pin moves with --version")
        new.version = version or pin.version
        if pin.url_template:
            new.url = pin.url_template.format(version=new.version)
        elif version:
            raise PinError(f"{pin.name}: no url_template, so --version cannot move it")
        new.hash = prefetch_url(new.url or pin.url)
    new.source = ("gpu-harness pins update ("
                  f"{'nix-prefetch-git' if shutil.which('nix-prefetch-git') else 'git + nix-hash'}"
                  ")" if pin.fetcher == "git" else "gpu-harness pins update")
    return new


def update(path: Path, rev: Optional[str] = None, version: Optional[str] = None) -> Change:
    """Re-fetch one pin file and rewrite it; returns what changed (source excluded)."""
    pin = load(path)
    if pin.follows:
        if rev or version:
            raise PinError(f"{pin.name}: follows the flake input {pin.follows}; it has no rev or "
                           "version of its own")
        return Change(pin.name, note=f"follows the flake input {pin.follows}: move it with "
                                     f"`nix flake lock --update-input {pin.follows}`")
    new = updated(pin, rev, version)
    change = Change(pin.name)
    for key in ("url", "rev", "hash", "version"):
        if getattr(pin, key) != getattr(new, key):
            change.changed[key] = (str(getattr(pin, key)), str(getattr(new, key)))
    if change.changed:
        path.write_text(new.to_json())
    return change
