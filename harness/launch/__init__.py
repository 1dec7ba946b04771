"""Launching a workload through a path: the one lifecycle, the families (host, sandbox, container,
flatpak, vm, vfio), the QEMU guests, the vtest service and the boot of a virtual GPU machine.
Imports the layers below it (core to runtimes)."""
