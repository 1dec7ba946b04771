# flake.nix's outputs with tests/nix/stub-pkgs.nix as nixpkgs, reduced to what a test can compare.
let
  stub = system: import ./stub-pkgs.nix { inherit system; };
  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = ../..;
    nixpkgs = {
      lib = (stub "x86_64-linux").lib;
      legacyPackages = { x86_64-linux = stub "x86_64-linux"; aarch64-linux = stub "aarch64-linux"; };
    };
  };
  checkRecord = check: { features = check.requiredSystemFeatures or [ ]; script = check.script or ""; };
in
{
  inputs = flake.inputs;
  systems = builtins.attrNames outputs.packages;
  checks = builtins.mapAttrs (system: checks: builtins.mapAttrs (name: checkRecord) checks) outputs.checks;
  gpuChecks = builtins.mapAttrs (system: checks: builtins.attrNames checks) outputs.gpuChecks;
  packages = builtins.mapAttrs (system: packages: builtins.attrNames packages) outputs.packages;
  toolset = builtins.mapAttrs (system: packages: packages.toolset.text) outputs.packages;
  apps = outputs.apps;
  devShells = builtins.mapAttrs (system: shells: builtins.attrNames shells) outputs.devShells;
  lib = outputs.lib;
}
