"""What this machine has: its GPU driver, found and laid out for the host-driver paths; driver
matching and failure diagnosis; ELF dependencies; CDI specs; the toolset of host-side programs;
the architectures it runs. Imports the layers below it (core, system, scenario, workloads)."""
