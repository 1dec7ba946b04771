"""The QEMU library the VM families use: QEMU argv, the QMP machine, the console protocol, the
display, the guest kernel, its modules and initramfs, acceleration."""
