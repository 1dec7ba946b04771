# A stand-in for nixpkgs (which cannot be downloaded on these machines), strict where the flake
# could go wrong against the real one:
# - a package carries only the attributes the real one has (no invented `version`);
# - `.override` takes only the arguments the real function takes, and throws on any other;
# - attributes that do not exist in the modelled release are absent.
# Derivations are records of how they were called, so a test can check the wiring: check names,
# features, command lines, inputs, the toolset manifest's text. Each fact names the nixpkgs file
# it was read from (commit as stored by the search index; the locked rev itself was not stored).
# `layout`: "25.11" (the locked release) or "26.05" (Xvfb moved to the top level, xorg gone) or
# "24.11" (the nixpkgs-old input).
{ system ? "x86_64-linux", layout ? "25.11" }:
let
  drv = name: attrs: formals: attrs // {
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    override = args:
      let unknown = builtins.filter (arg: !(builtins.elem arg formals)) (builtins.attrNames args); in
      if unknown != [ ] then throw "${name}.override: unexpected argument(s) ${builtins.concatStringsSep ", " unknown}"
      else drv name (attrs // { overridden = args; }) formals;
    overrideAttrs = f:
      let new = if builtins.isFunction f then f attrs else f; in
      drv name (attrs // new // { overriddenAttrs = builtins.attrNames new; }) formals;
  };
  package = pname: version: formals: drv "${pname}-${version}" { inherit pname version; } formals;
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    makeLibraryPath = packages: builtins.concatStringsSep ":" (map (p: "${p}/lib") packages);
    mapAttrs = builtins.mapAttrs;
    optionalString = cond: string: if cond then string else "";
    filterAttrs = pred: set: builtins.listToAttrs (builtins.concatMap
      (name: if pred name set.${name} then [ { inherit name; value = set.${name}; } ] else [ ])
      (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (map (name: f name set.${name}) (builtins.attrNames set));
  };
  python3 = package "python3" "3.13.0" [ ] // {
    pkgs = builtins.listToAttrs (map (n: { name = n; value = package n "1.0" [ ]; })
      [ "setuptools" "jinja2" "pillow" "numpy" "rich" "qemu-qmp" "pytestCheckHook" "pytest" "pytest-xdist"
        "pytest-benchmark" "hypothesis" "mypy" ]) // {
      buildPythonApplication = attrs: drv "${attrs.pname}-${attrs.version}" attrs [ ];
    };
    withPackages = f: drv "python3-env" { } [ ];
  };
  # pkgs/development/libraries/mesa/default.nix (0011617cd5cc): the function's formal arguments.
  mesaFormals = [ "lib" "bison" "buildPackages" "directx-headers" "elfutils" "expat" "fetchCrate" "fetchFromGitLab"
    "file" "flex" "glslang" "spirv-tools" "intltool" "jdupes" "libdisplay-info" "libdrm" "libgbm" "libglvnd" "libpng"
    "libunwind" "libva-minimal" "libvdpau" "llvmPackages" "lm_sensors" "meson" "ninja" "pkg-config"
    "python3Packages" "runCommand" "rust-bindgen" "rust-cbindgen" "rustc" "spirv-llvm-translator" "stdenv" "udev"
    "valgrind-light" "vulkan-loader" "wayland" "wayland-protocols" "wayland-scanner" "xcbutilkeysyms" "xorg" "zstd"
    "enablePatentEncumberedCodecs" "withValgrind" "galliumDrivers" "vulkanDrivers" "eglPlatforms" "vulkanLayers"
    "mesa" "mesa-gl-headers" "makeSetupHook" ];
  # pkgs/applications/virtualization/qemu/default.nix (10.1.2 copy): options read.
  qemuFormals = [ "sdlSupport" "openGLSupport" "virglSupport" "virglrenderer" "rutabagaSupport" "hostCpuOnly"
    "hostCpuTargets" "guestAgentSupport" "gtkSupport" "spiceSupport" "valgrindSupport" "canokeySupport"
    "nixosTestRunner" "toolsOnly" "userOnly" "minimal" "stdenv" "lib" ];
  # pkgs/by-name/vi/virglrenderer/package.nix (029b05fd490a): 1.1.1, Venus via vulkanSupport.
  virglFormals = [ "lib" "stdenv" "nativeContextSupport" "vaapiSupport" "vulkanSupport" "libva" "vulkan-headers"
    "vulkan-loader" "moltenvk" "gitUpdater" ];
  mesaVersion = { "24.11" = "24.2.8"; "25.11" = "25.2.6"; "26.05" = "26.1.4"; }.${layout};
  # pkgs/servers/x11/xorg/overrides.nix (008068ccd17e): xorg.xvfb is xorgserver with --enable-xvfb;
  # pkgs/by-name/xv/xvfb/package.nix (20f35510207a) only in later nixpkgs, where xorg is deprecated.
  xvfbPackage = package "xvfb" "21.1.18" [ ];
  xorgOrTop = if layout == "26.05" then { xvfb = xvfbPackage; } else { xorg.xvfb = xvfbPackage; };
in
{
  inherit lib python3;
  stdenv.hostPlatform = {
    inherit system;
    # lib/systems/platforms.nix: pc -> "bzImage"; aarch64 -> "Image".
    linux-kernel.target = if system == "x86_64-linux" then "bzImage" else "Image";
  };
  fetchgit = args: drv "git-source" args [ ];
  fetchurl = args: drv "url-source" args [ ];
  mesa = package "mesa" mesaVersion mesaFormals;
  virglrenderer = package "virglrenderer" "1.1.1" virglFormals;
  # pkgs/by-name/bu/bubblewrap/package.nix: 0.11.0, doCheck = false ("incompatible with Nix sandbox").
  bubblewrap = package "bubblewrap" "0.11.0" [ "lib" "stdenv" ];
  qemu = package "qemu" "10.1.2" qemuFormals;
  libglvnd = package "libglvnd" "1.7.0" [ ];
  vulkan-loader = package "vulkan-loader" "1.4.328.0" [ ];
  # linux-kernels.nix: linux_default = linux_6_12; modDirVersion is a passthru of the kernel.
  linuxPackages.kernel = package "linux" "6.12.60" [ ] // { modDirVersion = "6.12.60"; };
  pkgsStatic.busybox = package "busybox" "1.36.1" [ ];
  # pkgs/tools/package-management/nix-prefetch-scripts/default.nix (012273c423a2):
  # `name = "nix-prefetch-${tool}";` and no pname or version.
  nix-prefetch-git = drv "nix-prefetch-git" { } [ ];
  # pkgs/build-support/add-driver-runpath: driverLink = "/run/opengl-driver".
  addDriverRunpath.driverLink = "/run/opengl-driver";
  cpio = package "cpio" "2.15" [ ];
  dpkg = package "dpkg" "1.22.21" [ ];
  kmod = package "kmod" "33" [ ];
  zstd = package "zstd" "1.5.7" [ ];
  git = package "git" "2.51.0" [ ];
  nix = package "nix" "2.31.2" [ ];
  ruff = package "ruff" "0.14.0" [ ];
  writeText = name: text: drv name { inherit text; } [ ];
  writeShellScriptBin = name: script: drv name { inherit script; } [ ];
  runCommand = name: env: script: drv name (env // { inherit script; }) [ ];
  mkShell = attrs: drv "shell" attrs [ ];
  dockerTools.buildLayeredImage = attrs: drv "image" attrs [ ];
} // xorgOrTop
