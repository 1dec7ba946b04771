"""Runtime recipes and locks: validation (one line, exit 2), drift and hash checks, the build's
handling of versions the archive no longer has, and the cache's atomicity. The builder itself
is replaced by a stand-in mmdebstrap script here (what it prints and leaves behind is what the
real one does); vmtests build real runtimes."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import cli
from harness.runtimes import recipes, builds
from harness.core.errors import InputError

SHA_A, SHA_B = "a" * 64, "b" * 64


def recipe(tmp_path, name="fixture", **fields):
    body = {"suite": "trixie", "architecture": "amd64", "packages": ["fixture-b"], **fields}
    lines = [f"{key} = {json.dumps(value)}" for key, value in body.items()]
    (tmp_path / f"{name}.toml").write_text("\n".join(lines) + "\n")
    return recipes.load_recipe(name, tmp_path)


def write_lock(tmp_path, found, entries, **fields):
    data = {"schema": recipes.LOCK_SCHEMA, "recipe": found.name, "suite": found.suite,
            "architecture": found.architecture, "archive_date": "Sun, 22 Nov 2026 00:00:00 UTC",
            "packages": entries, **fields}
    (tmp_path / f"{found.name}.lock.json").write_text(json.dumps(data))


def package(name, version, sha, arch="amd64"):
    return {"name": name, "version": version, "architecture": arch, "sha256": sha,
            "filename": f"pool/main/f/{name}/{name}_{version}_{arch}.deb"}


@pytest.mark.parametrize("fields, message", [
    ({"suite": "buster"}, "suite: 'buster' is not a known Debian suite"),
    ({"architecture": "sparc"}, "architecture: 'sparc' is not one of amd64, i386, arm64, riscv64"),
    ({"packages": []}, "packages: must be a non-empty list of package names"),
    ({"packages": ["Bad Name"]}, "packages: 'Bad Name' is not a Debian package name"),
    ({"mirror": "ftp://x"}, "mirror: 'ftp://x' is not an http(s) or file URL"),
    ({"colour": "red"}, "colour: unknown key"),
])
def test_a_bad_recipe_is_one_line_per_problem(tmp_path, fields, message):
    with pytest.raises(InputError) as err:
        recipe(tmp_path, **fields)
    assert len(err.value.problems) == 1 and message in err.value.problems[0]


def test_an_unknown_runtime_names_the_shipped_ones(tmp_path):
    with pytest.raises(InputError,
                       match=r"no recipe nope.toml \(known: bookworm, bookworm-arm64, "
                             r"bookworm-i386, bullseye, sid, "
                                         r"sid-host, sid-riscv64, trixie, trixie-arm64, "
                                         r"trixie-host, trixie-kms\)"):
        recipes.load_recipe("nope")


@pytest.mark.parametrize("change, message", [
    ({"architecture": "i386"}, "locks 'trixie'/'i386', but the recipe is trixie/amd64"),
    ({"packages": [package("fixture-b", "1.0", "nothex")]},
     "needs name, version, architecture and a sha256"),
    ({"packages": [package("fixture-b", "1.0", SHA_B, arch="arm64")]},
     "fixture-b is for 'arm64', not amd64"),
    ({"packages": []}, "the lock lists no package"),
    ({"schema": "other"}, "not a runtime lock"),
])
def test_a_bad_lock_is_one_line(tmp_path, change, message):
    found = recipe(tmp_path)
    write_lock(tmp_path, found, [package("fixture-b", "1.0", SHA_B)], **change)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recipes.load_lock(found, tmp_path)


def test_the_shipped_recipes_and_locks_are_valid_and_small():
    for name in recipes.recipe_names():
        found = recipes.load_recipe(name)
        lock = recipes.load_lock(found)
        assert lock is not None, f"{name} has no lock: gpu-harness runtimes lock {name}"
        names = {p.name for p in lock.packages}
        assert {"libegl-mesa0", "libgl1-mesa-dri", "libvulkan1", "libc6"} <= names, name
        # A workload runtime carries what the probes run on; a host-side one what it serves with.
        assert "python3" in names or "virgl-server" in names, name
        assert all(p.filename.startswith("pool/") for p in lock.packages), name
        # workload runtimes stay small (the host side pulls in what QEMU needs)
        if "python3" in names:
            assert not names & {"man-db", "apt-utils", "systemd"}, name


def test_drift_names_each_package_locked_and_now():
    lock = recipes.Lock("trixie", "amd64", "", (recipes.LockedPackage("a", "1.0", "amd64", SHA_A),
                                                 recipes.LockedPackage("b", "2.0", "amd64", SHA_B)))
    assert builds.drift_of(lock, {"a": ("1.0", "amd64"), "b": ("2.1", "amd64"), "c": ("3",
                                                                                      "all")}) == [
        "b: locked 2.0, now 2.1", "c: not locked, now 3"]


def test_a_deb_that_is_not_the_locked_file_stops_the_build():
    lock = recipes.Lock("trixie", "amd64", "", (recipes.LockedPackage("a", "1:1.0", "amd64", SHA_A),
                                                ))
    builds.check_hashes(lock, {("a", "1:1.0", "amd64"): SHA_A, ("z", "9", "amd64"): SHA_B})
    with pytest.raises(builds.RuntimeBuildError,
                       match=r"a_1:1.0_amd64.deb has SHA256 bbbbbbbbbbbbbbbb"):
        builds.check_hashes(lock, {("a", "1:1.0", "amd64"): SHA_B})


def test_apt_file_names_with_an_epoch_are_read_back(tmp_path):
    hashes = tmp_path / "debs.sha256"
    hashes.write_text(f"{SHA_A}  libx_1%3a2.0-1_amd64.deb\n{SHA_B}  tzdata_2025b-4_all.deb\n")
    assert builds.deb_hashes(hashes) == {("libx", "1:2.0-1", "amd64"): SHA_A, ("tzdata", "2025b-4",
                                                                               "all"): SHA_B}


def test_the_builder_command_pins_the_lock_and_keeps_values_whole(tmp_path):
    found = recipe(tmp_path, allow_expired=True)
    argv = builds.mmdebstrap_argv(found, tmp_path / "root", ["fixture-b=1.0", "fixture-a"],
                                  tmp_path / "h")
    assert argv[0] == "mmdebstrap" and "--include=fixture-b=1.0,fixture-a" in argv
    assert argv[-3:] == ["trixie", str(tmp_path / "root"),
                         "deb http://deb.debian.org/debian trixie main"]
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv


FAKE_MMDEBSTRAP = r"""#!/bin/sh
# A stand-in for mmdebstrap: refuses a pinned version the "archive" no longer has (as apt says
# it), else makes a root with a dpkg status and the .debs' hashes, as the customize hook would.
for arg; do case "$arg" in --include=*) include="${arg#--include=}";; \
  --customize-hook=*) ;; esac; done
for last; do :; done
root=$(eval echo \${$(($# - 1))})
hashes=$(printf '%s\n' "$@" | sed -n 's/.*sha256sum -- \*.deb > \([^ ]*\) .*/\1/p')
if [ -n "${FAKE_SLEEP:-}" ]; then sleep "$FAKE_SLEEP"; fi
case "$include" in \
  *fixture-a=1.0*) echo "E: Version '1.0' for 'fixture-a' was not found"; exit 100;; esac
case "$include" in *nosuchpkg*) echo "E: Unable to locate package nosuchpkg"; exit 100;; esac
mkdir -p "$root/var/lib/dpkg" "$root/usr/bin"
for entry in "fixture-a 1.1" "fixture-b 1.0"; do set -- $entry
  printf 'Package: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: amd64\n\n' "$1" "$2"
done > "$root/var/lib/dpkg/status"
printf '%s  fixture-a_1.1_amd64.deb\n%s  fixture-b_1.0_amd64.deb\n' \
  "$FAKE_SHA_A" "$FAKE_SHA_B" > "$hashes"
"""


@pytest.fixture
def fake_mmdebstrap(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mmdebstrap").write_text(FAKE_MMDEBSTRAP)
    (bin_dir / "mmdebstrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SHA_A", SHA_A)
    monkeypatch.setenv("FAKE_SHA_B", SHA_B)
    return bin_dir


def test_a_drifted_lock_builds_with_the_archives_version_and_says_so(tmp_path, fake_mmdebstrap,
                                                                     caplog):
    found = recipe(tmp_path)
    write_lock(tmp_path, found, [package("fixture-a", "1.0", "c" * 64), package("fixture-b", "1.0",
                                                                                SHA_B)])
    caplog.set_level("INFO", logger="gpu_harness")
    built = builds.build(found, recipes.load_lock(found, tmp_path), cache_dir=tmp_path / "cache")
    said = [record.getMessage() for record in caplog.records]
    assert built.drift == ["fixture-a: locked 1.0, now 1.1"]
    assert any("1 locked versions are gone from the archive" in line for line in said)
    assert ((built.root / "var/lib/dpkg/status").exists()
            and built.facts["lock_digest"] == built.root.parent.name)
    again = builds.build(found, recipes.load_lock(found, tmp_path), cache_dir=tmp_path / "cache")
    assert again.root == built.root  # the cache: nothing built the second time
    with pytest.raises(InputError,
                       match="the lock has drifted .1 packages, first: fixture-a: locked 1.0, now "
                             "not in the"):
        builds.build(found, recipes.load_lock(found, tmp_path), strict=True,
                     cache_dir=tmp_path / "strict")
    assert not (tmp_path / "strict").exists() or not any((tmp_path / "strict").iterdir())


def test_a_fetched_deb_that_differs_from_the_lock_fails_the_build(tmp_path, fake_mmdebstrap):
    found = recipe(tmp_path)
    write_lock(tmp_path, found, [package("fixture-a", "1.1", SHA_A), package("fixture-b", "1.0",
                                                                             "d" * 64)])
    with pytest.raises(builds.RuntimeBuildError, match="fixture-b_1.0_amd64.deb has SHA256"):
        builds.build(found, recipes.load_lock(found, tmp_path), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_package_the_archive_does_not_have_is_an_input_error(tmp_path, fake_mmdebstrap):
    found = recipe(tmp_path, packages=["nosuchpkg"])
    with pytest.raises(InputError, match=r"packages: nosuchpkg not in trixie/amd64"):
        builds.build(found, None, cache_dir=tmp_path / "cache")


def test_a_killed_build_leaves_no_runtime_a_later_run_would_use(tmp_path, fake_mmdebstrap):
    """SIGKILL the harness mid-build: no cache entry appears, and the partial folder is removed."""
    found = recipe(tmp_path)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from harness.runtimes import recipes, builds as runtimes
        runtimes.build(recipes.load_recipe("fixture", Path({str(tmp_path)!r})), None,
                       cache_dir=Path({str(cache)!r}))
    """)
    build = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, FAKE_SLEEP="30"))
    def builders():
        return [pid for pid in os.listdir("/proc") if pid.isdigit() and pid != str(build.pid)
                and str(cache) in read_cmdline(pid)]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not builders():
        time.sleep(0.02)
    assert builders(), "the builder never started"
    time.sleep(0.3)  # the harness has told the reaper about the builder's process group by now
    build.send_signal(signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(cache.iterdir()):
        time.sleep(0.05)
    assert list(cache.iterdir()) == []
    assert wait_for(lambda: builders() == []), "the builder outlived the harness"
    assert builds.build(found, None, cache_dir=cache).facts["packages"] == 2  # builds anew, whole


def read_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


def wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_runtimes_cli_lists_the_shipped_runtimes(capsys):
    assert cli.main(["runtimes", "list"]) == 0
    listed = capsys.readouterr().out
    for name in ("bullseye", "bookworm", "trixie", "sid", "bookworm-i386"):
        assert name in listed


def test_the_shipped_recipes_live_in_the_package():
    assert Path(recipes.RECIPES_DIR).is_dir() and (recipes.RECIPES_DIR / "trixie.toml").exists()


def test_a_program_from_a_runtime_sees_its_usr_and_the_hosts_files(tmp_path):
    from harness.runtimes import pinned_toolset
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin").symlink_to("usr/bin")
    script = pinned_toolset.wrapper("/usr/bin/bwrap", "trixie-host", root,
                                    "/usr/bin/qemu-system-x86_64")
    argv = script.splitlines()[-1].split()
    assert argv[:4] == ["exec", "/usr/bin/bwrap", "--tmpfs", "/"]
    assert ["--ro-bind", str(root / "usr"), "/usr"] == argv[argv.index(str(root / "usr")) - 1:][:3]
    assert "--symlink usr/bin /bin" in script and f"--bind / {pinned_toolset.HOST_ROOT}" in script
    assert ("--bind /tmp /tmp" in script and "--bind /usr /usr" not in script
            and "--bind /etc /etc" not in script)
    assert argv[-3:] == ["--", "/usr/bin/qemu-system-x86_64", '"$@"']


def test_every_runtime_a_scenario_needs_is_prepared_before_it_runs(monkeypatch, tmp_path):
    """A scenario's own runtime, the runtime its GL extension comes from and an image made from a
    runtime are all built up front, once; a GL extension whose runtime cannot be built fails its
    scenarios with that runtime named, and --runtime-root stands in for a build."""
    from harness import matrix
    from harness.run import preparation, runner
    from harness.host import toolset
    from harness.scenario.outcomes import FailureKind, Outcome

    declared = matrix.expand({
        "matrix": {"paths": ["flatpak-ext", "podman-vtest"], "runtimes": ["bookworm",
                                                                          "trixie-image"],
                   "probes": ["gl"], "exclude": [{"path": "flatpak-ext",
                                                  "runtime": "trixie-image"}]},
        "runtimes": {"bookworm": {"kind": "debootstrap"}, "sid": {"kind": "debootstrap"},
                     "trixie-image": {"kind": "image", "recipe": "trixie"}},
        "override": [{"match": "flatpak-ext/*", "gl_extension": "sid"}]}, "<t>").scenarios
    assert sorted(preparation.runtimes_to_prepare(declared)) == ["bookworm", "sid", "trixie-image"]
    built: list = []

    def ensure(name, strict=False, extra_packages=()):
        built.append(name)
        if name == "sid":
            raise builds.RuntimeBuildError("snapshot archive unreachable")
        return builds.BuiltRuntime(name, tmp_path / name, {"mesa": "22.3.6"})

    monkeypatch.setattr(builds, "ensure", ensure)
    monkeypatch.setattr(builds, "image_archive", lambda name,
                        extra_packages=(): tmp_path / f"{name}.tar.gz")
    monkeypatch.setattr(builds, "cached", lambda name, extra_packages=(): None)
    ready = preparation.prepare_runtimes(declared, runner.RunOptions(out_dir=tmp_path / "out"))
    assert sorted(built) == ["bookworm", "sid"]
    assert ready["trixie-image"].root == str(tmp_path / "trixie.tar.gz")
    assert (ready["sid"].failure == "runtime sid: snapshot archive unreachable"
            and not ready["sid"].root)
    (extension,) = [s for s in declared if s.path_id == "flatpak-ext"]
    placed = preparation.with_runtime(extension, ready)
    assert placed.runtime.root == str(tmp_path / "bookworm") and placed.gl_extension.root == ""
    monkeypatch.setattr(preparation, "prepare_runtimes", lambda scenarios, options: ready)
    (result,) = runner.run([extension], toolset.Toolset("discovery", {}, []),
                           runner.RunOptions(out_dir=tmp_path / "out"))
    assert (result.verdict.outcome, result.verdict.failure_kind) == (Outcome.FAIL,
                                                                     FailureKind.RUNTIME_BUILD)
    assert result.verdict.reason == "runtime sid: snapshot archive unreachable"


def test_a_runtime_root_given_stands_in_for_the_extensions_build(monkeypatch, tmp_path):
    from harness import matrix
    from harness.run import preparation, runner

    (scenario,) = matrix.expand({
        "matrix": {"paths": ["flatpak-ext"], "runtimes": ["bookworm"], "probes": ["gl"]},
        "runtimes": {"bookworm": {"kind": "debootstrap"}, "sid": {"kind": "debootstrap"}},
        "override": [{"match": "*", "gl_extension": "sid"}]}, "<t>").scenarios
    monkeypatch.setattr(builds, "ensure", lambda name, strict=False,
                        extra_packages=(): builds.BuiltRuntime(
        name, tmp_path / name, {}))
    ready = preparation.prepare_runtimes([scenario], runner.RunOptions(
        out_dir=tmp_path, runtime_roots={"sid": str(tmp_path / "nix-sid")}))
    assert preparation.with_runtime(scenario, ready).gl_extension.root == str(tmp_path / "nix-sid")
