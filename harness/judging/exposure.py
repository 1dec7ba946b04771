"""The leak audit: what of the host a path exposes to its workload, measured from the
workload's own mount table (the probe reports /proc/self/mountinfo) and mapped back to host
paths through the harness's mount table. A bind of a runtime's tree is the runtime, not the
host; the harness's own files (the probe, its output folder, generated vendor files) are not
counted; a socket bound in is a host socket; a device bound in beyond the six that every
sandbox gets (null, zero, full, random, urandom, tty) is a host device. How much of the host a
path lets in becomes numbers per path.

An overlay (a container's root: podman's `--rootfs ROOT:O`, or an image's layers) is made for the
workload and gone when the audit runs: its device number may by then belong to another mount
(another scenario's overlay), so an overlay is never looked up by device: it shows its lower
layers, which the probe reports (the runtime's tree, or the harness's image store)."""
import os
import re
import stat
import threading
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..launch.lifecycle import HOST_PATHS

STANDARD_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                    "/dev/tty"}
PSEUDO_FS = {"proc", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs",
             "tracefs",
             "bpf", "pstore", "hugetlbfs", "fusectl", "configfs", "binfmt_misc", "autofs",
             "efivarfs", "ramfs"}
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")


@dataclass
class Exposure:
    whole_host: bool  # the workload sees the host's root filesystem
    host_files: List[str] = field(default_factory=list)  # host paths bound in (files and folders)
    host_file_count: Optional[int] = 0  # regular files under them; None: the whole host
    host_devices: List[str] = field(default_factory=list)
    host_sockets: List[str] = field(default_factory=list)
    shared_namespaces: List[str] = field(default_factory=list)  # the same as the host's
    separate_kernel: bool = False  # a VM: namespaces are another kernel's
    source: str = "mountinfo"
    # The same host folders checked for every path (lifecycle.HOST_PATHS), from the mount table:
    # which of them (or of what is under them) the workload sees of the host.
    host_folders_checked: List[str] = field(default_factory=lambda: list(HOST_PATHS))
    host_folders_visible: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.whole_host:
            files = "whole host"
        else:
            files = f"{len(self.host_files)} host paths ({self.host_file_count} files)"
        kernel = ("separate kernel" if self.separate_kernel
                  else f"{len(self.shared_namespaces)} shared namespaces")
        return (f"{files}, {len(self.host_devices)} devices, {len(self.host_sockets)} sockets, "
                f"{kernel}")


@dataclass(frozen=True)
class HostMount:
    device: str
    root: str
    point: str
    fstype: str = ""  # "" where not known


def host_mounts(text: Optional[str] = None) -> List[HostMount]:
    if text is None:
        try:
            text = open("/proc/self/mountinfo").read()
        except OSError:
            return []
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 5:
            fstype = fields[fields.index("-", 6) + 1] if "-" in fields[6:-1] else ""
            mounts.append(HostMount(fields[2], unescape(fields[3]), unescape(fields[4]), fstype))
    return mounts


def unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def host_path(device: str, root: str, mounts: Sequence[HostMount],
              fstype: str = "") -> Optional[str]:
    """Where the host sees a file that a workload's mount shows as (device, root in that fs); a
    mount of another filesystem type on the same device number (a number reused since) is not it."""
    best: Optional[Tuple[int, str]] = None
    for mount in mounts:
        if mount.device != device or (fstype and mount.fstype and mount.fstype != fstype):
            continue
        prefix = mount.root.rstrip("/")
        if root == mount.root or root.startswith(prefix + "/") or mount.root == "/":
            rest = root[len(prefix):] if mount.root != "/" else root
            candidate = os.path.normpath(mount.point.rstrip("/") + "/" + rest.lstrip("/"))
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), candidate)
    return best[1] if best else None


_count_lock = threading.Lock()
_counted: Dict[str, int] = {}
# The folders of the host's own root a workload on the host runtime sees (counted once per run).
HOST_ROOT_FOLDERS = ("/usr", "/etc")


def seed(counts: Dict[str, int]) -> None:
    """Counts made elsewhere of the same folders (a machine's guest sees the host's own root)."""
    with _count_lock:
        _counted.update({str(path): int(count) for path, count in counts.items()})


def file_count(path: str) -> int:
    """Regular files under `path` (1 for a file), not crossing into other filesystems; counted
    once per process (parallel scenarios wait for the first count, never count again)."""
    with _count_lock:
        if path not in _counted:
            _counted[path] = count_files(path)
        return _counted[path]


def count_files(path: str) -> int:
    if not os.path.isdir(path) or os.path.islink(path):
        return 1 if os.path.isfile(path) else 0
    device, total = os.stat(path).st_dev, 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(folder, d)).st_dev == device]
        total += sum(1 for f in files if os.path.isfile(os.path.join(folder, f)))
    return total


def within(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders if f)


def overlay_layers(options: str) -> List[str]:
    """An overlay's lower layers (host paths), from its `lowerdir=` option as the probe reports
    it."""
    return [unescape(layer).replace("\\:", ":") for layer in re.split(r"(?<!\\):", options)
            if layer]


def folders_seen(folders: Sequence[str], seen: Sequence[str], whole_host: bool) -> List[str]:
    """The folders of which the workload sees something: all on the whole host, else each that a
    host path it sees is in, or has something of."""
    return [f for f in folders if whole_host or any(within(f, [h]) or within(h, [f]) for h in seen)]


def audit(mounts: List[list], namespaces: Dict[str, str], host_namespaces: Dict[str, str],
          runtime_root: str, own: Sequence[str], exports: Optional[Dict[str, str]] = None,
          host_table: Optional[Sequence[HostMount]] = None) -> Exposure:
    """The exposure of one workload from its mount table. `own`: the harness's folders;
    `exports`: for a VM, its 9p mount tags -> the host folder each exports."""
    table = host_mounts() if host_table is None else host_table
    exposure = Exposure(whole_host=False)
    seen: List[str] = []
    for entry in mounts:
        if not isinstance(entry, list) or len(entry) < 4:
            continue
        point, root, fstype, device = (str(x) for x in entry[:4])
        source = str(entry[4]) if len(entry) > 4 else ""
        kind = str(entry[5]) if len(entry) > 5 else ""
        if fstype in PSEUDO_FS or (exports is not None and fstype != "9p"):
            continue  # in a guest, only the 9p exports are the host's
        if fstype == "devtmpfs":
            if point not in STANDARD_DEVICES and point not in exposure.host_devices:
                exposure.host_devices.append(point)
            continue
        if fstype == "sysfs":
            if point != "/sys":
                exposure.host_files.append(point)
            continue
        if fstype == "overlay":
            # Its lower layers, never its device number (see above); without them (a probe of
            # an older harness) it is the container's own root: the runtime's, not the host's.
            layers = overlay_layers(str(entry[6]) if len(entry) > 6 else "")
            hosts = [os.path.normpath(layer.rstrip("/") + "/" + root.lstrip("/"))
                     for layer in layers]
        elif fstype == "9p":
            if exports is None or source not in exports:
                continue
            hosts = [os.path.normpath(exports[source].rstrip("/") + "/" + root.lstrip("/"))]
        else:
            found = host_path(device, root, table, fstype)
            if found is None:
                continue
            hosts = [found]
        for host in hosts:
            if within(host, own):
                if kind == "socket":
                    exposure.host_sockets.append(point)
                continue
            if runtime_root != "/" and within(host, [runtime_root]):
                continue
            if host == "/":
                exposure.whole_host = True
                continue
            if kind == "socket":
                exposure.host_sockets.append(point)
            elif host not in seen:
                seen.append(host)
    # The whole host holds every other host mount: listing them would count whatever else was
    # mounted on the host at that moment (another run's container), not the path.
    exposure.host_files = [] if exposure.whole_host else sorted(set(exposure.host_files + seen))
    exposure.host_folders_visible = folders_seen(exposure.host_folders_checked, seen,
                                                 exposure.whole_host)
    exposure.host_file_count = None if exposure.whole_host else sum(
        file_count(p) for p in seen)
    if exports is not None:
        exposure.separate_kernel = True
        exposure.source = "guest mountinfo + 9p exports"
    else:
        exposure.shared_namespaces = [ns for ns in NAMESPACES
                                      if namespaces.get(ns)
                                      and namespaces.get(ns) == host_namespaces.get(ns)]
    return exposure


def virtfs_exports(argv: Sequence[str]) -> Dict[str, str]:
    """mount tag -> host folder, from a QEMU command line's -virtfs options."""
    exports = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag != "-virtfs":
            continue
        options = dict(part.split("=", 1) for part in value.replace(",,", "\0").split(",")
                       if "=" in part)
        if "mount_tag" in options and "path" in options:
            exports[options["mount_tag"]] = options["path"].replace("\0", ",")
    return exports


def of_run(report: Optional[dict], argv: Sequence[str], host_namespaces: Dict[str, str],
           runtime_root: str,
           own: Sequence[str]) -> Optional[Exposure]:
    """The exposure of a launch from its probe's report; None when the probe reported nothing."""
    if not report or not isinstance(report.get("mounts"), list):
        return None
    isolation = report.get("isolation")
    isolation = isolation if isinstance(isolation, dict) else {}
    namespaces = isolation.get("namespaces")
    namespaces = {str(k): str(v) for k, v in namespaces.items()} if isinstance(namespaces,
                                                                               dict) else {}
    exports = virtfs_exports(argv) if "-virtfs" in argv else None
    return audit(report["mounts"], namespaces, host_namespaces, runtime_root, own, exports)


BIND_FLAGS = {"--ro-bind", "--bind", "--dev-bind", "--ro-bind-try", "--bind-try", "--dev-bind-try"}
TWO_ARGUMENTS = BIND_FLAGS | {"--symlink", "--setenv", "--chmod", "--file", "--bind-data",
                              "--ro-bind-data"}
ONE_ARGUMENT = {"--proc", "--dev", "--tmpfs", "--dir", "--chdir", "--remount-ro", "--unsetenv",
                "--mqueue",
                "--uid", "--gid", "--hostname", "--perms", "--size", "--sync-fd", "--info-fd",
                "--block-fd",
                "--userns-block-fd", "--json-status-fd", "--seccomp", "--add-seccomp-fd",
                "--exec-label",
                "--file-label", "--lock-file", "--args", "--userns", "--userns2", "--pidns",
                "--cap-add",
                "--cap-drop", "--argv0"}


def from_bwrap_argv(argv: Sequence[str], runtime_root: str,
                    own: Sequence[str]) -> Optional[Exposure]:
    """The exposure a bwrap command line declares, for a workload that never started (the
    loader refused it before any code of ours ran): its binds are exactly its mounts."""
    if not argv or os.path.basename(argv[0]) != "bwrap":
        return None
    exposure = Exposure(whole_host=False, source="bwrap argv (the workload did not start)")
    files: List[str] = []
    index = 1
    while index < len(argv) and argv[index] != "--":
        flag = argv[index]
        if flag in BIND_FLAGS and index + 2 < len(argv):
            source, target = argv[index + 1], argv[index + 2]
            if source.startswith("/dev/") and flag.startswith("--dev-bind"):
                exposure.host_devices.append(target)
            elif within(source, own):
                if os.path.exists(source) and stat.S_ISSOCK(os.stat(source).st_mode):
                    exposure.host_sockets.append(target)
            elif source == "/":
                exposure.whole_host = True
            elif not (runtime_root != "/" and within(source, [runtime_root])):
                files.append(os.path.realpath(source) if os.path.isfile(source) else source)
        index += 3 if flag in TWO_ARGUMENTS else 2 if flag in ONE_ARGUMENT else 1
    exposure.host_files = [] if exposure.whole_host else sorted(set(files))
    exposure.host_file_count = None if exposure.whole_host else sum(file_count(p)
                                                                    for p in exposure.host_files)
    exposure.host_folders_visible = folders_seen(exposure.host_folders_checked, files,
                                                 exposure.whole_host)
    return exposure
