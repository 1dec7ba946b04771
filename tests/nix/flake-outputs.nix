# flake.nix's outputs with tests/nix/stub-pkgs.nix as nixpkgs, reduced to what a test can compare.
# `layout` picks the stand-in's nixpkgs release for the main input (see stub-pkgs.nix).
{ layout ? "25.11" }:
let
  stub = system: import ./stub-pkgs.nix { inherit system layout; };
  stubOld = system: import ./stub-pkgs.nix { inherit system; layout = "24.11"; };
  flake = import ../../flake.nix;
  inputs = {
    self = ../..;
    nixpkgs = {
      lib = (stub "x86_64-linux").lib;
      legacyPackages = { x86_64-linux = stub "x86_64-linux"; aarch64-linux = stub "aarch64-linux"; };
    };
    nixpkgs-old.legacyPackages = { x86_64-linux = stubOld "x86_64-linux"; aarch64-linux = stubOld "aarch64-linux"; };
  };
  # Only the inputs the flake takes (so an older flake.nix evaluates here too, to compare).
  outputs = flake.outputs (builtins.intersectAttrs (builtins.functionArgs flake.outputs) inputs);
  checkRecord = check: { features = check.requiredSystemFeatures or [ ]; script = check.script or "";
                         inputs = map (p: p.pname or p.name) (check.nativeBuildInputs or [ ]); };
  record = package: {
    name = package.name;
    version = package.version or null;
    overridden = package.overridden or null;
    overriddenAttrs = package.overriddenAttrs or [ ];
  };
in
{
  inputs = flake.inputs;
  systems = builtins.attrNames outputs.packages;
  checks = builtins.mapAttrs (system: checks: builtins.mapAttrs (name: checkRecord) checks) outputs.checks;
  gpuChecks = builtins.mapAttrs (system: checks: builtins.mapAttrs (name: checkRecord) checks) outputs.gpuChecks;
  packages = builtins.mapAttrs (system: packages: builtins.attrNames packages) outputs.packages;
  pinned = builtins.mapAttrs (system: packages: builtins.mapAttrs (name: record)
    { inherit (packages) mesa mesa-old virglrenderer bubblewrap qemu; }) outputs.packages;
  runtimeDebs = builtins.mapAttrs (system: packages:
    map (deb: { inherit (deb) url sha256; }) packages.runtime-trixie.debs) outputs.packages;
  harnessCheckInputs = builtins.mapAttrs (system: packages:
    map (p: p.pname or p.name) packages.harness.nativeCheckInputs) outputs.packages;
  toolset = builtins.mapAttrs (system: packages: packages.toolset.text) outputs.packages;
  toolsetGpu = builtins.mapAttrs (system: packages: packages.toolset-gpu.text or null) outputs.packages;
  runtimeGpu = builtins.mapAttrs (system: packages: packages.runtime-gpu.script or null) outputs.packages;
  devShell = builtins.mapAttrs (system: shells: map (p: p.pname or p.name) shells.default.packages) outputs.devShells;
  apps = outputs.apps;
  devShells = builtins.mapAttrs (system: shells: builtins.attrNames shells) outputs.devShells;
  lib = outputs.lib;
}
