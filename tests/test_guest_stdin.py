"""The host end of exec's stdin stream into a guest (harness.launch.vm.stdin), against a peer in
QEMU's place:
each chunk goes as it comes, the end only when the source ends, and as a half close."""
import dataclasses
import os
import select
import socket
import time

import pytest

from harness.host import emulation
from harness import matrix
from harness.launch.families.vm import VmFamily
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.scenario.model import Runtime, RuntimeKind
from harness.host.toolset import Tool, Toolset
from harness.launch.vm import stdin as stdin_mod
from harness.launch.vm.qemu import QemuSpec

DEADLINE_S = 10.0


@pytest.fixture
def source():
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def connect(path) -> socket.socket:
    """What QEMU's socket chardev does as it starts."""
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(str(path))
    peer.settimeout(DEADLINE_S)
    return peer


def receive(peer: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = peer.recv(count - len(data))
        assert chunk, f"the stream ended after {data!r}"
        data += chunk
    return data


def test_each_chunk_arrives_as_it_comes_and_the_end_only_with_the_source(source, tmp_path):
    read, write = source
    stream = stdin_mod.StdinStream(str(tmp_path / "stdin.sock"), read)
    peer = connect(tmp_path / "stdin.sock")
    try:
        assert receive(peer, 1) == stdin_mod.HELLO
        os.write(write, b"late-line\n")  # the source is still open: nothing waits for its end
        assert receive(peer, 10) == b"late-line\n"
        os.write(write, b"second\n")  # not ended after the first chunk
        assert receive(peer, 7) == b"second\n"
        os.close(write)
        assert peer.recv(100) == b""  # the source's end is the stream's
        assert stream.sent == 17 and stream.ended
    finally:
        stream.stop()
        peer.close()


def test_the_end_is_a_half_close_so_qemu_reads_what_it_had_not_read(source, tmp_path):
    """QEMU drops a connection that hangs up along with what it had not read yet: the host's end
    stays open after the source's end until QEMU closes its side."""
    read, write = source
    stream = stdin_mod.StdinStream(str(tmp_path / "stdin.sock"), read)
    peer = connect(tmp_path / "stdin.sock")
    try:
        os.write(write, b"last words\n")
        os.close(write)
        assert receive(peer, 12) == stdin_mod.HELLO + b"last words\n"
        assert peer.recv(100) == b""
        poller = select.poll()
        poller.register(peer, select.POLLIN)
        (_, events), = poller.poll(0)
        assert not events & select.POLLHUP, "the host hung up before QEMU closed its side"
        peer.sendall(b"x")  # the host's side is still there
    finally:
        stream.stop()
        peer.close()


def test_no_stdin_at_all_is_an_end_at_once(tmp_path):
    stream = stdin_mod.StdinStream(str(tmp_path / "stdin.sock"), stdin_mod.NO_SOURCE)
    peer = connect(tmp_path / "stdin.sock")
    try:
        assert receive(peer, 1) == stdin_mod.HELLO
        assert peer.recv(100) == b""
    finally:
        stream.stop()
        peer.close()


@pytest.mark.parametrize("qemu_connects", [False, True], ids=["before-qemu-connects",
                                                              "while-waiting-for-stdin"])
def test_stop_ends_a_stream_whose_source_never_ends(source, tmp_path, qemu_connects):
    read, _ = source
    stream = stdin_mod.StdinStream(str(tmp_path / "stdin.sock"), read)
    peer = connect(tmp_path / "stdin.sock") if qemu_connects else None
    try:
        if peer is not None:
            assert receive(peer, 1) == stdin_mod.HELLO
        started = time.monotonic()
        stream.stop()
        assert time.monotonic() - started < DEADLINE_S
        assert not (tmp_path / "stdin.sock").exists()
        if peer is not None:
            assert peer.recv(100) == b""  # the host's end is closed
        stream.stop()  # twice is fine
    finally:
        if peer is not None:
            peer.close()


def test_stop_ends_a_stream_that_qemu_does_not_read(tmp_path):
    """A guest that never reads its stdin leaves the socket full; the launch's end still ends it."""
    big = tmp_path / "big"
    big.write_bytes(b"y" * (16 << 20))
    with open(big, "rb") as data:
        stream = stdin_mod.StdinStream(str(tmp_path / "stdin.sock"), data.fileno())
        peer = connect(tmp_path / "stdin.sock")
        try:
            assert receive(peer, 1) == stdin_mod.HELLO
            deadline = time.monotonic() + DEADLINE_S
            # its first chunks fill the socket
            while stream.sent == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert 0 < stream.sent < 16 << 20 and not stream.ended
            started = time.monotonic()
            stream.stop()
            assert time.monotonic() - started < DEADLINE_S
        finally:
            peer.close()


def test_the_guest_gets_a_named_virtio_serial_port_on_the_socket():
    spec = QemuSpec(qemu="qemu-system-aarch64", accel="tcg", memory_mb=512, kernel="k", initrd="i",
                    cmdline="c",
                    serial_log="s", qmp_socket="q", runtime_root="/", out_dir="/o", display="none",
                    machine="virt",
                    stdin_socket="/tmp/a,b/stdin.sock")
    argv = spec.argv()
    assert "socket,id=stdin,path=/tmp/a,,b/stdin.sock" in argv  # QEMU's own syntax, escaped
    assert f"virtserialport,bus=stdin-serial.0,chardev=stdin,name={stdin_mod.PORT_NAME}" in argv
    assert "virtio-serial-pci,id=stdin-serial" in argv
    without = QemuSpec(**{**spec.__dict__, "stdin_socket": None}).argv()
    assert not any("virtserialport" in arg or "stdin" in arg for arg in without)


def test_a_kernel_without_virtio_console_cannot_take_a_stream(tmp_path):
    (tmp_path / "modules.dep").write_text("kernel/fs/9p/9p.ko:\n")
    reason = stdin_mod.unavailable(str(tmp_path))
    assert (reason is not None and "has no virtio_console" in reason
            and "cannot be streamed" in reason)
    (tmp_path / "modules.builtin").write_text("kernel/drivers/char/virtio_console.ko\n")
    assert stdin_mod.unavailable(str(tmp_path)) is None


def arm64_runtime(folder, modules_dep: str) -> Runtime:
    """An arm64 runtime tree with a kernel of its own whose modules.dep says `modules_dep`."""
    modules = folder / "usr/lib/modules/6.1.0-50-arm64"
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(modules_dep)
    (folder / "boot").mkdir()
    (folder / "boot/vmlinuz-6.1.0-50-arm64").write_bytes(b"")
    (folder / "bin").mkdir()
    (folder / "bin/busybox").write_bytes(b"")
    return Runtime("bookworm-arm64", RuntimeKind.ROOTFS, str(folder), "a test tree")


@pytest.mark.parametrize("has_port_driver", [False, True])
def test_exec_into_an_arm64_guest_streams_over_the_same_port_or_says_why_not(tmp_path, monkeypatch,
                                                                             has_port_driver):
    """An arm64 or riscv64 machine has no second serial port, but PCI, as for its 9p shares: its
    guest gets the same virtio-serial port; a kernel without the port's driver is refused with
    the reason, not given a stdin that never comes."""
    monkeypatch.setattr(emulation, "tree_architecture", lambda root: "arm64")
    dep = "kernel/drivers/char/virtio_console.ko:\n" if has_port_driver else "kernel/fs/9p/9p.ko:\n"
    scenario = dataclasses.replace(matrix.expand({"matrix": {"paths": ["vm-headless"]}},
                                                 "t").scenarios[0],
                                   runtime=arm64_runtime(tmp_path / "root", dep))
    tools = {name: Tool(name, f"/usr/bin/{name}") for name in ("qemu-system-x86_64",
                                                               "qemu-system-aarch64")}
    workspace = Workspace(tmp_path / "result", tmp_path / "t")
    ctx = LaunchContext(scenario, Toolset("test", tools), workspace, Workload(command=["cat"]),
                        inherit_stdio=True)
    reason = VmFamily().unavailable_in(ctx)
    if has_port_driver:
        assert reason is None
    else:
        assert (reason is not None and "has no virtio_console" in reason
                and "cannot be streamed" in reason)
    # a probe reads no stdin
    assert VmFamily().unavailable_in(dataclasses.replace(ctx, inherit_stdio=False)) is None
