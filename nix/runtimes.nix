# A runtime from its lock (harness/data/runtimes/NAME.lock.json), the same root the Debian side
# builds with mmdebstrap: every .deb fetched from Debian's snapshot archive at the lock's
# timestamp and checked against the lock's SHA256, then unpacked into one root. (Maintainer
# scripts do not run: what the probes need is files -- Mesa, glvnd's vendor files, python3.)
{ pkgs }:
name:
let
  lock = builtins.fromJSON (builtins.readFile (../harness/data/runtimes + "/${name}.lock.json"));
  deb = package: pkgs.fetchurl {
    url = "https://snapshot.debian.org/archive/debian/${lock.snapshot}/${package.filename}";
    sha256 = package.sha256;
  };
in
pkgs.runCommand "gpu-harness-runtime-${name}" {
  nativeBuildInputs = [ pkgs.dpkg ];
  debs = map deb lock.packages;
  passthru = { inherit lock; };
} ''
  mkdir -p $out
  for deb in $debs; do dpkg-deb -x "$deb" $out; done
''
