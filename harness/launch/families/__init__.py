"""Path families: one module per way of launching a workload (host process, bubblewrap sandbox,
podman container, Flatpak, QEMU guest, vfio). Each declares what it needs, which runtimes it
takes, its Nix features, how it plans a launch and runs it through the shared lifecycle
(harness.launch.lifecycle). A path names its family by name; harness.launch.families.registry maps
names to
the family objects."""
