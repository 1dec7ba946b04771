# Everything that needs nixpkgs, for one system: the pinned components, the harness, runtimes,
# images, the toolset manifest, the checks. flake.nix calls it once per system. Kept small and
# plain on purpose: overrides of nixpkgs' own packages, with sources from nix/pins.
{ pkgs, src }:
let
  inherit (pkgs) lib;
  pins = import ./pins.nix;
  matrix = import ./matrix.nix;
  scenarios = import ./scenarios.nix { declaration = matrix; };

  fetchPin = pin:
    if pin.fetcher == "git"
    then pkgs.fetchgit { inherit (pin) url rev hash; }
    else pkgs.fetchurl { inherit (pin) url hash; };
  pinned = pin: old: { inherit (pin) version; src = fetchPin pin; };

  # Mesa with what the paths use: llvmpipe and softpipe, virgl (the guest side of vm-virgl and
  # the vtest client), zink; Vulkan: lavapipe and Venus ("virtio").
  mesaFrom = pin: (pkgs.mesa.override {
    galliumDrivers = [ "llvmpipe" "softpipe" "virgl" "zink" ];
    vulkanDrivers = [ "swrast" "virtio" ];
    vulkanLayers = [ ];
  }).overrideAttrs (pinned pin);
  mesa = mesaFrom pins.mesa;
  mesa-old = mesaFrom pins.mesa-old; # for Mesa-mismatch scenarios (guest or container older than host)

  # Venus is on by default on Linux (vulkanSupport) in nixpkgs' virglrenderer.
  virglrenderer = pkgs.virglrenderer.overrideAttrs (pinned pins.virglrenderer);
  bubblewrap = pkgs.bubblewrap.overrideAttrs (pinned pins.bubblewrap);
  qemu = (pkgs.qemu.override {
    hostCpuOnly = true;
    sdlSupport = true;
    openGLSupport = true;
    virglSupport = true;
    inherit virglrenderer;
  }).overrideAttrs (pinned pins.qemu);

  python = pkgs.python3;

  # A runtime: python3 for the probe with EGL pointed at one Mesa build through glvnd.
  probePythonFor = mesa: (pkgs.writeShellScriptBin "python3" ''
    export LD_LIBRARY_PATH=${lib.makeLibraryPath [ pkgs.libglvnd mesa ]}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export __EGL_VENDOR_LIBRARY_DIRS=${mesa}/share/glvnd/egl_vendor.d
    export LIBGL_DRIVERS_PATH=${mesa}/lib/dri
    exec ${python}/bin/python3 "$@"
  '').overrideAttrs { inherit (python) version; };
  runtime = probePythonFor mesa;
  runtime-mesa-old = probePythonFor mesa-old;

  harness = python.pkgs.buildPythonApplication {
    pname = "gpu-harness";
    version = "0.1.0";
    pyproject = true;
    inherit src;
    build-system = [ python.pkgs.setuptools ];
    dependencies = with python.pkgs; [ jinja2 pillow numpy rich qemu-qmp ];
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
  toolset = pkgs.writeText "toolset.json" (builtins.toJSON (import ./toolset.nix {
    inherit (pkgs.stdenv.hostPlatform) system;
    inherit bubblewrap virglrenderer mesa qemu kernel;
    inherit (pkgs) libglvnd;
    probePython = runtime;
    xvfb = pkgs.xorg.xvfb;
    busybox = pkgs.pkgsStatic.busybox;
    kernelImage = pkgs.stdenv.hostPlatform.linux-kernel.target;
    nixPrefetchGit = pkgs.nix-prefetch-git;
  }));

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

  # One check per scenario: the harness runs it on the pinned toolset inside the build sandbox
  # and the report is the output. A Skip fails the check (--fail-on-skip): a check that could
  # not run proves nothing.
  scenarioCheck = scenario: pkgs.runCommand "gpu-harness-${scenario.name}" {
    nativeBuildInputs = [ harness ];
    requiredSystemFeatures = scenario.features;
  } ''
    export HOME=$TMPDIR XDG_CACHE_HOME=$TMPDIR/cache
    gpu-harness run --matrix ${matrixJson} --toolset ${toolset} --filter '${scenario.id}' \
      --fail-on-skip -j 1 --out $out
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
    inherit harness mesa mesa-old virglrenderer bubblewrap qemu runtime runtime-mesa-old toolset probe-image
      kernel default-matrix;
    guest-busybox = pkgs.pkgsStatic.busybox;
    default = harness;
  };

  # Scenarios that render without a GPU; VM ones need the kvm feature.
  checks = checksWhere (scenario: !scenario.needsGpu) // { unit-tests = harness; };
  # GPU scenarios, opt in: nix build .#gpuChecks.<scenario> on a builder with the "gpu" feature
  # and /dev/dri in its extra-sandbox-paths.
  gpuChecks = checksWhere (scenario: scenario.needsGpu);

  apps.default = { type = "app"; program = "${default-matrix}/bin/gpu-harness-default-matrix"; };

  devShell = pkgs.mkShell {
    packages = [
      (python.withPackages (ps: with ps; [ jinja2 pillow numpy rich qemu-qmp pytest pytest-xdist pytest-benchmark
                                           hypothesis mypy ]))
      pkgs.ruff
      bubblewrap virglrenderer qemu pkgs.xorg.xvfb pkgs.pkgsStatic.busybox pkgs.cpio pkgs.kmod pkgs.git
      pkgs.nix-prefetch-git
    ];
    GPU_HARNESS_TOOLSET = toolset;
  };
}
