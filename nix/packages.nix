# Everything that needs nixpkgs, for one system: the pinned components, the harness, runtimes,
# images, the toolset manifests, the checks. flake.nix calls it once per system. Kept small and
# plain on purpose: nixpkgs' own packages, overridden only where a pin asks for another source.
{ pkgs, pkgsOld, src, pins ? import ./pins.nix }:
let
  inherit (pkgs) lib;
  matrix = import ./matrix.nix;
  scenarios = import ./scenarios.nix { declaration = matrix; };

  fetchPin = pin:
    if pin.fetcher == "git"
    then pkgs.fetchgit { inherit (pin) url rev hash; }
    else pkgs.fetchurl { inherit (pin) url hash; };

  # Which nixpkgs a pin's package comes from, and whether it is overridden. A pin that follows a
  # flake input takes that nixpkgs' own package, unmodified. A fetched pin equal to what the lock
  # ships is no override either (binary cache hits); one that differs overrides src and version.
  # Decided here, at evaluation, and written into toolset.json (extra.nixpkgs).
  inputs = { nixpkgs = pkgs; nixpkgs-old = pkgsOld; };
  baseOf = attr: pin: inputs.${pin.follows or "nixpkgs"}.${attr};
  overrides = attr: pin: !(pin ? follows) && pin.version != ((baseOf attr pin).version or null);
  fromPin = attr: pin: base:
    if overrides attr pin then base.overrideAttrs (old: { inherit (pin) version; src = fetchPin pin; }) else base;
  provenance = attr: pin: {
    input = pin.follows or "nixpkgs";
    nixpkgs_version = (baseOf attr pin).version or null;
    override = overrides attr pin;
  } // (if pin ? version then { pin_version = pin.version; } else { });

  # nixpkgs' Mesa as it is: llvmpipe, softpipe, virgl and zink, lavapipe and Venus ("virtio"),
  # and the hardware drivers the GPU checks need.
  mesa = fromPin "mesa" pins.mesa (baseOf "mesa" pins.mesa);
  mesa-old = fromPin "mesa" pins.mesa-old (baseOf "mesa" pins.mesa-old); # Mesa-mismatch scenarios

  # Venus is on by default on Linux (vulkanSupport) in nixpkgs' virglrenderer; QEMU's defaults
  # have SDL, OpenGL and virgl on.
  virglrenderer = fromPin "virglrenderer" pins.virglrenderer pkgs.virglrenderer;
  bubblewrap = fromPin "bubblewrap" pins.bubblewrap pkgs.bubblewrap;
  qemu = fromPin "qemu" pins.qemu
    (if overrides "virglrenderer" pins.virglrenderer then pkgs.qemu.override { inherit virglrenderer; } else pkgs.qemu);
  # nixpkgs 25.11 has Xvfb as xorg.xvfb; newer nixpkgs moved it to the top level (the xorg set
  # is deprecated there).
  xvfb = pkgs.xvfb or pkgs.xorg.xvfb;
  # Where NixOS puts the host's GPU driver (nix-required-mounts mounts it into GPU builds).
  driverLink = pkgs.addDriverRunpath.driverLink;

  python = pkgs.python3;
  # The probes' python, with libseccomp's binding: the confined vtest server's seccomp filter is
  # compiled by the toolset's python3 (harness/system/seccompfilter.py); the probes use the standard library only.
  pythonWithSeccomp = python.withPackages (ps: [ ps.seccomp ]);

  # A runtime: python3 for the probe with EGL pointed at one Mesa build through glvnd; for the
  # GPU checks, the host's driver (driverLink) first, then that Mesa.
  probePythonFor = { mesa, libglvnd ? pkgs.libglvnd, vulkan-loader ? pkgs.vulkan-loader, hostDriver ? false }: (pkgs.writeShellScriptBin "python3" ''
    export LD_LIBRARY_PATH=${lib.optionalString hostDriver "${driverLink}/lib:"}${lib.makeLibraryPath [ libglvnd vulkan-loader mesa ]}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export __EGL_VENDOR_LIBRARY_DIRS=${lib.optionalString hostDriver "${driverLink}/share/glvnd/egl_vendor.d:"}${mesa}/share/glvnd/egl_vendor.d
    export LIBGL_DRIVERS_PATH=${lib.optionalString hostDriver "${driverLink}/lib/dri:"}${mesa}/lib/dri
    # The Vulkan probe: the loader finds no ICD in a build sandbox either (VK_DRIVER_FILES takes folders).
    export VK_DRIVER_FILES=${lib.optionalString hostDriver "${driverLink}/share/vulkan/icd.d:"}${mesa}/share/vulkan/icd.d
    exec ${pythonWithSeccomp}/bin/python3 "$@"
  '').overrideAttrs { inherit (python) version; };
  runtime = probePythonFor { inherit mesa; };
  runtime-gpu = probePythonFor { inherit mesa; hostDriver = true; };
  runtime-mesa-old = probePythonFor { mesa = mesa-old; inherit (pkgsOld) libglvnd vulkan-loader; };

  harness = python.pkgs.buildPythonApplication {
    pname = "gpu-harness";
    version = "0.1.0";
    pyproject = true;
    inherit src;
    build-system = [ python.pkgs.setuptools ];
    dependencies = with python.pkgs; [ jinja2 pillow numpy rich qemu-qmp jsonschema pyyaml ];
    # The unit tests and every program they call: cpio (the initramfs cache), git and Nix itself
    # (tests/test_nix.py evaluates the pure files and updates a pin from a local repository).
    nativeCheckInputs = [ python.pkgs.pytestCheckHook python.pkgs.hypothesis pkgs.cpio pkgs.git pkgs.nix ];
    # Nix evaluates in the build sandbox with its state under $TMPDIR (no /nix/var there).
    preCheck = ''
      export HOME=$TMPDIR NIX_STATE_DIR=$TMPDIR/nix/var NIX_LOG_DIR=$TMPDIR/nix/log NIX_CONF_DIR=$TMPDIR/nix/etc
    '';
    # The unit tests; vmtests launch real paths and run as the scenario checks below.
    enabledTestPaths = [ "tests" ];
    pythonImportsCheck = [ "harness" ];
  };

  kernel = pkgs.linuxPackages.kernel;
  toolsetFor = { name, probePython, hostDriver }: pkgs.writeText name (builtins.toJSON (import ./toolset.nix {
    inherit (pkgs.stdenv.hostPlatform) system;
    inherit bubblewrap virglrenderer mesa qemu kernel xvfb probePython;
    inherit (pkgs) libglvnd;
    busybox = pkgs.pkgsStatic.busybox;
    kernelImage = pkgs.stdenv.hostPlatform.linux-kernel.target;
    nixPrefetchGit = pkgs.nix-prefetch-git;
    driverLink = if hostDriver then driverLink else null;
    provenance = builtins.mapAttrs (name: pin: provenance (if name == "mesa-old" then "mesa" else name) pin) pins;
  }));
  toolset = toolsetFor { name = "toolset.json"; probePython = runtime; hostDriver = false; };
  # The GPU checks: the host's driver as nix-required-mounts provides it, then nixpkgs' Mesa.
  toolset-gpu = toolsetFor { name = "toolset-gpu.json"; probePython = runtime-gpu; hostDriver = true; };

  # The probe as an OCI image, driver paths set as for any Mesa-in-a-container deployment.
  probe-image = pkgs.dockerTools.buildLayeredImage {
    name = "gpu-harness-probe";
    tag = mesa.version;
    contents = [ mesa pkgs.libglvnd python ];
    extraCommands = ''
      mkdir -p probe tmp
      cp ${src}/harness/probe/gles.py probe/gles.py
    '';
    config = {
      Env = [
        "LIBGL_DRIVERS_PATH=${mesa}/lib/dri"
        "__EGL_VENDOR_LIBRARY_DIRS=${mesa}/share/glvnd/egl_vendor.d"
        "LD_LIBRARY_PATH=${lib.makeLibraryPath [ pkgs.libglvnd mesa ]}"
      ];
      Cmd = [ "${python}/bin/python3" "/probe/gles.py" "--out" "/tmp" ];
    };
  };

  matrixJson = pkgs.writeText "matrix.json" (builtins.toJSON matrix);

  # The matrix's built runtimes, from their locks; a check hands the harness the store path.
  runtimeFromLock = import ./runtimes.nix { inherit pkgs; };
  builtRuntimes = lib.mapAttrs (name: runtime: runtimeFromLock (runtime.recipe or name))
    (lib.filterAttrs (name: runtime: (runtime.kind or "rootfs") == "debootstrap") (matrix.runtimes or { }));
  runtimeRootArgs = scenario:
    lib.optionalString (builtRuntimes ? ${scenario.runtime}) "--runtime-root ${scenario.runtime}=${builtRuntimes.${scenario.runtime}} ";

  # One check per scenario: the harness runs it on the pinned toolset inside the build sandbox
  # and the report is the output. A Skip fails the check (--fail-on-skip): a check that could
  # not run proves nothing.
  # Features (nix/paths.json): "kvm" (Nix mounts /dev/kvm into the sandbox of a builder that
  # has it; without it the harness runs TCG and says so), "gpu" (nix-required-mounts mounts
  # /dev/dri, /dev/nvidia* and the driver link for derivations that ask for it).
  scenarioCheck = scenario: pkgs.runCommand "gpu-harness-${scenario.name}" {
    nativeBuildInputs = [ harness pkgs.cpio pkgs.zstd ];
    requiredSystemFeatures = scenario.features;
  } ''
    export HOME=$TMPDIR XDG_CACHE_HOME=$TMPDIR/cache
    gpu-harness run --matrix ${matrixJson} --toolset ${if scenario.needsGpu then toolset-gpu else toolset} \
      ${runtimeRootArgs scenario}--filter '${scenario.id}' --fail-on-skip -j 1 --out $out
  '';
  # A path's checks exist on the systems its family runs on (nix/paths.json: null is every system);
  # the harness boots x86_64 guests only so far, so elsewhere VM scenarios would only Skip.
  runsHere = scenario: scenario.systems == null || builtins.elem pkgs.stdenv.hostPlatform.system scenario.systems;
  checksWhere = keep: builtins.listToAttrs (map (scenario: { inherit (scenario) name; value = scenarioCheck scenario; })
    (builtins.filter (scenario: keep scenario && runsHere scenario) scenarios));

  default-matrix = pkgs.writeShellScriptBin "gpu-harness-default-matrix" ''
    exec ${harness}/bin/gpu-harness run --matrix ${matrixJson} --toolset ${toolset} "$@"
  '';
in
{
  packages = {
    inherit harness mesa mesa-old virglrenderer bubblewrap qemu runtime runtime-gpu runtime-mesa-old toolset
      toolset-gpu probe-image kernel default-matrix;
    guest-busybox = pkgs.pkgsStatic.busybox;
  } // lib.mapAttrs' (name: root: lib.nameValuePair "runtime-${name}" root) builtRuntimes // {
    default = harness;
  };

  # Scenarios that render without a GPU; VM ones need the kvm feature.
  checks = checksWhere (scenario: !scenario.needsGpu) // { unit-tests = harness; };
  # GPU scenarios, opt in: nix build .#gpuChecks.<system>.<scenario> on a builder with the "gpu"
  # feature given by programs.nix-required-mounts (see README).
  gpuChecks = checksWhere (scenario: scenario.needsGpu);

  apps.default = { type = "app"; program = "${default-matrix}/bin/gpu-harness-default-matrix"; };

  devShell = pkgs.mkShell {
    packages = [
      (python.withPackages (ps: with ps; [ jinja2 pillow numpy rich qemu-qmp jsonschema pyyaml pytest pytest-xdist pytest-benchmark
                                           hypothesis mypy ]))
      pkgs.ruff
      bubblewrap virglrenderer qemu xvfb pkgs.pkgsStatic.busybox pkgs.cpio pkgs.kmod pkgs.zstd pkgs.git
      pkgs.nix-prefetch-git
    ];
    GPU_HARNESS_TOOLSET = toolset;
  };
}
