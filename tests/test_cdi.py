"""CDI specs: the harness's own against the CDI project's schema, cdi check on fixture trees for
each stale case and on the spec nvidia-ctk writes, and bad specs as input (one line, exit 2)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.host import cdi, cdicheck, diagnosis, hostdriver
from harness.core.errors import InputError
from harness.scenario.outcomes import FailureKind
from harness.scenario.pathspec import DriverMode

from .files import write
from .driver_trees import LIB

NVIDIA_CTK = Path(__file__).parent / "files" / "cdi" / "nvidia-ctk-generate.yaml"


def live(root, version):
    return cdicheck.LiveDriver(hostdriver.discover(str(root)), version)


def stale(findings):
    return [f.text for f in findings if f.stale]


def written(driver, tmp_path, mode=DriverMode.LIBS, nodes=()):
    out = tmp_path / "spec" / "gpu-harness.json"
    cdi.generate(driver, mode, out, nodes=list(nodes)).write(out)
    return out


@pytest.mark.parametrize("tree", ["mesa_tree", "nvidia_tree"])
def test_the_generated_spec_is_a_cdi_spec_and_current_for_its_driver(tree, tmp_path, request):
    root = request.getfixturevalue(tree)
    driver = hostdriver.discover(str(root))
    out = written(driver, tmp_path, nodes=["/dev/null"])
    spec = json.loads(out.read_text())
    assert list(cdicheck.validator().iter_errors(spec)) == []
    assert spec["cdiVersion"] == "0.5.0" and spec["kind"] == "gpu-harness.dev/gpu"
    assert [d["name"] for d in spec["devices"]] == ["all"]  # /dev/null is no render node
    edits = spec["devices"][0]["containerEdits"]
    assert edits["deviceNodes"] == [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                                     "permissions": "rw"}]
    mounted = {m["containerPath"]: m["hostPath"] for m in edits["mounts"]}
    # each vendor file rewritten beside the spec, naming the library where it is
    for vendor in driver.vendors:
        if vendor.library:
            inside = f"/run/host-driver/{vendor.api}/{os.path.basename(vendor.source)}"
            rewritten = json.loads(Path(mounted[inside]).read_text())
            assert mounted[rewritten["ICD"]["library_path"]] == vendor.library
            assert Path(mounted[inside]).parent.parent == tmp_path / "spec" / "gpu-harness.files"
    assert stale(cdicheck.check(spec, live(root, hostdriver.driver_version(driver, None)))) == []


def test_the_nvidia_driver_upgraded_under_the_spec_is_named(nvidia_tree, tmp_path):
    spec = json.loads(written(hostdriver.discover(str(nvidia_tree)), tmp_path).read_text())
    # The upgrade: the release's files replaced by the next one's, the .so.0 links moved to them.
    for path in sorted((nvidia_tree / LIB).glob("*580.95.05")):
        path.rename(str(path).replace("580.95.05", "590.44.01"))
    for link in ("libEGL_nvidia.so.0", "libGLX_nvidia.so.0"):
        (nvidia_tree / LIB / link).unlink()
        (nvidia_tree / LIB / link).symlink_to(link.replace(".so.0", ".so.590.44.01"))
    found = stale(cdicheck.check(spec, live(nvidia_tree, "nvidia 590.44.01")))
    eglcore = nvidia_tree / LIB / "libnvidia-eglcore.so.580.95.05"
    assert (f"{eglcore} (mounted at /run/host-driver/lib/libnvidia-eglcore.so.580.95.05) does not "
            "exist") in found
    # eglcore, glcore, glsi, tls
    assert len([line for line in found if line.endswith("does not exist")]) == 4


def test_a_library_of_another_release_than_the_live_driver_is_stale(nvidia_tree, tmp_path):
    spec = json.loads(written(hostdriver.discover(str(nvidia_tree)), tmp_path).read_text())
    # the kernel module moved on
    found = stale(cdicheck.check(spec, live(nvidia_tree, "nvidia 590.44.01")))
    assert (f"{nvidia_tree / LIB / 'libEGL_nvidia.so.0'} is driver 580.95.05; the live driver is "
            "590.44.01") in found


def test_mesa_is_judged_by_the_banner_in_its_drivers(mesa_tree, tmp_path):
    write(mesa_tree, f"{LIB}/libvulkan_lvp.so", b"\x7fELF\x02\0\0\0Mesa 22.3.6\0")
    spec = json.loads(written(hostdriver.discover(str(mesa_tree)), tmp_path).read_text())
    assert stale(cdicheck.check(spec, live(mesa_tree, "mesa 22.3.6"))) == []
    found = stale(cdicheck.check(spec, live(mesa_tree, "mesa 25.0.7")))
    assert found == [f"{mesa_tree / LIB / 'libvulkan_lvp.so'} is Mesa 22.3.6; the live driver is "
                     "Mesa 25.0.7"]


def test_thirty_two_bit_libraries_are_said_either_way(mesa_tree, nvidia_tree, tmp_path):
    notes = [f.text for f in cdicheck.check(json.loads(written(hostdriver.discover(str(mesa_tree)),
                                                               tmp_path)
                                                       .read_text()), live(mesa_tree, None))
             if not f.stale]
    assert notes == ["no 32-bit libraries: a 32-bit app (Steam, Wine) gets no driver, while the "
                     "host has 1 "
                     "(libvulkan_lvp.so, ...)"]


def spec_with(**edits):
    return {"cdiVersion": "0.5.0", "kind": "example.com/gpu",
            "devices": [{"name": "all", "containerEdits": edits}]}


def test_device_nodes_hooks_and_unmounted_libraries(tmp_path, mesa_tree):
    icd = write(tmp_path, "icd.json", {"ICD": {"library_path": "/usr/lib/libvulkan_gone.so"}})
    spec = spec_with(deviceNodes=[{"path": "/dev/null", "major": 1, "minor": 4},
                                  {"path": "/dev/gpu-harness-none"},
                                  {"path": "/dev/dri/renderD128", "hostPath": str(icd)}],
                     hooks=[{"hookName": "createContainer",
                             "path": "/usr/bin/nvidia-cdi-hook-gone"}],
                     mounts=[{"hostPath": str(icd), "containerPath": "/etc/vulkan/icd.d/x.json"}])
    assert stale(cdicheck.check(spec, live(mesa_tree, None)))[:5] == [
        "device node /dev/null is 1:3 here; the spec says 1:4",
        "device node /dev/gpu-harness-none does not exist",
        f"device node {icd} is not a device",
        "/etc/vulkan/icd.d/x.json names /usr/lib/libvulkan_gone.so, which the spec does not mount",
        f"the live driver's egl file {mesa_tree}/usr/share/glvnd/egl_vendor.d/50_mesa.json is not "
        "in the spec",
    ]


def test_the_spec_nvidia_ctk_writes_is_read_and_judged(tmp_path):
    root = tmp_path / "driver"
    for name in ("lib/x86_64-linux-gnu/libcuda.so.999.88.77",
                 "lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.999.88.77"):
        write(root, name, b"\x7fELF\x02")
    spec_file = tmp_path / "nvidia.yaml"
    spec_file.write_text(NVIDIA_CTK.read_text().replace("{{ .driverRoot }}", str(root)))
    spec = cdicheck.load(str(spec_file))
    assert [d["name"] for d in spec["devices"]] == ["0", "all"]
    empty = cdicheck.LiveDriver(hostdriver.HostDriver(str(root), [], [], {}), "nvidia 999.88.77")
    assert stale(cdicheck.check(spec, empty)) == [
        f"device node {root}/dev/nvidiactl does not exist",
                                                  f"device node {root}/dev/nvidia0 does not exist",
        "hook createContainer: /usr/bin/nvidia-cdi-hook does not exist"]
    # the driver upgraded, the spec not regenerated
    moved = cdicheck.LiveDriver(empty.driver, "nvidia 1000.1.2")
    assert (f"{root}/lib/x86_64-linux-gnu/libcuda.so.999.88.77 is driver 999.88.77; the live "
            "driver "
            "is 1000.1.2") \
        in stale(cdicheck.check(spec, moved))


@pytest.mark.parametrize("name, content, message", [
    ("a.json", "{", "a.json: not JSON: Expecting property name"),
    ("a.yaml", "kind: [", "a.yaml: not YAML: while parsing"),
    ("a.json", "[]", "a.json: not a CDI spec: [] is not of type 'object' (at the top)"),
    ("a.json", '{"cdiVersion": "0.5.0", "kind": "x.com/y"}',
     "a.json: not a CDI spec: 'devices' is a required property"),
    ("a.json", '{"cdiVersion": "0.5.0", "kind": "x.com/y", "devices": [{"name": "all"}]}',
     "a.json: not a CDI spec: 'containerEdits' is a required property (at devices/0)"),
    ("a.json", b"\xff\xfe", "a.json: cannot read it"),
])
def test_bad_specs_are_one_line_input_errors(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as caught:
        cdicheck.load(str(path))
    assert str(caught.value).startswith(f"{tmp_path}/{message}"), str(caught.value)


def gpu_harness(*args, cwd):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
                          timeout=300)


@pytest.mark.skipif(not hostdriver.discover("/").found,
                    reason="this host has no EGL or Vulkan driver to make a spec for")
def test_cdi_generate_then_check_on_this_host(tmp_path):
    done = gpu_harness("cdi", "generate", "--out", "specs/gpu-harness.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote specs/gpu-harness.json (gpu-harness.dev/gpu: all" in done.stderr
    checked = gpu_harness("cdi", "check", "specs/gpu-harness.json", cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.splitlines()[-1].startswith(
        "specs/gpu-harness.json: current for the live driver "
        "(mesa "), checked.stdout + checked.stderr
    # the rewritten vendor files gone: stale
    shutil.rmtree(tmp_path / "specs" / "gpu-harness.files")
    again = gpu_harness("cdi", "check", "specs/gpu-harness.json", cwd=tmp_path)
    assert (again.returncode == 1 and "stale: " in again.stdout
            and again.stdout.splitlines()[-1].startswith("specs/gpu-harness.json: stale (")), \
        again.stdout
    for args in (["cdi", "check", "nonexistent.json"], ["cdi", "generate", "--out", "x.yaml"],
                 ["cdi", "check", "."]):
        bad = gpu_harness(*args, cwd=tmp_path)
        assert (bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
                and "Traceback" not in bad.stderr), bad.stderr


def test_podmans_words_for_a_stale_spec_are_classified():
    """The lines podman 4.3.1 and runc wrote for a spec whose mount source was gone, and for a
    device no spec has."""
    gone = ('Error: runc: runc create failed: unable to start container process: error during '
            'container init: error '
            'mounting "/nonexistent/libEGL_nvidia.so.580.1" to rootfs at '
            '"/run/host-driver/lib/libEGL_nvidia.so.580.1": '
            'stat /nonexistent/libEGL_nvidia.so.580.1: no such file or directory: OCI runtime '
            'attempted to invoke a '
            'command that was not found')
    found = diagnosis.classify(None, [gone], None, {})
    assert found is not None and found.kind is FailureKind.STALE_SPEC
    assert found.subject == ("/nonexistent/libEGL_nvidia.so.580.1 (mounted at /run/host-driver/lib/"
                             "libEGL_nvidia.so.580.1) does not exist")
    unresolved = diagnosis.classify(None,
                                    ["Error: setting up CDI devices: unresolvable CDI devices "
                                           "gpu-harness.dev/gpu=all"], None, {})
    assert unresolved is not None and unresolved.subject == ("no CDI spec provides "
                                                             "gpu-harness.dev/gpu=all")
