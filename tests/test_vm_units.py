from harness import matrix
from harness.scenario.outcomes import Failure, FailureKind
from harness.core.templating import render
from harness.launch.vm import accel, console, modules
from harness.launch.vm.console import guest_exit
from harness.launch.vm.qemu import QemuSpec
from harness.launch.vm.xcapture import window_region
from harness.core.errors import ToolMissing

DEP = """\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/gpu/drm/virtio/virtio-gpu.ko.xz: kernel/drivers/gpu/drm/drm.ko
kernel/drivers/gpu/drm/drm.ko:
"""


def test_module_resolution_orders_dependencies_first():
    table = modules.parse_modules_dep(DEP)
    order = modules.resolve(["9p", "virtio_gpu"], table)
    assert order.index("kernel/fs/netfs/netfs.ko") < order.index("kernel/fs/fscache/fscache.ko") \
        < order.index("kernel/fs/9p/9p.ko")
    assert order[-2:] == ["kernel/drivers/gpu/drm/drm.ko",
                          "kernel/drivers/gpu/drm/virtio/virtio-gpu.ko.xz"]
    assert len(order) == len(set(order)) == 6


def test_builtin_modules_need_nothing():
    table = modules.parse_modules_dep(DEP)
    assert modules.resolve(["9p"], table, builtin={"fscache", "netfs"}) == [
        "kernel/net/9p/9pnet.ko", "kernel/fs/9p/9p.ko"]


def test_unknown_module_is_an_error():
    import pytest
    with pytest.raises(ToolMissing, match="neither built in nor in modules.dep"):
        modules.resolve(["nope"], modules.parse_modules_dep(DEP))


def test_kvm_decision():
    assert accel.decide(False, None) == accel.Accel("tcg", "no usable /dev/kvm")
    assert accel.decide(True, accel.KvmProbe(True, 0.8, "booted")).name == "kvm"
    hung = accel.decide(True, accel.KvmProbe(False, 8.0,
                                             "a KVM guest did not boot within 8 s (hangs)"))
    assert hung.name == "tcg" and "did not boot within 8 s" in hung.reason


def qemu_argv(gpu, display, agent_socket=None):
    return QemuSpec(qemu="qemu-system-x86_64", accel="tcg", memory_mb=256, kernel="/k",
                    initrd="/i", cmdline="console=ttyS0 panic=-1", serial_log="/r/console.log",
                    qmp_socket="/t/qmp.sock", agent_socket=agent_socket, runtime_root="/",
                    out_dir="/r/probe",
                    gpu=gpu, display=display).argv()


def test_qemu_argv_per_path():
    headless = qemu_argv(None, "none")
    assert "-device" not in headless and headless[headless.index("-display") + 1] == "none"
    assert headless[headless.index("-qmp") + 1] == "unix:/t/qmp.sock"
    assert "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap" in headless
    assert "-no-reboot" in headless and headless[headless.index("-cpu") + 1] == "qemu64"
    virgl = qemu_argv("virtio-gpu-gl-pci", "sdl,gl=on")
    assert virgl[virgl.index("-device") + 1] == "virtio-gpu-gl-pci"
    assert virgl[virgl.index("-display") + 1] == "sdl,gl=on"
    assert headless.count("-serial") == 1


def test_interactive_guest_gets_its_command_channel_on_the_second_serial_port():
    argv = qemu_argv(None, "none", agent_socket="/t/agent.sock")
    assert argv.count("-serial") == 2 and argv[argv.index("-serial") + 1] == "chardev:serial0"
    assert "socket,id=agent,path=/t/agent.sock,server=on,wait=off" in argv
    assert argv[len(argv) - 1 - argv[::-1].index("-serial") + 1] == "chardev:agent"


def init_script(agent):
    return console.render_init(["virtio_gpu.ko"], scanout=not agent, agent=agent)


def test_init_runs_the_probe_or_the_command_agent():
    batch, interactive = init_script(False), init_script(True)
    assert "AGENT-READY" not in batch and "probe starting" in batch and "SCANOUT-READY" in batch
    agent_part = interactive[interactive.index("AGENT-READY"):interactive.index("probe starting")]
    assert ("/dev/ttyS1" in interactive and "base64 -d" in agent_part
            and "END $id $code" in agent_part)
    assert (". /run/gpu-harness/out/environment.sh && exec /bin/sh /run/gpu-harness/command.sh"
            in agent_part)
    assert "env -i /bin/chroot $R /bin/sh /run/gpu-harness/out/workload.sh" in batch


def test_guest_workload_script_quotes_env_and_argv():
    script = render("guest-workload.sh.j2", env=[("A", "x y"), ("B", "it's")],
                    argv=["/usr/bin/python3", "a b"])
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines == ["export A='x y'", "export B='it'\"'\"'s'", "exec /usr/bin/python3 'a b'"]
    assert "exec" not in render("guest-workload.sh.j2", env=[("A", "1")], argv=[])


def test_guest_exit_from_console():
    assert guest_exit("gpu-harness: probe exited 0\n").code == 0
    assert guest_exit("gpu-harness: probe exited 134\n").signal == 6
    assert guest_exit("nothing") is None


def test_kernel_args_setting():
    (s,) = matrix.expand({"matrix": {"paths": ["vm-headless"]},
                          "defaults": {"kernel_args": ["a=1"]}}, "t").scenarios
    assert s.kernel_args == ("a=1",)


def test_window_region_finds_the_window_on_a_white_root():
    import numpy as np
    screen = np.full((100, 120, 3), 255, dtype=np.uint8)
    screen[10:40, 20:80] = 0
    screen[12, 22] = (200, 10, 10)
    region = window_region(screen)
    assert region.shape == (30, 60, 3) and tuple(region[2, 2]) == (200, 10, 10)


def test_a_console_reason_is_read_from_a_whole_line_only():
    line = f"{console.Marker.INIT_FAILED.line}: fault injected"
    assert console.failure("boot\n" + line[:-4]) is None  # polled while the guest was still writing
    assert console.failure("boot\n" + line + "\n") == Failure(FailureKind.LAUNCH_FAILED,
                                                              "guest init failed: fault injected")
    assert console.failure("Kernel panic - not syncing: Attempted to kill init\n") == \
        Failure(FailureKind.GUEST_PANIC, "guest kernel panic: Attempted to kill init")


def test_a_display_number_claimed_by_another_harness_process_is_not_handed_out():
    """Two runs at once (pytest-xdist workers) must not both start Xvfb on one number."""
    import subprocess
    import sys

    from harness.launch.vm import display

    other = subprocess.Popen([sys.executable, "-c",
                              "from harness.launch.vm import display; import sys;"
                              " n = display.free_display(); print(n, flush=True);"
                              " sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(other.stdout.readline())
        display._next_display = theirs
        assert display.free_display() != theirs
    finally:
        other.stdin.close()
        other.wait()
    display._next_display = theirs
    assert display.free_display() == theirs, "a claim must end with the process that held it"


def test_a_machines_guest_keeps_the_host_files_its_scenarios_name_under_tmp():
    import os
    import socket
    import tempfile
    from pathlib import Path

    from harness.launch import machine_boot

    folder = Path(tempfile.mkdtemp(prefix="gh-keep-", dir="/tmp"))
    try:
        (folder / "list.txt").write_text("spec@a@b\n")
        (folder / "root" / "usr").mkdir(parents=True)
        alone = Path(tempfile.mkstemp(prefix="gh-keep-", dir="/tmp")[1])
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(folder / "s.sock"))
        named = {"declared": {"settings": {"test_list": str(folder / "list.txt"),
                                           "files": [str(alone), "/usr/bin/env"]}},
                 "runtime": {"root": str(folder / "root")},
                 "env": [["HOME", "/tmp"], ["VTEST_SOCKET_NAME", str(folder / "s.sock")],
                         ["X", str(folder / "gone.txt")], ["Y", "relative/list.txt"]]}
        # a file with its folder, a folder whole, a file right in /tmp alone; never /tmp itself,
        # a socket, a file that is not there, or what the guest sees anyway (/usr)
        assert machine_boot.kept_paths(named) == sorted([str(folder), str(folder / "root"),
                                                          str(alone)])
        kept = machine_boot.hidden_harness_dirs(machine_boot.kept_paths(named))
        assert str(folder) in kept and str(folder / "root") not in kept  # the outermost
        assert machine_boot.unkeepable(["/tmp/a b/list.txt", str(folder)]) == ["/tmp/a b/list.txt"]
        listener.close()
        os.unlink(alone)
    finally:
        import shutil

        shutil.rmtree(folder)
