# What the flake needs to know about each path to make it a check: its family (host-family
# paths pair with the host runtime only, as in harness/matrix.py) and the build-machine system
# features it needs. Builtins only; tests/test_nix.py checks it against harness/paths.py.
#   gpu: a real GPU and /dev/dri in the build sandbox (a builder that advertises "gpu" and has
#        extra-sandbox-paths = /dev/dri); such scenarios are opt-in, not part of `nix flake check`.
#   kvm: a guest (the harness falls back to TCG, but a builder with KVM is the sane default).
{
  native = { family = "host"; features = [ "gpu" ]; };
  software = { family = "host"; features = [ ]; };
  sandbox-dri = { family = "sandbox"; features = [ "gpu" ]; };
  vtest-virgl = { family = "sandbox"; features = [ ]; };
  vm-headless = { family = "vm"; features = [ "kvm" ]; };
  vm-virtio-2d = { family = "vm"; features = [ "kvm" ]; };
  vm-virgl = { family = "vm"; features = [ "kvm" ]; };
}
