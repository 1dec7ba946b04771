"""The `machine` fixture: a test drives a real guest itself -- commands, screenshots, events.
These are also the examples for users writing their own VM tests next to the matrix."""
import json
from pathlib import Path

import numpy
import pytest
from PIL import Image

from harness.launch.families.vm_guest import GuestError
from harness.launch.target import TargetError

pytestmark = pytest.mark.vm


def test_commands_run_in_the_guest_with_exit_code_and_output(machine, toolset):
    assert machine.succeed("uname -r").strip() == toolset.tools["kernel"].version
    result = machine.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.output) == (3, "out\nerr\n")
    # It is the guest, not the host: one CPU, the guest's memory, QEMU's CPU model.
    assert machine.succeed("grep -c ^processor /proc/cpuinfo").strip() == "1"
    mem_kib = int(machine.succeed("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    assert mem_kib <= machine.facts["memory_mb"] * 1024
    assert "QEMU" in machine.succeed("grep -m1 'model name' /proc/cpuinfo")
    # The runtime root is shared read-only.
    assert "Read-only file system" in machine.fail("touch /usr/gpu-harness-write-test")
    with pytest.raises(GuestError, match="exit code 1"):
        machine.succeed("false")


FILL_FRAMEBUFFER = """
python3 - <<'PY'
size = open('/sys/class/graphics/fb0/virtual_size').read().strip().split(',')
width, height = int(size[0]), int(size[1])
stride = int(open('/sys/class/graphics/fb0/stride').read())
red, blue = ((b'\\x00\\x00\\xff\\x00' * width).ljust(stride, b'\\0'),
             (b'\\xff\\x00\\x00\\x00' * width).ljust(stride, b'\\0'))
with open('/dev/fb0', 'wb') as fb:
    fb.write(red * (height // 2) + blue * (height - height // 2))
print(width, height)
PY
"""


@pytest.mark.guest("vm-virtio-2d")
def test_screenshot_shows_what_the_guest_put_on_its_display(machine):
    width, height = map(int, machine.succeed(FILL_FRAMEBUFFER).split())
    for _ in range(20):  # the fbdev damage worker flushes to the display shortly after the write
        pixels = numpy.asarray(Image.open(machine.screenshot()).convert("RGB"))
        if tuple(pixels[10, 10]) == (255, 0, 0):
            break
    assert pixels.shape[:2] == (height, width)
    assert tuple(pixels[10, 10]) == (255, 0,
                                     0) and tuple(pixels[height // 2 - 1, width - 1]) == (255, 0, 0)
    assert tuple(pixels[height // 2, 0]) == (0, 0,
                                             255) and tuple(pixels[height - 1, width - 1]) == (0, 0,
                                                                                               255)


@pytest.mark.guest("vm-virgl")
def test_a_users_gl_program_renders_through_virgl_in_the_guest(machine):
    # The probe is in the guest at /run/gpu-harness/gles.py; any GL program would do the same.
    output = machine.succeed("python3 -S /run/gpu-harness/gles.py --out /tmp --frames 2",
                             timeout_s=120)
    result = json.loads(output.strip().splitlines()[-1])
    assert result["ok"] and result["renderer"].startswith("virgl ("), result


def test_wait_for_event_sees_the_guest_reset(machine):
    # Guests boot with acpi=off (faster), so a guest ends itself by a reset, which QEMU's
    # -no-reboot turns into a SHUTDOWN event.
    machine.succeed("(sleep 0.2; echo b > /proc/sysrq-trigger) > /dev/null 2>&1 &")
    event = machine.wait_for_event("SHUTDOWN", timeout_s=30)
    assert event["data"]["guest"] is True and event["data"]["reason"] == "guest-reset"
    with pytest.raises(GuestError, match="not running|closed its command channel"):
        machine.run("true")


@pytest.mark.guest("vtest-virgl")
def test_a_sandbox_target_runs_commands_through_the_path(machine):
    """The same fixture for a sandbox path: its virgl_test_server stays up, each command runs in
    a fresh bwrap sandbox with no /dev/dri, and a GL program renders through virgl."""
    assert machine.run("exit 4").exit_code == 4
    machine.fail("ls /dev/dri")
    machine.fail("touch /usr/x")
    assert machine.succeed("cat /proc/self/uid_map; echo $GALLIUM_DRIVER").split()[-1] == "virpipe"
    assert (machine.succeed("python3 -S -c 'import os; print(os.path.exists(\"/home\"))'")
            == "False\n")
    with pytest.raises(TargetError, match="has no display"):
        machine.screenshot()


@pytest.mark.guest("vtest-virgl")
def test_a_sandbox_target_renders_a_users_gl_program(machine, tmp_path):
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "gl-renderer.py"
    out = machine.succeed("cat > /tmp/p.py "
                          f"<<'EOF_PROBE'\n{example.read_text()}\nEOF_PROBE\npython3 -S /tmp/p.py")
    assert out.strip().splitlines()[-1].startswith("virgl (")
