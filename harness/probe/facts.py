"""What a probe reports of the runtime it runs in: isolation, mounts, libraries, loader diagnosis.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside the
probe (the harness puts them in one folder). probelib's frame reports the isolation facts, the
mounts and the mapped libraries; a probe whose driver did not load asks for the loader's own
account of why (its vendor/ICD files, Mesa's DRI drivers, dlerror and the runtime's ld.so)."""
import ctypes
import json
import os
import stat


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
        "host_paths_checked_list": list(host_paths),
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
        fn = ctypes.CDLL(None).gnu_get_libc_version
        fn.restype, fn.argtypes = ctypes.c_char_p, []
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


def overlay_lower(options):
    """An overlay's lower layers, as its super options name them (`lowerdir=A:B`), or ""."""
    for option in options.split(","):
        if option.startswith("lowerdir="):
            return option[len("lowerdir="):]
    return ""


def mounts():
    """The process's mounts as (mount point, root within its filesystem, fs type, device,
    source, what the mount point is, an overlay's lower layers or ""): the harness maps them
    back to host paths for the leak audit (an overlay by its layers: its device number is gone
    with it)."""
    entries = []
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                fields = line.split()
                dash = fields.index("-")
                point = fields[4].replace("\\040", " ")
                fstype = fields[dash + 1]
                layers = (overlay_lower(fields[dash + 3]) if fstype == "overlay"
                          and len(fields) > dash + 3 else "")
                entries.append([point, fields[3].replace("\\040", " "), fstype, fields[2],
                                fields[dash + 2], mount_kind(point), layers])
    except (OSError, ValueError, IndexError):
        pass
    return entries


DRI_DIRS = ("/usr/lib/x86_64-linux-gnu/dri", "/usr/lib/i386-linux-gnu/dri", "/usr/lib64/dri",
            "/usr/lib/dri")
MAX_DRI_CHECKED = 4


def vendor_libraries(files_env, dirs_env, default_dirs):
    """The libraries a loader's vendor/ICD files name (glvnd's EGL vendors, Vulkan ICDs): from the
    files an environment variable lists, else from the folders one lists, else the defaults."""
    listed = [f for name in files_env for f in os.environ.get(name, "").split(":") if f]
    files = []
    for entry in listed:  # the Vulkan loader takes folders of ICD files in VK_DRIVER_FILES too
        try:
            files += [os.path.join(entry, n) for n in sorted(os.listdir(entry))
                      if n.endswith(".json")]
        except OSError:
            files.append(entry)
    if not files:
        dirs = os.environ.get(dirs_env)
        for folder in dirs.split(":") if dirs else default_dirs:
            try:
                files += [os.path.join(folder, n) for n in sorted(os.listdir(folder))
                          if n.endswith(".json")]
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
        # ld-2.31.so
        if name.startswith("ld-linux") or (name.startswith("ld-") and name[3:4].isdigit()):
            return path
    return None


def loader_listing(loader, library):
    """What the runtime's own loader says of a library, as ldd -r has it say: every missing
    name, version and symbol, where dlerror gives only the first."""
    import subprocess  # only on the failure path

    # what ldd -r sets
    env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1", LD_WARN="yes", LD_BIND_NOW="yes")
    try:
        done = subprocess.run([loader, library], capture_output=True, text=True, timeout=30,
                              env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    lines = (done.stdout + done.stderr).splitlines()
    return {"missing": sorted({line.split()[0] for line in lines if "=> not found" in line}),
            "errors": [line.strip() for line in lines
                       if ("not found" in line and "=>" not in line)
                       or "undefined symbol" in line][:20]}


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
