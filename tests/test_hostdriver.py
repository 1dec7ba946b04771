"""The host-driver machinery without launching anything: vendor/ICD discovery on fixture trees
(a Mesa and an NVIDIA layout), the layout each mode gives a sandbox, the dependency order a
capsule loads in (on this host's real driver), the failure classifier on loader messages
captured from real runs, the leak audit on a captured mount table, driver matching."""
import importlib.util
import json
import os
import shutil

import pytest

from harness.host import diagnosis, driverlayout, drivermatch, hostdriver
from harness.judging import exposure, verdict
from harness import matrix
from harness.scenario.pathspec import DriverMode as Mode
from harness.launch.lifecycle import LaunchResult
from harness.scenario.outcomes import FailureKind, Outcome
from harness.scenario.probes import PROBE_DIR, ProbeReport
from harness.system.process import Exit

from .driver_trees import ELF64, LIB


def test_mesa_layout_is_found_from_its_vendor_and_icd_files(mesa_tree):
    driver = hostdriver.discover(str(mesa_tree))
    found = {(v.api, os.path.basename(v.source)): v.library for v in driver.vendors}
    assert found == {("egl", "50_mesa.json"): str(mesa_tree / LIB / "libEGL_mesa.so.0"),
                     ("vulkan", "lvp_icd.x86_64.json"): str(mesa_tree / LIB / "libvulkan_lvp.so"),
                     # the 32-bit ICD is not this host's
                     ("vulkan", "radeon_icd.x86_64.json"): None}
    assert driver.problems == [f"{mesa_tree}/usr/share/vulkan/icd.d/radeon_icd.x86_64.json: "
                               "libvulkan_radeon.so is not installed"]
    assert driver.dri_dirs == [str(mesa_tree / LIB / "dri")]
    assert ([os.path.basename(p)
             for p in hostdriver.dri_driver_files(driver.dri_dirs)] == ["kms_swrast_dri.so"])
    assert hostdriver.driver_version(driver, "22.3.6") == "mesa 22.3.6"
    assert set(driver.glvnd) == {"libEGL.so.1", "libGLESv2.so.2"}
    assert driver.private == []  # libEGL_mesa.so.0.0.0: no libmesa-*.so.0.0.0 beside it


def test_nvidia_layout_is_found_without_naming_nvidia(nvidia_tree):
    driver = hostdriver.discover(str(nvidia_tree))
    assert [(v.api, os.path.basename(v.library or "")) for v in driver.vendors] == [
        ("egl", "libEGL_nvidia.so.0"), ("vulkan", "libGLX_nvidia.so.0")]
    assert driver.dri_dirs == []
    assert hostdriver.driver_version(driver, None) == "nvidia 580.95.05"
    # What the vendor libraries name, and what those name in turn; not the release's other
    # libraries.
    assert sorted(os.path.basename(p) for p in driver.private) == [
        f"libnvidia-{name}.so.580.95.05" for name in ("eglcore", "glcore", "glsi", "tls")]


def test_libs_mode_binds_the_driver_beside_the_runtime_and_points_the_loaders_at_it(nvidia_tree):
    layout = driverlayout.layout(hostdriver.discover(str(nvidia_tree)), Mode.LIBS)
    inside = {dst: src for src, dst in layout.binds}
    private = {f"/run/host-driver/lib/libnvidia-{name}.so.580.95.05":
               str(nvidia_tree / LIB / f"libnvidia-{name}.so.580.95.05")
               for name in ("eglcore", "glcore", "glsi", "tls")}
    assert inside == {"/run/host-driver/lib/libEGL_nvidia.so.0":
                      str(nvidia_tree / LIB / "libEGL_nvidia.so.0"),
                      "/run/host-driver/lib/libGLX_nvidia.so.0":
                      str(nvidia_tree / LIB / "libGLX_nvidia.so.0"),
                      **private}
    egl = json.loads(layout.files["/run/host-driver/egl/10_nvidia.json"])
    assert egl["ICD"]["library_path"] == "/run/host-driver/lib/libEGL_nvidia.so.0"
    vulkan = json.loads(layout.files["/run/host-driver/vulkan/nvidia_icd.json"])
    assert vulkan["ICD"] == {"library_path": "/run/host-driver/lib/libGLX_nvidia.so.0",
                             "api_version": "1.4.312"}
    # The private libraries are opened by name: the driver's own folder is on the path.
    assert layout.env == {"__EGL_VENDOR_LIBRARY_FILENAMES": "/run/host-driver/egl/10_nvidia.json",
                          "VK_DRIVER_FILES": "/run/host-driver/vulkan/nvidia_icd.json",
                          "VK_ICD_FILENAMES": "/run/host-driver/vulkan/nvidia_icd.json",
                          "LD_LIBRARY_PATH": "/run/host-driver/lib"}


def test_mesa_libs_mode_sets_the_dri_folder(mesa_tree):
    layout = driverlayout.layout(hostdriver.discover(str(mesa_tree)), Mode.LIBS)
    assert ("/run/host-driver/dri" in [dst for _, dst in layout.binds]
            and layout.env["LIBGL_DRIVERS_PATH"] == "/run/host-driver/dri")
    assert "LD_LIBRARY_PATH" not in layout.env and driverlayout.CAPSULE_ENV not in layout.env


def host_driver():
    driver = hostdriver.discover("/")
    if not driver.found or not shutil.which("ldd"):
        pytest.skip("this host has no EGL vendor library (install libegl-mesa0) or no ldd")
    return driver


def test_the_closure_puts_every_library_after_what_it_needs():
    driver = host_driver()
    closure = driverlayout.closure(list(driver.glvnd.values()) + driver.libraries)
    position = {path: index for index, (_, path) in enumerate(closure.libraries)}
    assert closure.libraries and not closure.missing
    for _, path in closure.libraries:
        for name, dependency in driverlayout.resolve("/", path).found:
            if not driverlayout.is_glibc(name):
                assert position[dependency] < position[path], f"{name} must come before {path}"
    names = [name for name, _ in closure.libraries]
    assert not [n for n in names if driverlayout.is_glibc(n)]
    assert "libc.so.6" in [name for name, _ in closure.glibc]


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_lays_out_the_host_driver(mode):
    driver = host_driver()
    layout = driverlayout.layout(driver, mode)
    bound = [os.path.basename(dst) for _, dst in layout.binds
             if dst.startswith(driverlayout.LIB_DIR)]
    assert ("LD_LIBRARY_PATH" in layout.env) == (mode in (Mode.DEPS, Mode.DEPS_GLIBC))
    assert ("libc.so.6" in bound) == (mode == Mode.DEPS_GLIBC)
    assert (len(bound) > len([v for v in driver.vendors if v.library])) == (mode != Mode.LIBS)
    if mode == Mode.CAPSULE:
        manifest = json.loads(layout.files[driverlayout.CAPSULE_MANIFEST])
        assert set(manifest["entry"]) == {"libEGL.so.1", "libGLESv2.so.2", "libvulkan.so.1"}
        assert set(manifest["entry"].values()) <= set(manifest["load"])


def test_glibc_version_is_read_from_the_root():
    assert hostdriver.glibc_version("/") == os.confstr("CS_GNU_LIBC_VERSION").split()[1]


# Loader messages captured from real runs (Debian 12 host, Mesa 22.3.6, the shipped runtimes).
CAPTURED = [
    ({"error": "no EGL display: default: eglInitialize error 0x300c", "diagnosis": [
        {"role": "egl-vendor", "library": "/run/host-driver/lib/libEGL_mesa.so.0",
         "dlopen": "libglapi.so.0: cannot open shared object file: No such file or directory",
         "missing": ["libglapi.so.0", "libxcb-dri2.so.0"],
         "errors": ["undefined symbol: "
                    "_glapi_get_proc_address\t(/run/host-driver/lib/libEGL_mesa.so.0)"]},
        {"role": "dri", "library": "/run/host-driver/dri/swrast_dri.so",
         "dlopen": "libglapi.so.0: cannot open shared object file: No such file or directory",
         "missing": ["libLLVM-15.so.1", "libglapi.so.0"], "errors": []}]}, [], None,
     FailureKind.MISSING_LIBRARY, "libglapi.so.0, libxcb-dri2.so.0, libLLVM-15.so.1"),
    (None, ["/usr/bin/python3: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.36' not found "
            "(required by /run/host-driver/lib/libexpat.so.1)"], None,
     FailureKind.GLIBC_TOO_OLD, "GLIBC_2.36 needed, runtime has 2.31"),
    (None, ["/usr/bin/python3: /run/host-driver/lib/libm.so.6: version `GLIBC_2.38' not found "
            "(required by /usr/bin/python3)"], None,
     FailureKind.GLIBC_TOO_OLD, "GLIBC_2.38 needed, host has 2.36"),
    (None,
     ["/usr/bin/python3: symbol lookup error: /run/host-driver/lib/libc.so.6: undefined symbol: "
            "__tunable_is_initialized, version GLIBC_PRIVATE"], None,
     FailureKind.SYMBOL_LOOKUP, "__tunable_is_initialized"),
    ({"error": "no EGL display: default: eglInitialize error 0x300c", "diagnosis": [
        {"role": "egl-vendor", "library": "/run/host-driver/lib/libEGL_mesa.so.0",
         "dlopen": "/run/host-driver/lib/libEGL_mesa.so.0: wrong ELF class: ELFCLASS64"}]}, [],
     None,
     FailureKind.WRONG_ARCHITECTURE, "ELFCLASS64 library in this process"),
    (None, ["Fatal Python error: Segmentation fault", "",
            "Current thread 0x00007f0e2c794040 (most recent call first):",
            '  File "/run/gpu-harness/gles.py", line 462 in draw',
            '  File "/run/gpu-harness/gles.py", line 726 in render'], 11,
     FailureKind.CRASH, "SIGSEGV in draw (gles.py:462)"),
    ({"error": "no EGL display: default: eglInitialize error 0x300c", "diagnosis": [
        {"role": "egl-vendor", "library": "libEGL_mesa.so.0", "dlopen": "ok"}]}, [], None,
     FailureKind.EGL_INIT, "EGL_BAD_PARAMETER"),
]


@pytest.mark.parametrize("report, log, signal_number, kind, subject", CAPTURED,
                         ids=["missing", "glibc-runtime", "glibc-host", "symbol", "wrong-arch",
                              "crash", "egl"])
def test_the_classifier_reads_the_loaders_words(report, log, signal_number, kind, subject):
    found = diagnosis.classify(report, log, signal_number, {"runtime": "2.31", "host": "2.36"})
    assert found is not None and (found.kind, found.subject) == (kind, subject)


def test_nothing_to_classify_gives_none():
    assert diagnosis.classify({"error": "shader compile failed: 0:1(1): error"}, ["hello"], None,
                              {}) is None


def test_a_classified_failure_becomes_the_verdict_and_an_expectation_can_name_it():
    report = CAPTURED[0][0]
    observed = verdict.Observed(LaunchResult(exit=Exit(1, None), logs={"probe": "/nonexistent"},
                                             artifacts={}),
                                ProbeReport(ok=False, error=report["error"], raw=report))
    host = verdict.HostFacts({}, has_gpu=False, driver_libc="2.36")

    def judged(**expect):
        declaration = {"matrix": {"paths": ["sandbox-hostlibs"]}}
        if expect:
            declaration["override"] = [{"match": "*", "expect": "fail", "reason": "measured",
                                        **expect}]
        return verdict.judge(matrix.expand(declaration, "t").scenarios[0], observed, None, host)

    plain = judged()
    assert (plain.outcome, plain.failure_kind, plain.subject) == (
        Outcome.FAIL, FailureKind.MISSING_LIBRARY,
        "libglapi.so.0, libxcb-dri2.so.0, libLLVM-15.so.1")
    assert judged(failure="missing-library").outcome is Outcome.EXPECTED_FAIL
    other = judged(failure="glibc-too-old")
    assert other.outcome is Outcome.FAIL and "expected to fail with glibc-too-old" in other.reason


def test_an_expected_failure_class_must_be_known():
    from harness.core.errors import InputError

    with pytest.raises(InputError, match="failure: must be one of"):
        matrix.expand({"matrix": {"paths": ["native"]},
                       "override": [{"match": "*", "expect": "fail", "reason": "r",
                                     "failure": "sad"}]}, "t")


# A bwrap sandbox's mount table (sandbox-hostlibs over the trixie runtime), captured.
HOST_TABLE = exposure.host_mounts(
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw\n")
RUNTIME = "/root/.cache/gpu-harness/runtimes/52fbbfb7ccd02981795c14c6/root"
MOUNTS = [
    ["/", "/newroot", "tmpfs", "0:40", "tmpfs", "dir"],
    ["/usr", f"{RUNTIME}/usr", "ext4", "254:0", "/dev/vda", "dir"],
    ["/etc", f"{RUNTIME}/etc", "ext4", "254:0", "/dev/vda", "dir"],
    ["/proc", "/", "proc", "0:41", "proc", "dir"],
    ["/dev", "/", "tmpfs", "0:42", "tmpfs", "dir"],
    ["/dev/null", "/null", "devtmpfs", "0:6", "devtmpfs", "char"],
    ["/dev/dri", "/dri", "devtmpfs", "0:6", "devtmpfs", "dir"],
    ["/run/host-driver/lib/libEGL_mesa.so.0", "/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0.0.0",
     "ext4", "254:0",
     "/dev/vda", "file"],
    ["/run/host-driver/egl/50_mesa.json", "/tmp/gh-1/3/host-driver/egl/50_mesa.json", "ext4",
     "254:0", "/dev/vda",
     "file"],
    ["/tmp/.virgl_test", "/tmp/gh-1/3/vtest.sock", "ext4", "254:0", "/dev/vda", "socket"],
    ["/run/gpu-harness/out", "/out/scenarios/x/probe", "ext4", "254:0", "/dev/vda", "dir"],
]


def test_the_leak_audit_counts_host_files_devices_and_sockets_not_the_runtime_or_the_harness():
    found = exposure.audit(MOUNTS, {"mnt": "mnt:[9]"}, {"mnt": "mnt:[1]"}, RUNTIME, ["/tmp/gh-1/3",
                                                                                     "/out"],
                           host_table=HOST_TABLE)
    assert found.host_files == ["/usr/lib/x86_64-linux-gnu/libEGL_mesa.so.0.0.0"]
    assert found.host_devices == ["/dev/dri"] and found.host_sockets == ["/tmp/.virgl_test"]
    assert not found.whole_host and found.shared_namespaces == []
    whole = exposure.audit([["/", "/", "ext4", "254:0", "/dev/vda", "dir"]] + MOUNTS,
                           {"mnt": "mnt:[1]"}, {"mnt": "mnt:[1]"}, "/", [], host_table=HOST_TABLE)
    assert whole.whole_host and whole.host_file_count is None and whole.shared_namespaces == ["mnt"]
    # what else the host had mounted then is within the whole host, not a path of its own
    assert whole.host_files == []


def test_a_workload_that_never_started_is_audited_from_its_bwrap_command_line(tmp_path):
    import socket

    runtime, own, host = tmp_path / "runtime", tmp_path / "own", tmp_path / "host"
    for folder in (runtime / "usr", own, host / "dri"):
        folder.mkdir(parents=True)
    (host / "libEGL_x.so.1.0").write_bytes(ELF64)
    (host / "libEGL_x.so.1").symlink_to("libEGL_x.so.1.0")
    for name in ("a_dri.so", "b_dri.so"):
        (host / "dri" / name).write_bytes(ELF64)
    (own / "probe.py").write_text("")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(own / "vtest.sock"))
    try:
        argv = ["/usr/bin/bwrap", "--unshare-all", "--ro-bind", str(runtime / "usr"), "/usr",
                "--setenv", "--ro-bind", "/x",  # a value that looks like a flag is a value
                "--ro-bind", str(host / "libEGL_x.so.1"), "/run/host-driver/lib/libEGL_x.so.1",
                "--ro-bind", str(host / "dri"), "/run/host-driver/dri",
                "--dev-bind", "/dev/dri/renderD128", "/dev/dri/renderD128",
                "--ro-bind", str(own / "probe.py"), "/run/gpu-harness/probe.py",
                "--bind", str(own / "vtest.sock"), "/tmp/.virgl_test",
                "--", "python3", "--ro-bind", "/", "/"]  # after --: the workload's own arguments
        found = exposure.from_bwrap_argv(argv, str(runtime), [str(own)])
    finally:
        listener.close()
    assert found is not None and not found.whole_host and found.source.startswith("bwrap argv")
    assert found.host_files == sorted([str(host / "libEGL_x.so.1.0"), str(host / "dri")])
    # the library (its real file) and the two drivers in the folder
    assert found.host_file_count == 3
    assert (found.host_devices == ["/dev/dri/renderD128"]
            and found.host_sockets == ["/tmp/.virgl_test"])
    assert exposure.from_bwrap_argv(["podman", "run"], str(runtime), []) is None
    whole = exposure.from_bwrap_argv(["bwrap", "--ro-bind", "/", "/", "--ro-bind",
                                      str(host / "dri"), "/run/host-driver/dri", "--", "sh"],
                                     str(runtime), [])
    assert whole is not None and whole.whole_host and whole.host_file_count is None
    assert whole.host_files == []


def test_a_guest_exposes_only_its_9p_exports():
    argv = ["qemu", "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on",
            "-virtfs", "local,path=/tmp/gh/out,mount_tag=out,security_model=none"]
    guest = [["/", "/", "9p", "0:20", "root", "dir"], ["/out", "/", "9p", "0:21", "out", "dir"],
             ["/dev", "/", "devtmpfs", "0:5", "devtmpfs", "dir"]]
    found = exposure.audit(guest, {}, {}, "/", ["/tmp/gh"], exposure.virtfs_exports(argv),
                           HOST_TABLE)
    assert found.whole_host and found.separate_kernel and found.host_devices == []


def test_driver_matching_flags_what_differs():
    runtime = drivermatch.driver_match("25.0.7", "mesa 22.3.6", {"name": None, "version": None},
                                      ["/usr/lib/x86_64-linux-gnu/libgallium-25.0.7.so"])
    assert (runtime.used == "runtime" and runtime.mismatch
            and "host Mesa 22.3.6" in str(runtime.note))
    virtual = drivermatch.driver_match("25.0.7", "mesa 22.3.6", {"name": None, "version": None},
                                      ["/usr/lib/x86_64-linux-gnu/libgallium-25.0.7.so"],
                                       direct=False)
    # virgl: the host's Mesa does the work
    assert virtual.used == "runtime" and not virtual.mismatch
    host = drivermatch.driver_match("25.0.7", "nvidia 580.95.05", {"name": "nvidia",
                                                                   "version": "580.95.05"},
                                   ["/run/host-driver/lib/libEGL_nvidia.so.0"])
    assert host.used == "host-driver" and not host.mismatch
    old = drivermatch.driver_match(None, "nvidia 580.95.05", {"name": "nvidia",
                                                              "version": "575.57.08"},
                                  ["/run/host-driver/lib/libEGL_nvidia.so.0"])
    assert old.mismatch and "kernel module 575.57.08" in str(old.note)


def load_capsule():
    """The probes' capsule module, as a probe imports it: its siblings (probelib) beside it."""
    import sys

    if str(PROBE_DIR) not in sys.path:
        sys.path.append(str(PROBE_DIR))
    return importlib.import_module("capsule")


def test_the_capsule_finds_the_dlopen_calls_it_redirects():
    driver = host_driver()
    egl_vendor = next(v.library for v in driver.vendors if v.api == "egl" and v.library)
    imports = load_capsule().elf_imports(os.path.realpath(egl_vendor), ("dlopen",))
    assert imports and all(name == "dlopen" and offset > 0 for offset, name in imports)


def test_a_crash_is_placed_in_the_thread_that_crashed():
    log = ["Fatal Python error: Segmentation fault", "",
           "Thread 0x00007fc606bff6c0 (most recent call first):",
           '  File "/run/gpu-harness/probelib.py", line 414 in watch', "",
           "Current thread 0x00007fc60a1b2040 (most recent call first):",
           '  File "/run/gpu-harness/gles.py", line 131 in open_display',
           '  File "/run/gpu-harness/gles.py", line 350 in render', ""]
    found = diagnosis.classify(None, log, 11, {})
    assert found is not None and found.subject == "SIGSEGV in open_display (gles.py:131)"
