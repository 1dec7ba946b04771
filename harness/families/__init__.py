"""Path families: one module per way of launching a workload (host process, bubblewrap
sandbox, QEMU guest; next container, flatpak, vfio). Each declares what it needs, which runtimes
it takes, its Nix features, how it plans a launch and runs it through the shared lifecycle
(harness.lifecycle). The path table (harness.paths) names a family object per path."""
