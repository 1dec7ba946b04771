{
  description = "gpu-harness: does GPU rendering really work through this sandbox, container or VM path?";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
  # An older nixpkgs for the Mesa-mismatch runtime: its own Mesa (24.2.x) built by the recipe of
  # its own release and served by the binary cache, instead of an old source forced through the
  # new recipe (nix/pins/mesa-old.json follows it).
  inputs.nixpkgs-old.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs, nixpkgs-old }:
    let
      # x86_64-linux first; aarch64-linux evaluates too (its VM paths say Skip: x86_64 guests only).
      systems = [ "x86_64-linux" "aarch64-linux" ];
      perSystem = nixpkgs.lib.genAttrs systems (system:
        import ./nix/packages.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          pkgsOld = nixpkgs-old.legacyPackages.${system};
          src = self;
        });
      forEach = output: nixpkgs.lib.mapAttrs (system: outputs: outputs.${output}) perSystem;
    in
    {
      # Pure parts, evaluable without nixpkgs.
      lib = {
        matrix = import ./nix/matrix.nix;
        scenarios = import ./nix/scenarios.nix { };
        pins = import ./nix/pins.nix;
      };

      packages = forEach "packages";
      # `nix flake check`: one check per scenario that renders without a GPU (vm-* need the kvm
      # system feature), named like the scenario (vtest-virgl/host/gl -> vtest-virgl__host__gl),
      # plus the unit tests.
      checks = forEach "checks";
      # GPU scenarios, opt in: nix build .#gpuChecks.<system>.native__host__gl
      gpuChecks = forEach "gpuChecks";
      # `nix run .`: the default matrix on the pinned toolset.
      apps = forEach "apps";
      devShells = nixpkgs.lib.mapAttrs (system: outputs: { default = outputs.devShell; }) perSystem;
    };
}
