# The source pins, nix/pins/<name>.json, as an attribute set { mesa = { fetcher, url, rev, hash,
# version, ... }; ... }. Builtins only. Written by `gpu-harness pins update`.
let
  dir = ./pins;
  jsonFiles = builtins.filter (file: builtins.match ".*\\.json" file != null)
    (builtins.attrNames (builtins.readDir dir));
  pinName = file: builtins.head (builtins.match "(.*)\\.json" file);
in
builtins.listToAttrs (map
  (file: { name = pinName file; value = builtins.fromJSON (builtins.readFile (dir + "/${file}")); })
  jsonFiles)
