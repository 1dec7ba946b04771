"""QEMU's command line for a guest, built as a list. Values inside QEMU's own `key=value,...`
option syntax are escaped (a comma is doubled), so a folder name with a comma cannot add an
option."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .stdin import PORT_NAME as STDIN_PORT


def opt(value: object) -> str:
    """A value for QEMU's comma-separated option syntax."""
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class QemuSpec:
    qemu: str
    accel: str
    memory_mb: int
    kernel: str
    initrd: str
    cmdline: str
    serial_log: str
    qmp_socket: str
    runtime_root: str
    out_dir: str
    display: str  # a whole -display value, its own values already escaped
    gpu: Optional[str] = None
    agent_socket: Optional[str] = None
    machine: str = "pc"
    first_devices: Tuple[str, ...] = ()  # before every other device (an IOMMU must be)
    devices: Tuple[str, ...] = ()  # more -device values, after the GPU
    shares: Tuple[Tuple[str, str], ...] = ()  # more read-write 9p shares: (mount tag, host folder)
    cpu: Optional[str] = None  # the -cpu model; None: the host's under KVM, else qemu64
    # exec's stdin (harness.launch.vm.stdin): QEMU connects to it as it starts
    stdin_socket: Optional[str] = None

    def argv(self) -> List[str]:
        argv = [self.qemu, "-nodefaults", "-no-user-config", "-machine", self.machine, "-accel",
                self.accel,
                "-cpu", self.cpu or ("host" if self.accel == "kvm" else "qemu64"), "-smp", "1",
                "-m", str(self.memory_mb),
                "-kernel", self.kernel, "-initrd", self.initrd, "-append", self.cmdline,
                "-no-reboot",
                "-chardev", f"file,id=serial0,path={opt(self.serial_log)}", "-serial",
                "chardev:serial0"]
        for device in self.first_devices:
            argv += ["-device", device]
        if self.agent_socket:
            argv += ["-chardev",
                     f"socket,id=agent,path={opt(self.agent_socket)},server=on,wait=off",
                     "-serial", "chardev:agent"]
        argv += ["-qmp", f"unix:{opt(self.qmp_socket)}",
                 "-virtfs",
                 f"local,path={opt(self.runtime_root)},mount_tag=root,security_model=none,"
                 "readonly=on,multidevs=remap",
                 "-virtfs", f"local,path={opt(self.out_dir)},mount_tag=out,security_model=none"]
        for tag, folder in self.shares:
            argv += ["-virtfs",
                     f"local,path={opt(folder)},mount_tag={opt(tag)},security_model=none"]
        if self.gpu:
            argv += ["-device", self.gpu]
        for device in self.devices:
            argv += ["-device", device]
        if self.stdin_socket:  # last, so that the other devices keep their PCI slots
            argv += ["-device", "virtio-serial-pci,id=stdin-serial",
                     "-chardev", f"socket,id=stdin,path={opt(self.stdin_socket)}",
                     "-device",
                     f"virtserialport,bus=stdin-serial.0,chardev=stdin,name={STDIN_PORT}"]
        return argv + ["-display", self.display]
