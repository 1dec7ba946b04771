"""The host system as the harness drives it: processes it starts and ends (only its own), the
reaper that cleans up after a killed harness, services beside a workload, confinement (bwrap,
seccomp), device bindings for VFIO. Imports only harness.core."""
