# A stand-in for nixpkgs, just enough for nix/packages.nix to evaluate here (nixpkgs cannot be
# downloaded on these machines). Derivations are records of how they were called, so a test
# can check the wiring: check names, features, command lines, the toolset manifest's text.
# It says nothing about whether nixpkgs' real packages accept these overrides.
{ system ? "x86_64-linux" }:
let
  drv = name: attrs: attrs // rec {
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    version = attrs.version or "0.0-stub";
    override = args: drv name (attrs // { overridden = args; });
    overrideAttrs = f: let new = if builtins.isFunction f then f attrs else f; in drv name (attrs // new);
  };
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    makeLibraryPath = packages: builtins.concatStringsSep ":" (map (p: "${p}/lib") packages);
    mapAttrs = builtins.mapAttrs;
  };
  python3 = drv "python3" { version = "3.13.0"; } // {
    pkgs = builtins.listToAttrs (map (n: { name = n; value = drv n { }; })
      [ "setuptools" "jinja2" "pillow" "numpy" "rich" "qemu-qmp" "pytestCheckHook" "pytest" "pytest-xdist"
        "pytest-benchmark" ]) // {
      buildPythonApplication = attrs: drv attrs.pname attrs;
    };
    withPackages = f: drv "python3-env" { };
  };
in
{
  inherit lib python3;
  stdenv.hostPlatform = { inherit system; linux-kernel.target = if system == "x86_64-linux" then "bzImage" else "Image"; };
  fetchgit = args: drv "git-source" args;
  fetchurl = args: drv "url-source" args;
  mesa = drv "mesa" { version = "25.2.0"; };
  virglrenderer = drv "virglrenderer" { };
  bubblewrap = drv "bubblewrap" { };
  qemu = drv "qemu" { };
  libglvnd = drv "libglvnd" { version = "1.7.0"; };
  linuxPackages.kernel = drv "linux" { version = "6.12.1"; modDirVersion = "6.12.1"; };
  xorg.xvfb = drv "xvfb" { version = "21.1.0"; };
  pkgsStatic.busybox = drv "busybox" { version = "1.36.1"; };
  nix-prefetch-git = drv "nix-prefetch-git" { };
  cpio = drv "cpio" { };
  kmod = drv "kmod" { };
  git = drv "git" { };
  writeText = name: text: drv name { inherit text; };
  writeShellScriptBin = name: script: drv name { inherit script; };
  runCommand = name: env: script: drv name (env // { inherit script; });
  mkShell = attrs: drv "shell" attrs;
  dockerTools.buildLayeredImage = attrs: drv "image" attrs;
}
