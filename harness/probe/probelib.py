"""What every probe shares: runs *inside* the sandbox/guest/container with the standard library
and ctypes only, next to the probe that imports it (the harness puts both in one folder).

The probe's frame (started line, report line, timings, isolation, mounts, libraries, a watchdog
for a driver call that never returns), PNG writing, the framebuffer scanout, the capsule
(dlmopen) and the loader's own diagnosis of a driver that did not load."""
import argparse
import ctypes
import faulthandler
import hashlib
import json
import os
import resource
import stat
import struct
import sys
import threading
import time
import zlib

class ProbeError(Exception):
    """A step of the probe failed; the message says which. `step` and `code` (a VkResult's
    name) go into the report as fields of their own where the step knows them."""

    def __init__(self, message, step=None, code=None):
        super().__init__(message)
        self.step, self.code = step, code


def load_library(names):
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise ProbeError("cannot load any of " + ", ".join(names) + ": " + "; ".join(errors))


RTLD_NOW, RTLD_GLOBAL = 2, 0x100
LM_ID_NEWLM = -1
RTLD_DI_LMID, RTLD_DI_LINKMAP = 1, 2
CAPSULE_ENV = "GPU_HARNESS_CAPSULE"
CAPSULE_NO_REDIRECT_ENV = "GPU_HARNESS_CAPSULE_NO_REDIRECT"  # test hook: leave the capsule's dlopen alone
PROT_READ, PROT_WRITE = 1, 2
SHT_RELA = 4
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7


class LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p), ("l_ld", ctypes.c_void_p),
                ("l_next", ctypes.c_void_p), ("l_prev", ctypes.c_void_p)]


def elf_imports(path, wanted):
    """(GOT offset, symbol) of each x86-64 relocation in `path` that binds a symbol in `wanted`."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != 62:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found = []
    for section in sections:
        if section[1] != SHT_RELA or section[6] >= len(sections):
            continue
        symtab = sections[section[6]]
        strtab = sections[symtab[6]] if symtab[6] < len(sections) else None
        if strtab is None:
            continue
        for offset in range(section[4], section[4] + section[5], 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, offset)
            if r_info & 0xFFFFFFFF not in (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT):
                continue
            st_name, = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            end = data.index(b"\0", strtab[4] + st_name)
            name = data[strtab[4] + st_name:end].decode("ascii", "replace")
            if name in wanted:
                found.append((r_offset, name))
    return found


class Capsule:
    """The host's GL stack in a link-map namespace of its own (dlmopen(LM_ID_NEWLM)), as
    libcapsule does: the manifest lists the host's libraries, dependencies first, so each
    DT_NEEDED name is found among what the namespace already holds; libc is the runtime's,
    loaded anew into the namespace. The app's own namespace never sees a host library."""

    def __init__(self, manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        libdl = self.libdl()
        dlmopen = declare(libdl, "dlmopen", ctypes.c_void_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_int)
        dlerror = declare(libdl, "dlerror", ctypes.c_char_p)
        dlinfo = declare(libdl, "dlinfo", ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
        self.lmid = None
        handles = {}
        for path in manifest["load"]:
            handle = dlmopen(LM_ID_NEWLM if self.lmid is None else self.lmid, path.encode(), RTLD_NOW)
            if not handle:
                said = dlerror()
                raise ProbeError("capsule: dlmopen %s: %s" % (path, said.decode("utf-8", "replace") if said else "?"))
            if self.lmid is None:
                lmid = ctypes.c_long()
                dlinfo(handle, RTLD_DI_LMID, ctypes.byref(lmid))
                self.lmid = lmid.value
            handles[path] = handle
        self.entry = {name: ctypes.CDLL(path, handle=handles[path]) for name, path in manifest["entry"].items()}
        self.loaded = len(handles)
        self.dlmopen, self.dlerror, self.dlinfo = dlmopen, dlerror, dlinfo
        self.program_dlopen = declare(libdl, "dlopen", ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
        self.calls = []
        self.redirected = [] if os.environ.get(CAPSULE_NO_REDIRECT_ENV) else self.redirect_dlopen(handles)

    def redirect_dlopen(self, handles):
        """Point the capsule's calls of dlopen() at dlmopen() into the capsule, without
        RTLD_GLOBAL. Mesa opens its DRI driver with RTLD_GLOBAL, and glibc has no global scope in
        a dlmopen() namespace: unpatched, that dlopen crashes in add_to_global_resize. This is
        what libcapsule does too (it rewrites the capsule's relocations for dlopen). dlopen(NULL)
        still means the program: LLVM's JIT asks for it, and crashes on anything else."""
        libc = ctypes.CDLL(None)
        mprotect = declare(libc, "mprotect", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        page = os.sysconf("SC_PAGE_SIZE")
        self.callback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)(self.capsule_dlopen)
        address = ctypes.cast(self.callback, ctypes.c_void_p).value
        patched = []
        for path, handle in handles.items():
            link = ctypes.POINTER(LinkMap)()
            if self.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) != 0:
                continue
            base = link.contents.l_addr or 0
            for offset, _ in elf_imports(path, ("dlopen",)):
                slot = base + offset
                start = slot - slot % page
                if mprotect(start, page * 2 if slot % page > page - 8 else page, PROT_READ | PROT_WRITE) != 0:
                    raise ProbeError("capsule: cannot make the GOT of %s writable" % path)
                ctypes.c_void_p.from_address(slot).value = address
                patched.append(os.path.basename(path))
        return sorted(set(patched))

    def capsule_dlopen(self, name, flags):
        self.calls.append(name.decode("utf-8", "replace") if name else None)
        if name is None:  # "the program itself" (LLVM asks, to look up symbols): the real answer
            return self.program_dlopen(None, flags) or None
        return self.dlmopen(self.lmid, name, flags & ~RTLD_GLOBAL) or None

    def namespaces(self):
        """The libraries of each link-map namespace, from the dynamic linker's own lists: the
        program's (LM_ID_BASE) and the capsule's. The program's must hold none of the host's."""
        return {"app": self.chain(self.program_dlopen(None, RTLD_NOW)),
                "capsule": self.chain(next(iter(self.entry.values()))._handle)}

    def chain(self, handle):
        link = ctypes.POINTER(LinkMap)()
        if not handle or self.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) != 0 or not link:
            return []
        node = link.contents
        while node.l_prev:  # to the head of this namespace's list
            node = LinkMap.from_address(node.l_prev)
        names = []
        while True:
            if node.l_name:
                names.append(node.l_name.decode("utf-8", "replace"))
            if not node.l_next:
                return names
            node = LinkMap.from_address(node.l_next)

    @staticmethod
    def libdl():
        program = ctypes.CDLL(None)
        if hasattr(program, "dlmopen"):
            return program
        return ctypes.CDLL("libdl.so.2")  # glibc < 2.34 keeps dlmopen there

    def library(self, name):
        if name not in self.entry:
            raise ProbeError("capsule: no %s in the manifest" % name)
        return self.entry[name]


def declare(lib, name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def png_bytes(rows, width, height):
    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


SCANOUT_FILE = "/tmp/gpu-harness-scanout.fb"


def framebuffer_image(device, rows, size):
    """The rendered image at the top-left of a frame for `device` (rest black), written to
    SCANOUT_FILE for the guest's init to copy to the device once this process has exited:
    while the probe's GL driver holds the DRM device, fbdev writes are not flushed to the
    display. Expects 32 bpp XRGB, what DRM's fbdev emulation gives."""
    sysfs = "/sys/class/graphics/" + os.path.basename(device)
    with open(sysfs + "/bits_per_pixel") as handle:
        bpp = int(handle.read())
    with open(sysfs + "/stride") as handle:
        stride = int(handle.read())
    with open(sysfs + "/virtual_size") as handle:
        width, height = (int(v) for v in handle.read().strip().split(","))
    if bpp != 32:
        raise ProbeError("framebuffer %s has %d bpp, expected 32" % (device, bpp))
    black = bytes(stride)
    shown = min(size, width)
    with open(SCANOUT_FILE, "wb") as fb:
        for y in range(height):
            if y >= size:
                fb.write(black)
                continue
            line = bytearray(stride)
            rgb = rows[y][:shown * 3]
            line[0:shown * 4:4], line[1:shown * 4:4], line[2:shown * 4:4] = rgb[2::3], rgb[1::3], rgb[0::3]
            fb.write(bytes(line))
    return {"device": device, "width": width, "height": height, "file": SCANOUT_FILE}


def read_status_field(name):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def isolation_facts(host_paths):
    try:
        dri = sorted(os.listdir("/dev/dri"))
    except OSError:
        dri = []
    namespaces: dict = {}
    for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
        try:
            namespaces[ns] = os.readlink("/proc/self/ns/" + ns)
        except OSError:
            namespaces[ns] = None
    seccomp = read_status_field("Seccomp")
    nnp = read_status_field("NoNewPrivs")
    cap_eff = read_status_field("CapEff")
    visible = [p for p in host_paths if os.path.exists(p)]
    return {
        "dri_nodes": ["/dev/dri/" + name for name in dri],
        "namespaces": namespaces,
        "seccomp_mode": int(seccomp) if seccomp and seccomp.isdigit() else None,
        "no_new_privs": nnp == "1" if nnp is not None else None,
        "capabilities": bin(int(cap_eff, 16)).count("1") if cap_eff else None,
        "host_paths_checked": len(host_paths),
        "host_paths_visible": len(visible),
        "host_paths_visible_list": visible,
        "uid": os.getuid(),
    }


def mapped_libraries():
    """Every shared object this process has mapped: which driver really rendered."""
    found = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    found.add(parts[5].strip())
    except OSError:
        pass
    return sorted(found)


def libc_version():
    try:
        fn = declare(ctypes.CDLL(None), "gnu_get_libc_version", ctypes.c_char_p)
        return fn().decode()
    except (OSError, AttributeError):
        return None


def mount_kind(path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "?"
    for kind, test in (("socket", stat.S_ISSOCK), ("char", stat.S_ISCHR), ("dir", stat.S_ISDIR)):
        if test(mode):
            return kind
    return "file"


def mounts():
    """The process's mounts as (mount point, root within its filesystem, fs type, device,
    source, what the mount point is): the harness maps them back to host paths for the leak
    audit."""
    entries = []
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                fields = line.split()
                dash = fields.index("-")
                point = fields[4].replace("\\040", " ")
                entries.append([point, fields[3].replace("\\040", " "), fields[dash + 1], fields[2],
                                fields[dash + 2], mount_kind(point)])
    except (OSError, ValueError, IndexError):
        pass
    return entries


DRI_DIRS = ("/usr/lib/x86_64-linux-gnu/dri", "/usr/lib/i386-linux-gnu/dri", "/usr/lib64/dri", "/usr/lib/dri")
MAX_DRI_CHECKED = 4


def vendor_libraries(files_env, dirs_env, default_dirs):
    """The libraries a loader's vendor/ICD files name (glvnd's EGL vendors, Vulkan ICDs): from the
    files an environment variable lists, else from the folders one lists, else the defaults."""
    listed = [f for name in files_env for f in os.environ.get(name, "").split(":") if f]
    files = []
    for entry in listed:  # the Vulkan loader takes folders of ICD files in VK_DRIVER_FILES too
        try:
            files += [os.path.join(entry, n) for n in sorted(os.listdir(entry)) if n.endswith(".json")]
        except OSError:
            files.append(entry)
    if not files:
        dirs = os.environ.get(dirs_env)
        for folder in dirs.split(":") if dirs else default_dirs:
            try:
                files += [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".json")]
            except OSError:
                continue
    libraries = []
    for name in dict.fromkeys(files):
        try:
            with open(name) as handle:
                libraries.append(json.load(handle)["ICD"]["library_path"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            libraries.append("%s (unreadable vendor file: %s)" % (name, exc))
    return libraries


def dri_drivers():
    """The DRI drivers Mesa would load (one per file; software first)."""
    dirs = [d for d in os.environ.get("LIBGL_DRIVERS_PATH", "").split(":") if d] or DRI_DIRS
    seen, drivers = set(), []
    for folder in dirs:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith("_dri.so"))
        except OSError:
            continue
        names.sort(key=lambda n: (not n.startswith("swrast"), n))
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                drivers.append(path)
    return drivers[:MAX_DRI_CHECKED]


def dynamic_loader():
    for path in mapped_libraries():
        name = os.path.basename(path)
        if name.startswith("ld-linux") or (name.startswith("ld-") and name[3:4].isdigit()):  # ld-2.31.so
            return path
    return None


def loader_listing(loader, library):
    """What the runtime's own loader says of a library, as ldd -r has it say: every missing
    name, version and symbol, where dlerror gives only the first."""
    import subprocess  # only on the failure path

    env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1", LD_WARN="yes", LD_BIND_NOW="yes")  # what ldd -r sets
    try:
        done = subprocess.run([loader, library], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    lines = (done.stdout + done.stderr).splitlines()
    return {"missing": sorted({line.split()[0] for line in lines if "=> not found" in line}),
            "errors": [line.strip() for line in lines
                       if ("not found" in line and "=>" not in line) or "undefined symbol" in line][:20]}


def loader_diagnosis(candidates):
    """Why the driver did not load, in the loader's own words: each (role, library) opened the
    way the loaders open them (dlerror), and listed by the runtime's ld.so."""
    loader = dynamic_loader()
    checked = []
    for role, library in candidates:
        entry = {"role": role, "library": library}
        try:
            ctypes.CDLL(library)
            entry["dlopen"] = "ok"
        except OSError as exc:
            entry["dlopen"] = str(exc)
            if loader and library.startswith("/") and os.path.exists(library):
                entry.update(loader_listing(loader, library))
        checked.append(entry)
    return checked


def inject_fault(kind):
    """Test hook: make the probe fail in a controlled way after the GPU context exists."""
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:
            time.sleep(1)
    elif kind == "exit":
        sys.exit(3)


class Watchdog:
    """A driver call that never returns (a Venus client spinning on a failed allocation) must
    still end with a report: each step has a deadline, and when it passes the report is printed
    with the step's name and the process ends."""

    def __init__(self, seconds, on_expiry):
        self.seconds, self.on_expiry = seconds, on_expiry
        self.step_name, self.deadline = None, None
        self.lock = threading.Lock()
        if seconds:
            threading.Thread(target=self.watch, daemon=True).start()

    def step(self, name):
        """Start step `name` (None: no step runs, no deadline)."""
        with self.lock:
            self.step_name = name
            self.deadline = time.monotonic() + self.seconds if self.seconds and name else None

    def watch(self):
        while True:
            time.sleep(0.1)
            with self.lock:
                expired = self.deadline is not None and time.monotonic() > self.deadline
                name = self.step_name
            if expired:
                self.on_expiry(name, "step %s: no answer from the driver after %g s" % (name, self.seconds))
                os._exit(3)


def arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="directory for probe.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--host-path", action="append", default=[], help="a host path that should be hidden")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to wait after context creation")
    parser.add_argument("--scanout", help="framebuffer device to show the image on, e.g. /dev/fb0")
    parser.add_argument("--step-timeout", type=float, default=0.0,
                        help="seconds one driver step may take before the probe reports it and exits (0: none)")
    parser.add_argument("--fault", choices=["segv", "abort", "hang", "exit"], help=argparse.SUPPRESS)
    return parser


def run(probe, api, version, args, render, diagnose):
    """The frame of a probe run: the started line (before any driver code: it survives a crash),
    render(args, step, seen) -> (info, rows, timings), the image, and the report line. What
    render puts in `seen` on the way (the device it found) is reported even when a later step
    fails or never returns."""
    faulthandler.enable()  # a crash in the driver leaves a traceback in the probe's log
    print(json.dumps({"probe": probe, "stage": "started", "mounts": mounts(), "libc": libc_version(),
                      "isolation": isolation_facts(args.host_path)}, sort_keys=True), flush=True)
    result = {"probe": probe, "probe_version": version, "api": api, "ok": False}
    started = time.perf_counter()
    printed = threading.Lock()

    def report():
        for key, value in list(result.pop("seen", {}).items()):
            result.setdefault(key, value)
        result.setdefault("libraries", mapped_libraries())
        result["libc"] = libc_version()
        result["mounts"] = mounts()
        result["timings_total_ms"] = round((time.perf_counter() - started) * 1000, 3)
        result["isolation"] = isolation_facts(args.host_path)
        result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["python"] = sys.version.split()[0]
        print(json.dumps(result, sort_keys=True, default=str), flush=True)

    def expired(step_name, message):
        if printed.acquire(blocking=False):
            result.update(error=message, failed_step=step_name, hung=True)
            report()

    watchdog = Watchdog(args.step_timeout, expired)
    seen: dict = {}
    result["seen"] = seen
    try:
        info, rows, timings = render(args, watchdog.step, seen)
        watchdog.step(None)
        with open(os.path.join(args.out, "probe.png"), "wb") as handle:
            handle.write(png_bytes(rows, args.size, args.size))
        result.update(info)
        result.update(ok=True, image="probe.png", size=[args.size, args.size],
                      pixels_md5=hashlib.md5(b"".join(rows)).hexdigest(), timings=timings)
        if args.scanout:
            result["scanout"] = framebuffer_image(args.scanout, rows, args.size)
    except ProbeError as exc:
        watchdog.step(None)
        result["error"] = str(exc)
        if exc.step:
            result["failed_step"] = exc.step
        if exc.code:
            result["result_code"] = exc.code
        result["diagnosis"] = diagnose()
    if not printed.acquire(blocking=False):
        return 3
    report()
    return 0 if result["ok"] else 1
