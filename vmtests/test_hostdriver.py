"""The host's driver in a runtime (seed 000 #1-#3), for real: bwrap over the built runtimes,
the host's driver bound in as each attempt does it, the probe rendering or failing, and the
failure classified from the loader's own words. The tests check the classes against the
runtimes' real contents (a library said to be missing is absent, a glibc said to be too old
is that old), not against quoted sentences."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.host import driverlayout, hostdriver
from harness import matrix as matrix_mod
from harness.scenario import paths
from harness.run import runner
from harness.runtimes import pinned_toolset, builds
from harness.judging import verdict
from harness.launch.families.sandbox import BwrapSpec, runtime_layout
from harness.scenario.model import LOCAL, Runtime
from harness.scenario.outcomes import FailureKind

from .conftest import describe, outcome_or_skip, scenarios_from, skip_unless_required

COMPAT = matrix_mod.load(matrix_mod.DEFAULT_MATRIX.parent / "compat.toml")
HOST_DRIVER_PATHS = ["sandbox-hostlibs", "sandbox-hostdeps", "sandbox-hostdeps-glibc",
                     "sandbox-capsule"]
CLASSES = {FailureKind.MISSING_LIBRARY, FailureKind.GLIBC_TOO_OLD, FailureKind.SYMBOL_LOOKUP,
           FailureKind.WRONG_ARCHITECTURE, FailureKind.CRASH}


def need_builder():
    if not shutil.which("mmdebstrap"):
        skip_unless_required("runtimes", "runtime builds",
                             "needs mmdebstrap (apt-get install mmdebstrap arch-test)")


def built(name: str) -> Path:
    need_builder()
    return builds.ensure(name).root


def version(text: str):
    return tuple(int(part) for part in text.split("."))


def check_the_class_against_the_runtime(result) -> None:
    """A failure's class says something true of the runtime it ran on."""
    kind, subject, root = (result.verdict.failure_kind, result.verdict.subject,
                           result.scenario.runtime.root)
    assert kind in CLASSES, describe(result)
    if kind == FailureKind.MISSING_LIBRARY:
        cache = hostdriver.ld_cache(root)
        for name in subject.split(", "):
            assert hostdriver.resolve_library(root, name,
                                              cache) is None, f"{name} is in the runtime after all"
    if kind == FailureKind.GLIBC_TOO_OLD:
        needed, side, has = re.match(r"GLIBC_([\d.]+) needed, (runtime|host) has ([\d.]+)",
                                     subject).groups()
        assert has == hostdriver.glibc_version(root if side == "runtime" else "/")
        assert version(needed) > version(has)


@pytest.mark.parametrize("runtime", [pytest.param(name, marks=pytest.mark.full("every-runtime"))
                                     for name in ("bullseye", "bookworm")] + ["trixie",
                                                                              pytest.param(
                                         "sid", marks=pytest.mark.full("every-runtime"))])
def test_the_host_driver_paths_on_older_same_and_newer_runtimes(runtime, run_scenarios):
    need_builder()
    chosen = [s for s in COMPAT.scenarios if s.runtime.name == runtime
              and s.path_id in HOST_DRIVER_PATHS
              and s.machine == LOCAL]
    assert len(chosen) == sum(len(paths.get(p).probes) for p in HOST_DRIVER_PATHS)  # GL and Vulkan
    for result in run_scenarios(chosen):
        outcome = outcome_or_skip(result)
        assert outcome in (verdict.PASS, verdict.EXPECTED_FAIL), describe(result)
        if outcome == verdict.PASS:
            loaded = [p for p in result.report.raw["libraries"]
                      if p.startswith(driverlayout.PREFIX + "/")]
            assert loaded, "rendered without the host's driver"
            assert result.driver_match.used == "host-driver"
        else:
            check_the_class_against_the_runtime(result)
        if result.verdict.failure_kind == FailureKind.CRASH:
            # The capsule's Vulkan on sid: the host's loader dies in its first call, in the libc
            # loaded anew into the capsule (the crash's frames name the runtime's libc).
            assert result.scenario.id == "sandbox-capsule/sid/vulkan", describe(result)
            assert result.verdict.subject.startswith("SIGSEGV in vkCreateInstance"), \
                describe(result)
            assert "libc.so.6" in result.verdict.reason, describe(result)
        assert result.exposure is not None and result.exposure.host_files, ("the host's driver "
                                                                            "files are exposed")


@pytest.mark.full("every-runtime")
def test_a_dependency_removed_from_the_runtime_is_named(tmp_path, run_scenarios):
    """A runtime with one of the host driver's dependencies taken out: attempt #1 says which."""
    source = built("bookworm")
    driver = hostdriver.discover("/")
    vendor = next(v.library for v in driver.vendors if v.api == "egl" and v.library)
    copy = tmp_path / "broken"
    subprocess.run(["cp", "-al", str(source), str(copy)], check=True)
    cache = hostdriver.ld_cache(str(copy))
    removed = None
    for name, _ in driverlayout.resolve("/", vendor).found:
        found = hostdriver.resolve_library(str(copy), name, cache)
        if not driverlayout.is_glibc(name) and found:
            removed = name
            for path in {found, os.path.realpath(found)}:
                os.unlink(path)
            break
    assert removed, f"{vendor} has no dependency in the runtime to remove"
    (scenario,) = scenarios_from({"matrix": {"paths": ["sandbox-hostlibs"], "runtimes": ["broken"]},
                                  "runtimes": {"broken": {"kind": "rootfs", "root": str(copy)}}})
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.FAIL, describe(result)
    assert result.verdict.failure_kind == FailureKind.MISSING_LIBRARY, describe(result)
    assert removed in result.verdict.subject.split(", "), describe(result)


@pytest.mark.full("every-runtime")
def test_a_newer_hosts_driver_needs_a_newer_glibc_than_an_older_runtime_has(tmp_path):
    """The driver of a newer host (trixie's Mesa, through --toolset runtime:trixie-host) in the
    bookworm runtime: glibc-too-old, naming a version the runtime lacks and the driver's has."""
    bookworm = built("bookworm")
    toolset = pinned_toolset.load("runtime:trixie-host")
    driver_root = toolset.path("host-driver")
    (scenario,) = [s for s in COMPAT.scenarios if s.id == "sandbox-hostlibs/bookworm/gl"]
    (result,) = runner.run([scenario], toolset, runner.RunOptions(out_dir=tmp_path / "out"))
    assert result.verdict.failure_kind == FailureKind.GLIBC_TOO_OLD, describe(result)
    needed, has = re.match(r"GLIBC_([\d.]+) needed, runtime has ([\d.]+)",
                           result.verdict.subject).groups()
    assert has == hostdriver.glibc_version(str(bookworm))
    assert version(has) < version(needed) <= version(hostdriver.glibc_version(driver_root))


@pytest.fixture
def bookworm_scenario():
    built("bookworm")

    def make(path: str, **env):
        declaration = {"matrix": {"paths": [path], "runtimes": ["bookworm"]},
                       "runtimes": {"bookworm": {"kind": "debootstrap"}}}
        if env:
            declaration["override"] = [{"match": "*", "env": env}]
        (scenario,) = scenarios_from(declaration)
        return scenario
    return make


@pytest.mark.full("every-runtime")
def test_the_capsule_without_its_dlopen_redirect_crashes_in_mesas_global_dlopen(bookworm_scenario,
                                                                                run_scenarios):
    """Mesa opens its DRI driver with RTLD_GLOBAL; a dlmopen() namespace has no global scope and
    glibc crashes. That is why the capsule redirects dlopen (as libcapsule does)."""
    (result,) = run_scenarios([bookworm_scenario("sandbox-capsule",
                                                 GPU_HARNESS_CAPSULE_NO_REDIRECT="1")])
    outcome_or_skip(result)
    assert result.verdict.failure_kind == FailureKind.CRASH, describe(result)
    assert re.match(r"SIGSEGV in (open_display|create_context)",
                    result.verdict.subject), describe(result)


@pytest.mark.full("every-runtime")
def test_the_capsule_renders_with_the_hosts_driver_kept_out_of_the_apps_namespace(bookworm_scenario,
                                                                                  run_scenarios):
    (result,) = run_scenarios([bookworm_scenario("sandbox-capsule")])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    capsule = result.report.raw["capsule"]
    assert capsule["namespace"] > 0 and "libEGL_mesa.so.0" in capsule["dlopen_redirected_in"]
    # Mesa opened its DRI driver through the redirect; LLVM asked for the program itself (NULL).
    assert any(str(call).endswith("_dri.so")
               for call in capsule["dlopen_calls"]) and None in capsule["dlopen_calls"]
    # The host's libraries are mapped, but only the capsule loaded them: the app never named one.
    assert [p for p in result.report.raw["libraries"] if p.startswith(driverlayout.PREFIX + "/")]
    # The dynamic linker's own lists: every host library is in the capsule's namespace, none in
    # the app's; the capsule has a libc of its own (the runtime's, loaded anew), the app its own.
    app, inside = capsule["namespaces"]["app"], capsule["namespaces"]["capsule"]
    host = [p for p in inside if p.startswith(driverlayout.PREFIX + "/")]
    assert len(host) >= capsule["libraries"] > 10, inside  # and the DRI driver Mesa opened in it
    assert not [p for p in app if p.startswith(driverlayout.PREFIX + "/")], app
    assert any(p.endswith("/libc.so.6") for p in app) and any(p.endswith("/libc.so.6")
                                                              for p in inside)


@pytest.mark.full("every-runtime")
def test_the_capsule_runs_the_hosts_vulkan_loader_and_icd_in_its_namespace(run_scenarios):
    """Vulkan through the capsule: the host's loader (libvulkan.so.1) is the entry point, its ICD
    is opened through the redirect, and the app's namespace holds neither."""
    built("bookworm")
    (scenario,) = scenarios_from({"matrix": {"paths": ["sandbox-capsule"], "runtimes": ["bookworm"],
                                             "probes": ["vulkan"]},
                                  "runtimes": {"bookworm": {"kind": "debootstrap"}}})
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    capsule = result.report.raw["capsule"]
    assert any(str(call).startswith(driverlayout.LIB_DIR + "/libvulkan_")
               for call in capsule["dlopen_calls"]), capsule
    app, inside = capsule["namespaces"]["app"], capsule["namespaces"]["capsule"]
    assert driverlayout.LIB_DIR + "/libvulkan.so.1" in inside
    assert not [p for p in app if p.startswith(driverlayout.PREFIX + "/")], app


def test_binding_over_a_path_the_read_only_runtime_lacks_fails_in_bwrap(toolset):
    """Why the host driver goes under /run/host-driver: binding it where the host has it needs a
    mount point the runtime's read-only /usr does not have."""
    root = built("trixie")
    if not toolset.found("bwrap"):
        skip_unless_required("sandbox-hostlibs", "bwrap", "not installed")
    missing = "/usr/lib/x86_64-linux-gnu/libgpu-harness-absent.so.0"
    assert not (root / missing.lstrip("/")).exists()
    spec = BwrapSpec(bwrap=toolset.path("bwrap"), layout=runtime_layout(Runtime("trixie",
                                                                                "debootstrap",
                                                                                str(root))),
                     command=["/usr/bin/true"], ro_files=[("/etc/hostname", missing)])
    done = subprocess.run(spec.argv(), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"Can't create file at {missing}" in done.stderr


@pytest.mark.full("every-runtime")
def test_the_leak_audit_per_path(bookworm_scenario, run_scenarios, toolset):
    scenarios = [bookworm_scenario(path) for path in ("vtest-virgl", "sandbox-hostlibs",
                                                      "sandbox-hostdeps")]
    scenarios += scenarios_from({"matrix": {"paths": ["native"]}})
    results = {r.scenario.path_id: r for r in run_scenarios(scenarios)}
    for result in results.values():
        outcome_or_skip(result)
        assert result.exposure is not None, describe(result)
    vtest, libs, deps, native = (results[p].exposure for p in ("vtest-virgl", "sandbox-hostlibs",
                                                              "sandbox-hostdeps", "native"))
    assert (vtest.host_files, vtest.host_file_count, vtest.host_devices) == ([], 0, [])
    assert vtest.host_sockets == ["/tmp/.virgl_test"] and vtest.shared_namespaces == []
    bound = json.loads((results["sandbox-hostlibs"].result_dir / "host-driver.json").read_text())
    driver_files = {os.path.realpath(entry["file"])
                    for entry in bound["libraries"]} | set(bound["driver"]["dri_dirs"])
    assert set(libs.host_files) <= driver_files and libs.host_file_count > 0
    assert deps.host_file_count > libs.host_file_count
    assert native.whole_host and "mnt" in native.shared_namespaces


def test_a_guests_exposure_is_its_9p_exports_under_its_own_kernel(run_scenarios):
    """A VM shares no namespace with the host; what it sees of the host is what QEMU exports:
    the runtime's tree (nothing of the host) or, on the host runtime, the host's root."""
    built("trixie")
    scenarios = scenarios_from({"matrix": {"paths": ["vm-headless"], "runtimes": ["host", "trixie"],
                                           "probes": ["gl"]},
                                "runtimes": {"trixie": {"kind": "debootstrap"}},
                                "override": [{"match": "*", "timeout_s": 120}]})
    results = {r.scenario.runtime.name: r for r in run_scenarios(scenarios)}
    for result in results.values():
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        assert result.exposure is not None and result.exposure.separate_kernel, describe(result)
        assert result.exposure.shared_namespaces == [] and result.exposure.host_devices == []
    own, host = results["trixie"].exposure, results["host"].exposure
    assert not own.whole_host and (own.host_files, own.host_file_count) == ([], 0)
    assert host.whole_host and host.host_file_count is None
