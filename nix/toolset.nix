# The toolset manifest (schema gpu-harness/toolset/v1, docs/toolset.md) for a set of built
# packages: what the Python toolset loader reads instead of discovering the host. Builtins only,
# so tests/test_nix.py evaluates it with stand-in store paths and loads the result.
# Every argument is a package (anything with outPath and version).
{ system, bubblewrap, virglrenderer, probePython, mesa, libglvnd, qemu, xvfb, busybox, kernel
, kernelImage, nixPrefetchGit }:
let
  tool = path: version: extra: { inherit path version extra; };
  qemuSystem = {
    "x86_64-linux" = "qemu-system-x86_64";
  };
in
{
  schema = "gpu-harness/toolset/v1";
  source = "nix";
  inherit system;
  tools = {
    bwrap = tool "${bubblewrap}/bin/bwrap" bubblewrap.version { };
    virgl_test_server = tool "${virglrenderer}/bin/virgl_test_server" virglrenderer.version { };
    python3 = tool "${probePython}/bin/python3" probePython.version { };
    mesa = tool "${mesa}/lib/dri" mesa.version {
      dri_dirs = [ "${mesa}/lib/dri" ];
      libEGL = "${libglvnd}/lib/libEGL.so.1";
      libGLESv2 = "${libglvnd}/lib/libGLESv2.so.2";
    };
    # The native path's EGL stack: glvnd, with the pinned Mesa as its vendor (the probe's python
    # wrapper points glvnd at it); a GPU builder's own vendor is found by discovery instead.
    egl = tool "${libglvnd}/lib/libEGL.so.1" libglvnd.version {
      libGLESv2 = "${libglvnd}/lib/libGLESv2.so.2";
      vendor_files = [ "${mesa}/share/glvnd/egl_vendor.d/50_mesa.json" ];
      vendors = [ "libEGL_mesa.so.0" ];
    };
    Xvfb = tool "${xvfb}/bin/Xvfb" xvfb.version { };
    busybox = tool "${busybox}/bin/busybox" busybox.version { };
    kernel = tool "${kernel}/${kernelImage}" kernel.version {
      modules_dir = "${kernel}/lib/modules/${kernel.modDirVersion or kernel.version}";
    };
    nix-prefetch-git = tool "${nixPrefetchGit}/bin/nix-prefetch-git" nixPrefetchGit.version { };
  }
  # The harness boots x86_64 guests only so far: elsewhere the VM paths say Skip, with the reason.
  // (if qemuSystem ? ${system}
      then { ${qemuSystem.${system}} = tool "${qemu}/bin/${qemuSystem.${system}}" qemu.version { }; }
      else { });
}
