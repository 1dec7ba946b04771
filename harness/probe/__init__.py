"""The probes' files: stdlib+ctypes programs and their support modules, copied flat into each
runtime.

Not imported as a package: inside a sandbox, guest or container the harness puts a probe and the
modules its ProbeSpec lists (harness/scenario/probes.py) side by side, and they import each other by
plain top-level name (`import probelib`). Imports nothing of the harness but the system's
stdlib-only modules that travel beside it (vfio, vfiocheck, reaper)."""
