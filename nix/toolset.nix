# The toolset manifest (schema gpu-harness/toolset/v1, docs/toolset.md) for a set of built
# packages: what the Python toolset loader reads instead of discovering the host. Builtins only,
# so tests/test_nix.py evaluates it with stand-in store paths and loads the result.
# Package arguments are anything with an outPath (and a version or a name). `driverLink`: where
# the host's GPU driver is mounted (GPU checks), or null. `provenance`: per pin, which nixpkgs
# the package came from and whether the pin overrides it (nix/packages.nix decides).
{ system, bubblewrap, virglrenderer, probePython, mesa, libglvnd, qemu, xvfb, busybox, kernel
, kernelImage, nixPrefetchGit, driverLink ? null, provenance ? { } }:
let
  # A package's version where it has one. nixpkgs' nix-prefetch-git has a `name` and no `version`
  # (pkgs/tools/package-management/nix-prefetch-scripts/default.nix): then the name's version
  # part, or null.
  versionOf = pkg: pkg.version or (
    let fromName = (builtins.parseDrvName (pkg.name or "")).version; in if fromName == "" then null else fromName);
  tool = path: pkg: extra: { inherit path extra; version = versionOf pkg; };
  pinned = name: if provenance ? ${name} then { nixpkgs = provenance.${name}; } else { };
  # The host's driver first where there is one, then this Mesa.
  driverFirst = suffix: mesaPath:
    (if driverLink == null then "" else "${driverLink}/${suffix}:") + mesaPath;
  vendorDirs = driverFirst "share/glvnd/egl_vendor.d" "${mesa}/share/glvnd/egl_vendor.d";
  # nixpkgs' qemu builds every target: the amd64 guest's QEMU, and an arm64 or riscv64 runtime's guest's.
  qemuSystem = {
    "x86_64-linux" = [ "qemu-system-x86_64" "qemu-system-aarch64" "qemu-system-riscv64" ];
  };
in
{
  schema = "gpu-harness/toolset/v1";
  source = "nix";
  inherit system;
  tools = {
    bwrap = tool "${bubblewrap}/bin/bwrap" bubblewrap (pinned "bubblewrap");
    virgl_test_server = tool "${virglrenderer}/bin/virgl_test_server" virglrenderer (pinned "virglrenderer");
    python3 = tool "${probePython}/bin/python3" probePython { };
    mesa = tool "${mesa}/lib/dri" mesa ({
      dri_dirs = [ "${mesa}/lib/dri" ];
      # The host-side GL programs (virgl_test_server, Xvfb's GLX, QEMU's GL display) find no
      # driver in a build sandbox (nixpkgs' glvnd and Xvfb look in /run/opengl-driver, which
      # only a GPU build gets): point them at this Mesa.
      env = {
        __EGL_VENDOR_LIBRARY_DIRS = vendorDirs;
        LIBGL_DRIVERS_PATH = driverFirst "lib/dri" "${mesa}/lib/dri";
        LD_LIBRARY_PATH = driverFirst "lib" "${libglvnd}/lib:${mesa}/lib";
      } // (if driverLink == null then { __GLX_VENDOR_LIBRARY_NAME = "mesa"; } else { });
      libEGL = "${libglvnd}/lib/libEGL.so.1";
      libGLESv2 = "${libglvnd}/lib/libGLESv2.so.2";
    } // pinned "mesa");
    # The native path's EGL stack: glvnd and its vendors (the probe's python wrapper points glvnd
    # at the same folders).
    egl = tool "${libglvnd}/lib/libEGL.so.1" libglvnd {
      libGLESv2 = "${libglvnd}/lib/libGLESv2.so.2";
      vendor_dirs = builtins.filter (part: builtins.isString part && part != "") (builtins.split ":" vendorDirs);
      vendors = (if driverLink == null then [ ] else [ "(the host driver's, found at run time)" ])
        ++ [ "libEGL_mesa.so.0" ];
    };
    # The "host's driver" the host-driver paths bind into a runtime (harness.host.hostdriver): here
    # the pinned Mesa, found through its vendor and ICD files like any host driver.
    host-driver = (tool "/" mesa {
      vendor_dirs = builtins.filter (part: builtins.isString part && part != "") (builtins.split ":" vendorDirs);
      icd_dirs = [ "${mesa}/share/vulkan/icd.d" ];
      dri_dirs = [ "${mesa}/lib/dri" ];
    }) // { version = let v = versionOf mesa; in if v == null then null else "mesa ${v}"; };
    Xvfb = tool "${xvfb}/bin/Xvfb" xvfb { };
    busybox = tool "${busybox}/bin/busybox" busybox { };
    kernel = tool "${kernel}/${kernelImage}" kernel {
      modules_dir = "${kernel}/lib/modules/${kernel.modDirVersion or kernel.version}";
    };
    nix-prefetch-git = tool "${nixPrefetchGit}/bin/nix-prefetch-git" nixPrefetchGit { };
  }
  # The harness boots x86_64 guests only so far: elsewhere the VM paths say Skip, with the reason.
  // (if qemuSystem ? ${system}
      then builtins.listToAttrs (map (name: { inherit name; value = tool "${qemu}/bin/${name}" qemu (pinned "qemu"); })
        qemuSystem.${system})
      else { });
}
