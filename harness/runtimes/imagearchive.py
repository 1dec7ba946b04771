"""Container image archives as files: a docker-archive (`podman save`, Nix's
dockerTools.buildLayeredImage) or an OCI archive, plain or gzip-compressed (told by its magic
bytes, not its name).

Read without podman: the image's id (the digest of its config, as podman names a loaded image),
its Entrypoint, Cmd and Env, and what it has installed, from its own files: dpkg's database
(`var/lib/dpkg/status` of the last layer that has one) and the Nix store's entries
(`nix/store/<hash>-<name>-<version>`), as the runtimes' facts are read. And written from a
runtime's tree without podman: one layer (GNU tar of the tree), a config and manifest.json, as
dockerTools does, so making an image changes nothing outside the output file."""
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Dict, List, Optional, Set, Tuple, Union

from . import cache
from ..core.errors import ComponentError, cut, shown
from ..scenario.model import GUEST_KERNEL_PARTS

GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC_AT = 257  # "ustar" in a tar header
# members up to this size are kept in memory: manifests, configs (a small layer is scanned later)
SMALL = 4 << 20
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_WHITEOUT = "var/lib/dpkg/.wh.status"
NIX_ENTRY = re.compile(r"^nix/store/[0-9a-z]{32}-([^/]+)")
# pname-version: the version begins at the first "-<digit>"
NIX_NAME = re.compile(r"^(.+?)-(\d[^/]*)$")
Packages = Dict[str, Tuple[str, str]]  # name -> (version, architecture, or "nix" for a store entry)


class ImageArchiveError(ComponentError):
    """The file is not an image archive this harness can read; the message says why, in one line."""


@dataclass(frozen=True)
class ImageInfo:
    id: str  # sha256 of the config, hex: the id podman gives the loaded image
    format: str  # docker-archive | oci-archive
    compression: str  # gzip | none
    entrypoint: Tuple[str, ...] = ()
    cmd: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    architecture: str = ""
    tags: Tuple[str, ...] = ()
    packages: Packages = field(default_factory=dict, compare=False)

    @property
    def env_names(self) -> Set[str]:
        return {name for name, _ in self.env}


@dataclass
class LayerFacts:
    status: Optional[bytes] = None  # dpkg's status file, if this layer has one
    status_deleted: bool = False  # a whiteout of it
    nix: Set[str] = field(default_factory=set)  # store entry names (<name>-<version>)


def compression(path: str) -> str:
    with open(path, "rb") as handle:
        return "gzip" if handle.read(2) == GZIP_MAGIC else "none"


def problem(path: str) -> Optional[str]:
    """Why `path` cannot be an image archive (cheap: its first tar header only), or None."""
    if not os.path.isabs(path):
        return f"must be an absolute path, not {shown(path)}"
    if not os.path.exists(path):
        return f"{cut(path)} does not exist"
    if not os.path.isfile(path):
        return f"{cut(path)} is not a file"
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            head = gzip.GzipFile(fileobj=raw).read(512) if compressed else raw.read(512)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return f"{cut(path)}: cannot read it: {getattr(exc, 'strerror', None) or exc}"
    if head[TAR_MAGIC_AT:TAR_MAGIC_AT + 5] != b"ustar":
        what = "a gzip file, but not of a tar archive" if compressed else ("neither a tar archive "
                                                                           "nor gzip-compressed")
        return f"{cut(path)} is {what} (a docker-archive or OCI archive is a tar file)"
    return None


def normal(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def scan_layer(stream: IO[bytes]) -> LayerFacts:
    """What one layer (a tar stream, compressed or not) holds that the facts need."""
    facts = LayerFacts()
    with tarfile.open(fileobj=stream, mode="r|*") as layer:
        for member in layer:
            name = normal(member.name)
            entry = NIX_ENTRY.match(name)
            if entry:
                facts.nix.add(entry.group(1))
            elif name == DPKG_STATUS and member.isfile():
                extracted = layer.extractfile(member)
                facts.status = extracted.read() if extracted else None
            elif name == DPKG_WHITEOUT:
                facts.status_deleted = True
    return facts


def scan(path: str) -> Tuple[Dict[str, bytes], Dict[str, LayerFacts]]:
    """One pass over the archive: small members kept, every large one scanned as a layer."""
    small: Dict[str, bytes] = {}
    layers: Dict[str, LayerFacts] = {}
    with tarfile.open(path, mode="r|*") as outer:
        for member in outer:
            if not member.isfile():
                continue
            stream = outer.extractfile(member)
            if stream is None:
                continue
            if member.size <= SMALL:
                small[normal(member.name)] = stream.read()
            else:
                layers[normal(member.name)] = scan_layer(stream)
    return small, layers


def parsed(small: Dict[str, bytes], name: str) -> object:
    if name not in small:
        raise ImageArchiveError(f"names {name}, which it does not hold")
    try:
        return json.loads(small[name])
    except ValueError:
        raise ImageArchiveError(f"{name} is not JSON") from None


def blob(digest: object) -> str:
    if not (isinstance(digest, str) and re.match(r"^sha256:[0-9a-f]{64}$", digest)):
        raise ImageArchiveError(f"bad digest {str(digest)[:80]!r}")
    return f"blobs/sha256/{digest[len('sha256:'):]}"


def first(value: object, what: str) -> dict:
    if not (isinstance(value, list) and value and isinstance(value[0], dict)):
        raise ImageArchiveError(f"{what} lists no image")
    return value[0]


def oci_manifest(small: Dict[str, bytes]) -> Tuple[str, List[str]]:
    """(config member, layer members) of an OCI archive's first image (through nested indexes)."""
    document = parsed(small, "index.json")
    for _ in range(4):
        if not isinstance(document, dict):
            break
        entry = first(document.get("manifests"), "index.json")
        document = parsed(small, blob(entry.get("digest")))
        if isinstance(document, dict) and "config" in document:
            config = document["config"]
            layers = document.get("layers") or []
            return blob(config.get("digest") if isinstance(config, dict) else None), \
                [blob(layer.get("digest") if isinstance(layer, dict) else None) for layer in layers]
    raise ImageArchiveError("index.json leads to no image manifest")


def docker_manifest(small: Dict[str, bytes]) -> Tuple[str, List[str]]:
    entry = first(parsed(small, "manifest.json"), "manifest.json")
    config, layers = entry.get("Config"), entry.get("Layers") or []
    if not isinstance(config, str) or not all(isinstance(layer, str) for layer in layers):
        raise ImageArchiveError("manifest.json names no Config or bad Layers")
    return normal(config), [normal(layer) for layer in layers]


def dpkg_packages(status: bytes) -> Packages:
    packages: Packages = {}
    for block in status.decode("utf-8", "replace").split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Architecture|Status): (.+)$", block,
                                 re.MULTILINE))
        if fields.get("Status",
                      "").endswith(" installed") and "Package" in fields and "Version" in fields:
            packages[fields["Package"]] = (fields["Version"], fields.get("Architecture", ""))
    return packages


def nix_packages(names: Set[str]) -> Packages:
    """pname -> version of the store's entries (an output suffix stays with the version: mesa's
    drivers output is mesa-25.0.7-drivers, whose upstream version is still 25.0.7)."""
    packages: Packages = {}
    for entry in sorted(names):
        match = NIX_NAME.match(entry)
        if match and match.group(1) not in packages:
            packages[match.group(1)] = (match.group(2), "nix")
    return packages


def packages_of(layers: List[LayerFacts]) -> Packages:
    status: Optional[bytes] = None
    nix: Set[str] = set()
    for layer in layers:  # in the image's order: a later layer's status replaces an earlier one's
        if layer.status_deleted:
            status = None
        if layer.status is not None:
            status = layer.status
        nix |= layer.nix
    return {**nix_packages(nix), **(dpkg_packages(status) if status else {})}


def strings(value: object) -> Tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def image_info(small: Dict[str, bytes], layers: Dict[str, LayerFacts], kind: str,
               how: str) -> ImageInfo:
    config_name, layer_names = (oci_manifest(small) if kind == "oci-archive"
                                else docker_manifest(small))
    config = parsed(small, config_name)
    if not isinstance(config, dict):
        raise ImageArchiveError(f"{config_name} is not an image config")
    settings = config.get("config")
    if not isinstance(settings, dict):
        settings = {}
    env = tuple((item.partition("=")[0], item.partition("=")[2])
                for item in strings(settings.get("Env")))
    found = []
    for name in layer_names:
        if name in layers:
            found.append(layers[name])
        elif name in small:  # a small layer: scanned from memory
            found.append(scan_layer(io.BytesIO(small[name])))
        else:
            raise ImageArchiveError(f"names layer {name}, which it does not hold")
    tags: Tuple[str, ...] = ()
    if kind == "docker-archive":
        tags = strings(first(parsed(small, "manifest.json"), "manifest.json").get("RepoTags"))
    return ImageInfo(hashlib.sha256(small[config_name]).hexdigest(), kind, how,
                     strings(settings.get("Entrypoint")),
                     strings(settings.get("Cmd")), env, str(config.get("architecture", "")), tags,
                     packages_of(found))


def read_archive(path: str) -> ImageInfo:
    why = problem(path)
    if why:
        raise ImageArchiveError(why)
    how = compression(path)
    try:
        small, layers = scan(path)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ImageArchiveError(f"{cut(path)}: not a readable tar archive: {exc}") from None
    kind = ("oci-archive" if "index.json" in small else "docker-archive"
            if "manifest.json" in small else "")
    if not kind:
        raise ImageArchiveError(f"{cut(path)} is a tar archive but not an image: no manifest.json "
                                "(docker-archive) "
                                "or index.json (OCI archive)")
    try:
        return image_info(small, layers, kind, how)
    except ImageArchiveError as exc:
        raise ImageArchiveError(f"{cut(path)}: {kind}: {exc}") from None


_cache: Dict[Tuple[str, int, int, int], ImageInfo] = {}
_lock = threading.Lock()


def read(path: str) -> ImageInfo:
    """The archive's facts, read once per process for each version of the file (a gzip archive
    of a 400 MB runtime takes about 2 s, a plain one 0.5 s)."""
    try:
        stat = os.stat(path)
    except OSError:
        return read_archive(path)  # says why
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _lock:
        if key not in _cache:
            _cache[key] = read_archive(path)
        return _cache[key]


# -- writing -------------------------------------------------------------------------------------

OCI_ARCHITECTURES = {"amd64": "amd64", "i386": "386", "arm64": "arm64", "riscv64": "riscv64"}
EPOCH = "1970-01-01T00:00:01Z"  # as dockerTools: the archive is the same for the same tree
CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageSpec:
    """What an image made from a tree says about itself."""

    tag: str  # RepoTags: the name podman gives it once loaded
    architecture: str  # Debian's name (amd64, i386, arm64)
    cmd: Tuple[str, ...] = ()
    env: Tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    labels: Tuple[Tuple[str, str], ...] = ()
    created_by: str = ""


def layer_argv(root: Path) -> List[str]:
    """GNU tar of the tree, one member per path, sorted and with numeric owners (so the same tree
    is the same layer); names without './' as image layers have them. A runtime's own kernel is
    its guest's, not a container's: left out."""
    entries = sorted(os.listdir(root))
    return ["tar", "--create", "--file=-", "--format=gnu", "--numeric-owner", "--sort=name",
            "--anchored",
            *(f"--exclude={part}/*" for part in GUEST_KERNEL_PARTS), f"--directory={root}", "--",
            *entries]


def config_bytes(spec: ImageSpec, diff_id: str) -> bytes:
    settings: Dict[str, object] = {"Env": list(spec.env)}
    if spec.cmd:
        settings["Cmd"] = list(spec.cmd)
    if spec.labels:
        settings["Labels"] = dict(spec.labels)
    config = {"architecture": OCI_ARCHITECTURES.get(spec.architecture, spec.architecture),
              "os": "linux",
              "created": EPOCH, "config": settings, "rootfs": {"type": "layers",
                                                               "diff_ids": [f"sha256:{diff_id}"]},
              "history": [{"created": EPOCH, "created_by": spec.created_by,
                           "comment": "one layer: the whole tree"}]}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def pack(out: Path, layer: Path, diff_id: str, config: bytes, tag: str, compressed: bool) -> None:
    """The docker-archive: the layer, the config and manifest.json, gzip-compressed (level 1: a
    400 MB tree in about 5 s on one core; level 6 takes 3 times as long for 10% less) or plain."""
    image_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                            "Layers": [f"{diff_id}/layer.tar"]}])
    with open(out, "wb") as raw:
        stream: Union[gzip.GzipFile, BinaryIO] = \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) if compressed else raw
        with tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as archive:
            with open(layer, "rb") as handle:
                archive.addfile(member(f"{diff_id}/layer.tar", layer.stat().st_size), handle)
            archive.addfile(member(f"{image_id}.json", len(config)), io.BytesIO(config))
            archive.addfile(member("manifest.json", len(manifest.encode())),
                            io.BytesIO(manifest.encode()))
        if stream is not raw:
            stream.close()


def only_inodes_changed(log: Path) -> bool:
    """Whether tar's exit 1 says only "file changed as we read it": a runtime's tree is never
    written after it is built, but a Flatpak export or GL extension hard-links its files while
    another worker reads them, and a new link changes a file's ctime, not its bytes."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return bool(lines) and all(line.endswith(": file changed as we read it") for line in lines)


def write(root: Path, out: Path, spec: ImageSpec, timeout_s: float = 1200.0) -> str:
    """The image of the tree at `root` as a docker-archive at `out` (gzip-compressed when its name
    ends in .gz), written beside it and renamed into place when complete; returns its id."""
    from ..system import reaper
    from ..system.process import Child, tail

    out.parent.mkdir(parents=True, exist_ok=True)
    with reaper.temp_dir(".gpu-harness-image-", parent=str(out.parent)) as folder:
        layer, log = Path(folder) / "layer.tar", Path(folder) / "tar.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        end = Child(layer_argv(root), env, str(log), str(layer)).wait(timeout_s)
        if end.timed_out or (end.code != 0 and not (end.code == 1 and only_inodes_changed(log))):
            said = " | ".join(tail(str(log), 2).splitlines())
            raise ImageArchiveError(f"tar of {root} failed ({end.describe()}): {said}")
        diff_id = sha256_of(layer)
        config = config_bytes(spec, diff_id)
        partial = Path(folder) / "image.partial"
        pack(partial, layer, diff_id, config, spec.tag, out.name.endswith(".gz"))
        os.replace(partial, out)
    cache.record_made(out)  # where the archive is a cache entry (runtimes' images)
    return hashlib.sha256(config).hexdigest()
