# The scenario list of a matrix declaration, as the flake's checks see it: paths x runtimes x
# probes x displays x machines, minus excludes, each path on the runtime kinds its family takes -- the same ids and order
# as harness/matrix.py (tests/test_nix.py compares them). Overrides change settings, not ids,
# so they are not needed here. Builtins only:
#   nix-instantiate --eval --strict --json -E "import ./nix/scenarios.nix { }"
{ declaration ? import ./matrix.nix }:
let
  paths = import ./paths.nix;
  m = declaration.matrix;
  runtimeKinds = builtins.mapAttrs (name: runtime: runtime.kind or "rootfs") (declaration.runtimes or { });
  kindOf = runtime: if runtime == "host" then "host" else runtimeKinds.${runtime} or "rootfs";

  # fnmatch-style globs (* and ?) as regular expressions.
  globToRegex = glob: builtins.replaceStrings
    [ "\\" "." "+" "(" ")" "[" "]" "{" "}" "^" "$" "|" "*" "?" ]
    [ "\\\\" "\\." "\\+" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\^" "\\$" "\\|" ".*" "." ]
    glob;
  globMatches = glob: value: builtins.match (globToRegex glob) value != null;
  excluded = scenario: builtins.any
    (entry: entry != { } && builtins.all
      (key: !(builtins.elem key [ "path" "runtime" "probe" "machine" "display" ]) || globMatches entry.${key} scenario.${key})
      (builtins.attrNames entry))
    (m.exclude or [ ]);

  # A probe the declaration declares ([probes.NAME]: a workload) runs where the gl probe runs.
  program = probe: if (declaration.probes or { }) ? ${probe} then "gl" else probe;
  slug = builtins.replaceStrings [ "/" "@" ] [ "__" "__on__" ];
  # A machine other than this host is a QEMU guest with a virtual GPU: its scenarios need no GPU
  # here, only what a guest needs (kvm, like the vm paths). Only families that run in a guest go there.
  onMachine = path: machine: machine == "local" || paths.${path}.runs_in_guest;
  # A display server (wayland, x11) takes a path whose family hands its socket to the workload,
  # and a probe that has a presenting form (gl, vulkan); offscreen is every scenario's.
  presents = path: probe: display: display == "offscreen" || (builtins.elem display paths.${path}.displays
    && !((declaration.probes or { }) ? ${probe}) && builtins.elem probe [ "gl" "vulkan" ]);
  all = builtins.concatMap
    (path: builtins.concatMap
      (runtime: builtins.concatMap
        (probe: builtins.concatMap
          (display: map
            (machine: rec {
              inherit path runtime probe machine display;
              id = "${path}/${runtime}/${probe}" + (if display == "offscreen" then "" else "+${display}")
                + (if machine == "local" then "" else "@${machine}");
              name = slug id;
              inherit (paths.${path}) family systems;
              features = if machine == "local" then paths.${path}.features else [ "kvm" ];
              needsGpu = builtins.elem "gpu" features;
            })
            (builtins.filter (onMachine path) (m.machines or [ "local" ])))
          (builtins.filter (presents path probe) (m.displays or [ "offscreen" ])))
        (builtins.filter (probe: builtins.elem (program probe) paths.${path}.probes) (m.probes or [ "gl" ])))
      # A family that names no kinds takes every root filesystem, not an image archive.
      (builtins.filter (runtime: if paths.${path}.runtime_kinds == null then kindOf runtime != "image"
        else builtins.elem (kindOf runtime) paths.${path}.runtime_kinds)
        (m.runtimes or [ "host" ])))
    m.paths;
in
builtins.filter (scenario: !(excluded scenario)) all
