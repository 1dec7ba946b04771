"""The root filesystems a workload runs in and what is kept of them: recipes and locks, builds with
mmdebstrap, container image archives, the GL extension, the cache and its ledger, toolsets run
from a runtime, the Nix pins. Imports the layers below it (core to host)."""
