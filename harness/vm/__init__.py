"""The QEMU library the VM families use: QEMU argv, QMP machine, console protocol, display, guest kernel, modules and initramfs, acceleration."""
