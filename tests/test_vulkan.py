"""The Vulkan probe without a device: its ctypes structs against the Vulkan headers (compiled by
the C compiler), its SPIR-V against a fresh compile of its GLSL, VkResult decoding, the watchdog
that turns a driver call that never returns into a report, and the renderer rules per API."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from harness.scenario import paths, spirv
from harness.scenario.probes import PROBE_DIR

sys.path.insert(0, str(PROBE_DIR))
import probelib  # noqa: E402
import vkapi  # noqa: E402

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}
STRUCTS = [name for name, value in vars(vkapi).items()
           if isinstance(value, type) and issubclass(value, (ctypes.Structure, ctypes.Union))
           and value.__module__ == vkapi.__name__]
# carried as raw words: size only
OPAQUE = {"PhysicalDeviceLimits", "PhysicalDeviceSparseProperties"}


def need(tool: str, package: str):
    if shutil.which(tool) is None:
        if "vulkan" in REQUIRED:
            pytest.fail(f"{tool} is required here ({package})")
        pytest.skip(f"needs {tool} ({package})")


def c_layouts(tmp_path):
    """sizeof and offsetof of every struct the probe declares, as the C compiler lays them out."""
    need("gcc", "gcc")
    if not os.path.exists("/usr/include/vulkan/vulkan.h"):
        if "vulkan" in REQUIRED:
            pytest.fail("vulkan/vulkan.h is required here (libvulkan-dev)")
        pytest.skip("needs vulkan/vulkan.h (libvulkan-dev)")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <vulkan/vulkan.h>",
             "int main(void) {"]
    for name in STRUCTS:
        lines.append(f'printf("{name} @sizeof %zu\\n", sizeof(Vk{name}));')
        if name in OPAQUE:
            continue
        for field_name, *_ in getattr(vkapi, name)._fields_:
            lines.append(f'printf("{name} {field_name} %zu\\n", offsetof(Vk{name}, {field_name}));')
    lines += ["return 0;", "}"]
    source, program = tmp_path / "layout.c", tmp_path / "layout"
    source.write_text("\n".join(lines) + "\n")
    subprocess.run(["gcc", "-o", str(program), str(source)], check=True, capture_output=True,
                   text=True)
    found = {}
    for line in subprocess.run([str(program)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        struct, field_name, value = line.split()
        found[(struct, field_name)] = int(value)
    return found


def test_every_struct_matches_the_vulkan_headers(tmp_path):
    layouts = c_layouts(tmp_path)
    assert len(STRUCTS) > 40
    for name in STRUCTS:
        struct = getattr(vkapi, name)
        assert ctypes.sizeof(struct) == layouts[(name, "@sizeof")], f"sizeof(Vk{name})"
        if name in OPAQUE:
            continue
        for field_name, *_ in struct._fields_:
            assert (getattr(struct, field_name).offset
                    == layouts[(name, field_name)]), f"Vk{name}.{field_name}"


def test_the_embedded_spirv_is_the_compiled_glsl():
    need("glslangValidator", "glslang-tools")
    fresh = spirv.compiled()
    assert set(fresh) == {"scene.vert", "scene.frag"}
    assert spirv.embedded() == fresh, "run scripts/spirv after editing a shader"
    for data in fresh.values():
        assert data[:4] == b"\x03\x02\x23\x07"  # the SPIR-V magic number, little-endian


def test_a_failing_call_names_its_step_and_result():
    assert vkapi.result_name(-4) == "VK_ERROR_DEVICE_LOST" and vkapi.result_name(-1000069000) == \
        "VK_ERROR_OUT_OF_POOL_MEMORY" and vkapi.result_name(-77) == "VkResult -77"
    steps = []
    loader = object.__new__(vkapi.Vulkan)
    loader.step = steps.append
    with pytest.raises(probelib.ProbeError,
                       match="^vkAllocateMemory failed: VK_ERROR_OUT_OF_DEVICE_MEMORY$") as info:
        loader.check("vkAllocateMemory", lambda: -2)
    assert (info.value.step, info.value.code) == ("vkAllocateMemory",
                                                  "VK_ERROR_OUT_OF_DEVICE_MEMORY")
    assert steps == ["vkAllocateMemory"]
    # A command that returns nothing is a step of its own as well: a hang in it is named.
    loader.fn = {"vkCmdDraw": loader.stepped("vkCmdDraw", lambda *args: None)}
    loader.CmdDraw(1, 2)
    assert steps[-1] == "vkCmdDraw"
    assert vkapi.version_text((1 << 22) | (3 << 12) | 230) == "1.3.230"


FRAME = ("import sys, time; sys.path.insert(0, sys.argv[1]); import probelib\n"
         "def render(args, step, seen):\n"
         "    seen['renderer'] = 'Virtio-GPU Venus (test)'\n"
         "    step('vkCreateDevice')\n"
         "{body}\n"
         "sys.exit(probelib.run('vulkan', 'vulkan', 1, "
         "probelib.arguments('t').parse_args(sys.argv[2:]), render,"
         " lambda: {{}}))\n")


def probe_frame(tmp_path, body):
    """probelib.run around a render function of the test's own: exit code, the report line."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", FRAME.format(body=body), str(PROBE_DIR), "--out",
                           str(tmp_path),
                           "--step-timeout", "0.3"], capture_output=True, text=True, timeout=20)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return done.returncode, report, time.monotonic() - started


def test_a_step_that_never_returns_is_reported_by_name(tmp_path):
    code, report, took = probe_frame(tmp_path, "    step('vkQueueSubmit'); time.sleep(30)")
    assert code == 3 and took < 10
    assert report["error"] == "step vkQueueSubmit: no answer from the driver after 0.3 s"
    assert (report["failed_step"] == "vkQueueSubmit" and report["hung"] is True
            and report["ok"] is False)
    assert report["renderer"] == "Virtio-GPU Venus (test)"  # what was seen before the hang is kept


def test_a_failed_step_and_its_result_are_fields_of_the_report(tmp_path):
    code, report, _ = probe_frame(tmp_path,
                                  "    raise probelib.ProbeError('vkMapMemory failed: "
                                  "VK_ERROR_MEMORY_MAP_FAILED',"
                                            " step='vkMapMemory', "
                                            "code='VK_ERROR_MEMORY_MAP_FAILED')")
    assert code == 1 and report["ok"] is False and "hung" not in report
    assert (report["failed_step"], report["result_code"]) == ("vkMapMemory",
                                                              "VK_ERROR_MEMORY_MAP_FAILED")


def test_renderer_rules_per_api():
    software, native = paths.get("software"), paths.get("native")
    assert paths.expected_renderer(software, "vulkan", host_has_gpu=True) == paths.LLVMPIPE
    assert paths.expected_renderer(native, "vulkan", host_has_gpu=True) == paths.NOT_SOFTWARE
    assert paths.expected_renderer(paths.get("vtest-virgl"), "vulkan", host_has_gpu=False) is None
    assert "vulkan" not in paths.get("vtest-virgl").probes and "vulkan" in software.probes
    # Venus is promised whatever the host has: lavapipe there is a silent fallback, not a pass.
    for path in ("vtest-venus", "vm-venus"):
        for gpu in (True, False):
            assert paths.expected_renderer(paths.get(path), "vulkan",
                                           host_has_gpu=gpu) == paths.VENUS
    assert paths.expected_renderer(paths.get("vm-venus"), "gl", host_has_gpu=False) == paths.VIRGL
    assert paths.expected_renderer(paths.get("vm-headless"), "vulkan",
                                   host_has_gpu=True) == paths.LLVMPIPE


SERVER_SAID = ["vtest_resource_create_blob called virgl_renderer_resource_export_blob which failed "
               "(-22)",
               "client failed: VTEST_CLIENT_ERROR_COMMAND_DISPATCH"]


def test_the_classifier_takes_the_probes_step_fields_and_the_servers_words():
    from harness.host import diagnosis
    from harness.scenario.outcomes import FailureKind

    # The fields win over the words: the step the watchdog saw is the one that hung.
    hung = {"ok": False, "error": "step vkQueueSubmit: no answer from the driver after 10 s",
            "failed_step": "vkMapMemory", "hung": True}
    found = diagnosis.classify(hung, [], None, {}, SERVER_SAID)
    assert (found.kind, found.subject) == (FailureKind.DRIVER_HANG, "vkMapMemory")
    assert found.evidence == SERVER_SAID[0]  # the cause the server logged, not its consequence
    failed = {"ok": False, "error": "probe failed", "failed_step": "vkEnumeratePhysicalDevices",
              "result_code": "VK_ERROR_INITIALIZATION_FAILED"}
    found = diagnosis.classify(failed, [], None, {}, [])
    assert (found.kind, found.subject) == (FailureKind.VULKAN_ERROR,
                                           "vkEnumeratePhysicalDevices "
                                           "VK_ERROR_INITIALIZATION_FAILED")
    # A report from before the fields (or a probe that cannot set them): its words.
    words = {"ok": False, "error": "vkAllocateMemory failed: VK_ERROR_OUT_OF_DEVICE_MEMORY"}
    found = diagnosis.classify(words, [], None, {}, [])
    assert (found.kind, found.subject) == (FailureKind.VULKAN_ERROR,
                                           "vkAllocateMemory VK_ERROR_OUT_OF_DEVICE_MEMORY")
