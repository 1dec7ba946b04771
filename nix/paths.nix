# What the flake needs to know about each path to make it a check: its family (host-family
# paths pair with the host runtime only) and the build-machine system features it needs.
# The table is written by the Python path table (`python -m harness.launch.families.registry > nix/paths.json`),
# so the two cannot drift; tests/test_nix.py checks the file is current. Builtins only.
#   gpu: a real GPU and /dev/dri in the build sandbox (a builder that advertises "gpu" and has
#        extra-sandbox-paths = /dev/dri); such scenarios are opt-in, not part of `nix flake check`.
#   kvm: a guest (the harness falls back to TCG, but a builder with KVM is the sane default).
builtins.fromJSON (builtins.readFile ./paths.json)
