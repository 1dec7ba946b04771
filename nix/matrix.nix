# The default matrix, in Nix. Builtins only (no nixpkgs), so it evaluates anywhere:
#   nix-instantiate --eval --strict --json nix/matrix.nix
# It must expand to exactly the scenarios of harness/data/default.toml (a test checks this);
# the flake turns each scenario into a check (see flake.nix).
let
  vmPaths = [ "vm-headless" "vm-virtio-2d" "vm-virgl" "vm-vfio-nested" ];
in
{
  matrix = {
    paths = [ "native" "software" "sandbox-dri" "sandbox-hostlibs" "sandbox-hostdeps" "sandbox-hostdeps-glibc"
      "sandbox-capsule" "vtest-virgl" "podman-vtest" "podman-dri" "flatpak-vtest"
      "flatpak-dri" ] ++ vmPaths;
    # host: the machine's own root; trixie: a pinned Debian 13 runtime (Mesa 25.0, newer than a
    # Debian 12 host), built from its lock (nix/runtimes.nix; mmdebstrap on the Debian side).
    runtimes = [ "host" "trixie" ];
    # vfio: the nested VFIO tier's probe (an image moved by a passed-through device's DMA).
    probes = [ "gl" "vulkan" "vfio" ];
    # virgl-guest: a QEMU guest whose virtio-gpu (virgl) is a real GPU for the device paths inside it,
    # so sandbox-dri, podman-dri and flatpak-dri run on a machine without a GPU too (one boot for all).
    machines = [ "local" "virgl-guest" ];
    # wayland: a few scenarios also present their frames in a window on a headless weston the run
    # starts, whose capture is judged (a vtest path and a Flatpak path over trixie, GL; in the
    # guest, sandbox-dri on its card through weston's GL renderer).
    displays = [ "offscreen" "wayland" ];
    # The host's driver in another runtime: compat.toml has those answers, for its host. The
    # nested VFIO tier's L1 guest runs the host's QEMU from its root: the host runtime only.
    exclude = [ { path = "sandbox-host*"; runtime = "trixie"; } { path = "sandbox-capsule"; runtime = "trixie"; }
      { path = "vm-vfio-nested"; runtime = "trixie"; }
      # In the guest: the device paths, GL (virgl has no Vulkan), over trixie (compat.toml has the rest).
      { machine = "virgl-guest"; path = "native"; } { machine = "virgl-guest"; path = "software"; }
      { machine = "virgl-guest"; path = "sandbox-host*"; } { machine = "virgl-guest"; path = "sandbox-capsule"; }
      { machine = "virgl-guest"; path = "*vtest*"; } { machine = "virgl-guest"; runtime = "host"; }
      { machine = "virgl-guest"; probe = "vulkan"; }
      # On weston: vtest-virgl and flatpak-vtest over trixie, GL, and sandbox-dri in the guest
      # (docs/display.md has the rest).
      { display = "wayland"; runtime = "host"; } { display = "wayland"; probe = "vulkan"; }
      { display = "wayland"; path = "native"; } { display = "wayland"; path = "software"; }
      { display = "wayland"; path = "sandbox-*"; machine = "local"; }
      { display = "wayland"; path = "podman-*"; } { display = "wayland"; path = "flatpak-dri"; } ];
  };

  runtimes.trixie = {
    kind = "debootstrap";
    description = "Debian 13, Mesa 25.0 (harness/data/runtimes/trixie.toml)";
  };

  defaults.timeout_s = 60;

  override = [
    {
      # Under TCG (no working KVM) a guest needs ~10 s; leave room for a loaded 2-core machine.
      match = "vm-*";
      timeout_s = 120;
      # virgl and hardware drivers may rasterise edges and sample texel borders a little
      # differently from llvmpipe (virgl over llvmpipe: largest channel difference 1, measured).
      tolerance = { channel = 16; fraction = 0.01; };
    }
  ]
  # llvmpipe inside a TCG guest: for the probe's few frames LLVM's optimisation passes cost more
  # than they save (first frame 2.1 s -> 1.2 s, measured). Pixels are checked against the same golden.
  ++ map (path: { match = "${path}/*"; env.GALLIVM_PERF = "nopt"; }) [ "vm-headless" "vm-virtio-2d" ];
}
