"""The Nix layer, as far as a machine without nixpkgs can check it: every .nix file parses; the
builtins-only parts (matrix, scenarios, paths, pins, toolset) evaluate and agree with the Python
side; flake.nix's outputs evaluate against a stand-in nixpkgs; the pins updater works against a
local git repository and writes the hash nix-hash gives for a clean checkout."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.launch.families import registry
from harness.scenario import model
from harness import cli, matrix as matrix_mod
from harness.scenario import paths as path_registry
from harness.runtimes import pins, recipes
from harness.host import toolset as toolset_mod

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}


def need(*programs):
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        reason = f"needs {', '.join(missing)} (apt-get install nix-bin git)"
        if "nix" in REQUIRED:
            pytest.fail(f"required here but missing: {reason}")
        pytest.skip(reason)


def nix_eval(path=None, expr=None):
    need("nix-instantiate")
    argv = ["nix-instantiate", "--eval", "--strict", "--json"] + (["-E", expr] if expr
                                                                  else [str(path)])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def nix_files():
    return sorted(p for p in ROOT.rglob("*.nix") if ".venv" not in p.parts
                  and ".git" not in p.parts)


def test_every_nix_file_parses():
    need("nix-instantiate")
    files = nix_files()
    assert {"flake.nix", "nix/matrix.nix", "nix/packages.nix", "nix/pins.nix"} <= \
        {str(p.relative_to(ROOT)) for p in files}
    for path in files:
        done = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{path}: {done.stderr}"


def test_nix_matrix_expands_to_exactly_the_toml_matrix():
    need("nix-instantiate")
    from_nix = matrix_mod.load(ROOT / "nix" / "matrix.nix").scenarios
    from_toml = matrix_mod.load(matrix_mod.DEFAULT_MATRIX).scenarios
    assert [s.to_dict() for s in from_nix] == [s.to_dict() for s in from_toml]
    declared = matrix_mod.read_declaration(matrix_mod.DEFAULT_MATRIX)["matrix"]
    pairs = [(path, probe) for path in declared["paths"] for probe in declared["probes"]
             if probe in path_registry.get(path).probes
             and registry.of(path_registry.get(path)).accepts(
                 model.HOST)]
    assert len([s for s in from_nix if s.runtime.name == "host"]) == len(pairs)
    assert {s.runtime.name for s in from_nix} == {"host", "trixie"}


DECLARATIONS = [
    None,  # the default matrix
    {"matrix": {"paths": ["software", "vtest-virgl", "sandbox-dri", "vm-virgl"],
                "runtimes": ["host", "trixie"],
                "probes": ["gl"], "exclude": [{"path": "sandbox-*", "runtime": "trix?e"},
                                              {"path": "vm-virgl"}]},
     "runtimes": {"trixie": {"kind": "rootfs", "root": "/"}}},
    {"matrix": {"paths": ["software", "vtest-virgl", "sandbox-dri", "vm-vfio-nested"],
                "probes": ["gl", "basic", "vfio"]},
     "probes": {"basic": {"kind": "piglit", "tests": ["fbo-alpha"]}}},
]


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=["default", "excludes-and-rootfs",
                                                           "declared-probes"])
def test_nix_scenario_list_matches_the_python_expansion(declaration):
    if declaration is None:
        expected = matrix_mod.load(matrix_mod.DEFAULT_MATRIX).scenarios
        listed = nix_eval(expr="import ./nix/scenarios.nix { }")
    else:
        expected = matrix_mod.expand(declaration, "<test>").scenarios
        literal = json.dumps(json.dumps(declaration))
        listed = nix_eval(expr=f"import ./nix/scenarios.nix {{ declaration = builtins.fromJSON "
                               f"{literal}; }}")
    assert [s["id"] for s in listed] == [s.id for s in expected]
    assert [s["name"] for s in listed] == [s.slug for s in expected]


def test_nix_paths_json_is_written_from_the_path_table():
    written = (ROOT / "nix" / "paths.json").read_text()
    assert written == registry.table_json(), \
        "nix/paths.json is stale: python -m harness.launch.families.registry > nix/paths.json"


def test_nix_paths_table_agrees_with_the_path_registry():
    table = nix_eval(ROOT / "nix" / "paths.nix")
    assert set(table) == set(path_registry.PATHS)
    for name, spec in path_registry.PATHS.items():
        assert table[name]["family"] == spec.family, name
        assert ("kvm" in table[name]["features"]) == (spec.family in ("vm", "vfio")), name
        # A path that needs a GPU must not be a default check, where there is none.
        assert ("gpu" in table[name]["features"]) == (spec.needs_render_node
                                                      or name in ("native", "vm-vfio")), name


def test_pin_files_are_valid_and_nix_reads_the_same_values():
    loaded = pins.load_all()
    assert {"mesa", "mesa-old", "virglrenderer", "bubblewrap", "qemu"} <= set(loaded)
    from_nix = nix_eval(ROOT / "nix" / "pins.nix")
    assert from_nix == {name: json.loads(pin.to_json()) for name, pin in loaded.items()}
    for pin in loaded.values():
        assert pin.follows in pins.FLAKE_INPUTS or (pins.SRI_SHA256.match(pin.hash) and pin.version)


def test_a_bad_pin_file_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    (tmp_path / "broken.json").write_text(json.dumps({"fetcher": "svn", "url": "x",
                                                      "hash": "md5-abc",
                                                      "version": "1", "colour": "red"}))
    assert cli.main(["pins", "check", "--dir", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(line.startswith("gpu-harness: error: ") for line in lines)
    assert any("colour: unknown key" in line for line in lines)
    (tmp_path / "broken.json").write_text(json.dumps({"fetcher": "svn", "url": "x",
                                                      "hash": "md5-abc",
                                                      "version": "1"}))
    assert cli.main(["pins", "check", "--dir", str(tmp_path)]) == 2
    assert "fetcher: 'svn' is not one of git, url" in capsys.readouterr().err


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def upstream(tmp_path):
    """A local git repository with release tags, standing in for an upstream project."""
    need("git", "nix-hash")
    repo = tmp_path / "upstream"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    for version in ("1.0", "1.2", "1.10", "2.0-rc1"):
        (repo / "VERSION").write_text(version + "\n")
        (repo / "src").mkdir(exist_ok=True)
        (repo / "src" / "main.c").write_text(f"int version = {version.split('.')[0]};\n")
        (repo / "tool.sh").write_text("#!/bin/sh\necho hi\n")
        (repo / "tool.sh").chmod(0o755)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", version, cwd=repo)
        git("tag", f"v{version}", cwd=repo)
    return repo


def clean_checkout_hash(repo: Path, rev: str, where: Path) -> str:
    subprocess.run(["git", "clone", "-q", str(repo), str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "-c", "advice.detachedHead=false", "checkout", "-q",
                    rev], check=True)
    shutil.rmtree(where / ".git")
    digest = subprocess.run(["nix-hash", "--type", "sha256", str(where)], capture_output=True,
                            text=True,
                            check=True).stdout.strip()
    return "sha256-" + base64.b64encode(bytes.fromhex(digest)).decode()


def test_pins_update_moves_a_git_pin_to_the_newest_release_tag(upstream, tmp_path, capsys):
    pins_dir = tmp_path / "pins"
    pins_dir.mkdir()
    old_hash = "sha256-" + base64.b64encode(b"\0" * 32).decode()
    (pins_dir / "thing.json").write_text(json.dumps({"fetcher": "git", "url": f"file://{upstream}",
                                                     "rev": "v1.0",
                                                     "hash": old_hash, "version": "1.0",
                                                     "tag_prefix": "v"}))
    assert cli.main(["pins", "update", "thing", "--dir", str(pins_dir)]) == 0
    pin = pins.load(pins_dir / "thing.json")
    expected = clean_checkout_hash(upstream, "v1.10", tmp_path / "check")
    # 1.10 > 1.2; the rc is skipped
    assert (pin.rev, pin.version, pin.hash) == ("v1.10", "1.10", expected)
    printed = capsys.readouterr().out
    assert f"thing: hash {old_hash} -> {expected}" in printed and "rev v1.0 -> v1.10" in printed
    assert cli.main(["pins", "update", "thing", "--dir", str(pins_dir)]) == 0
    assert capsys.readouterr().out.strip() == "thing: unchanged"
    assert cli.main(["pins", "update", "thing", "--rev", "v1.2", "--dir", str(pins_dir)]) == 0
    pin = pins.load(pins_dir / "thing.json")
    assert (pin.rev, pin.version, pin.hash) == ("v1.2", "1.2", clean_checkout_hash(upstream, "v1.2",
                                                                                   tmp_path / "c2"))


def test_pins_update_of_a_missing_rev_fails_and_keeps_the_file(upstream, tmp_path, capsys):
    pins_dir = tmp_path / "pins"
    pins_dir.mkdir()
    original = json.dumps({"fetcher": "git", "url": f"file://{upstream}", "rev": "v1.0",
                           "hash": "sha256-" + base64.b64encode(b"\1" * 32).decode(),
                           "version": "1.0"})
    (pins_dir / "thing.json").write_text(original)
    assert cli.main(["pins", "update", "thing", "--rev", "v9.9", "--dir", str(pins_dir)]) == 1
    assert "thing: not updated:" in capsys.readouterr().err
    assert (pins_dir / "thing.json").read_text() == original
    assert cli.main(["pins", "update", "nosuch", "--dir", str(pins_dir)]) == 2


def test_pins_update_moves_a_url_pin_with_its_template(tmp_path, capsys):
    need("nix-hash")
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "thing-2.0.tar").write_bytes(b"release 2.0 contents\n" * 100)
    pins_dir = tmp_path / "pins"
    pins_dir.mkdir()
    (pins_dir / "thing.json").write_text(json.dumps({
        "fetcher": "url", "url": f"file://{releases}/thing-1.0.tar", "version": "1.0",
        "hash": "sha256-" + base64.b64encode(b"\2" * 32).decode(),
        "url_template": f"file://{releases}/thing-{{version}}.tar"}))
    assert cli.main(["pins", "update", "thing", "--version", "2.0", "--dir", str(pins_dir)]) == 0
    pin = pins.load(pins_dir / "thing.json")
    flat = hashlib.sha256((releases / "thing-2.0.tar").read_bytes()).digest()
    assert pin.hash == "sha256-" + base64.b64encode(flat).decode()
    assert pin.url.endswith("/thing-2.0.tar") and pin.version == "2.0"


def flake_outputs(layout="25.11"):
    return nix_eval(expr=f'import ./tests/nix/flake-outputs.nix {{ layout = "{layout}"; }}')


def test_flake_outputs_evaluate_against_a_stand_in_nixpkgs(tmp_path):
    outputs = flake_outputs()
    assert outputs["systems"] == ["aarch64-linux", "x86_64-linux"]
    assert outputs["inputs"]["nixpkgs"]["url"] == "github:NixOS/nixpkgs/nixos-25.11"
    x86 = outputs["checks"]["x86_64-linux"]
    default_scenarios = matrix_mod.load(matrix_mod.DEFAULT_MATRIX).scenarios
    # Rootful podman does not run in a Nix build sandbox: the container family has no checks.
    # A device path in a virtual GPU machine needs no GPU here: it is a check like a vm path.
    no_gpu = [s for s in default_scenarios if (s.path_id not in ("native", "sandbox-dri")
                                               or s.machine != model.LOCAL)
              and registry.of(s.spec).nix_systems != ()]
    assert any(s.machine != model.LOCAL for s in no_gpu)
    assert set(x86) == {s.slug for s in no_gpu} | {"unit-tests"}
    for scenario in no_gpu:
        check = x86[scenario.slug]
        assert (f"--filter '{scenario.id}'" in check["script"]
                and "--fail-on-skip" in check["script"])
        assert check["features"] == (["kvm"] if scenario.spec.family in ("vm", "vfio")
                                     or scenario.machine != model.LOCAL
                                     else [])
    assert not any(name.startswith("vm-") for name in outputs["checks"]["aarch64-linux"])
    assert sorted(outputs["gpuChecks"]["x86_64-linux"]) == [
        "native__host__gl", "native__host__vulkan", "sandbox-dri__host__gl",
                                                            "sandbox-dri__host__vulkan",
        "sandbox-dri__trixie__gl", "sandbox-dri__trixie__vulkan"]
    assert outputs["apps"]["x86_64-linux"]["default"]["type"] == "app"
    assert outputs["devShells"] == {"aarch64-linux": ["default"], "x86_64-linux": ["default"]}
    assert {"harness", "mesa", "mesa-old", "virglrenderer", "bubblewrap", "qemu", "toolset",
            "probe-image",
            "runtime", "kernel"} <= set(outputs["packages"]["x86_64-linux"])
    # The toolset manifest the flake writes loads in the Python toolset loader.
    for system, text in outputs["toolset"].items():
        manifest = tmp_path / f"{system}.json"
        manifest.write_text(text)
        toolset = toolset_mod.load_manifest(manifest)
        assert toolset.tools["bwrap"].path.endswith("-bubblewrap-0.11.0/bin/bwrap")
        assert toolset.tools["python3"].path.startswith("/nix/store/")
        assert toolset.tools["kernel"].extra["modules_dir"].endswith("/lib/modules/6.12.60")
        # The stand-in store paths do not exist here, so the tools load as declared but not found.
        assert (toolset.tools["qemu-system-x86_64"].path is not None) == (system == "x86_64-linux")
        for foreign in ("qemu-system-aarch64", "qemu-system-riscv64"):  # arm64 and riscv64 guests
            assert (toolset.tools[foreign].path is not None) == (system == "x86_64-linux"), foreign
        assert "does not exist" in toolset.why_missing("bwrap")


def test_flake_lock_pins_the_nixpkgs_the_flake_asks_for():
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert set(lock["nodes"]["root"]["inputs"]) == {"nixpkgs",
                                                    "nixpkgs-old"} == set(pins.FLAKE_INPUTS)
    for name in pins.FLAKE_INPUTS:
        node = lock["nodes"][lock["nodes"]["root"]["inputs"][name]]
        assert len(node["locked"]["rev"]) == 40 and pins.SRI_SHA256.match(node["locked"]["narHash"])
        original = node["original"]
        assert (f"github:{original['owner']}/{original['repo']}/{original['ref']}"
                in (ROOT / "flake.nix").read_text())


# Issue 10's items, each against the strict stand-in (tests/nix/stub-pkgs.nix): each of these
# failed on the flake as it was before (see the issue note).

def test_the_toolset_evaluates_with_a_nix_prefetch_git_that_has_no_version():
    """nixpkgs' nix-prefetch-git has a name and no version: the manifest says null, it does not
    throw."""
    for layout in ("25.11", "26.05"):
        for text in flake_outputs(layout)["toolset"].values():
            tools = json.loads(text)["tools"]
            assert (tools["nix-prefetch-git"]["version"] is None
                    and tools["bwrap"]["version"] == "0.11.0")


def test_the_harness_check_phase_has_every_program_the_unit_tests_call():
    # test_initramfs (cpio), test_nix (git, nix-instantiate, nix-hash)
    called = {"cpio", "git", "nix"}
    for inputs in flake_outputs()["harnessCheckInputs"].values():
        assert called <= set(inputs) and "hypothesis" in inputs


def test_pins_equal_to_the_lock_are_no_override_and_mesa_is_nixpkgs_own():
    outputs = flake_outputs()
    for system, packages in outputs["pinned"].items():
        for name in ("mesa", "virglrenderer", "bubblewrap", "qemu"):
            assert (packages[name]["overridden"] is None
                    and packages[name]["overriddenAttrs"] == []), (system, name)
        assert (packages["mesa"]["version"] == "25.2.6"
                and packages["mesa-old"]["version"] == "24.2.8")
        tools = json.loads(outputs["toolset"][system])["tools"]
        assert tools["mesa"]["extra"]["nixpkgs"] == {"input": "nixpkgs",
                                                     "nixpkgs_version": "25.2.6", "override": False}
        assert tools["bwrap"]["extra"]["nixpkgs"]["override"] is False


def test_a_pin_that_differs_from_the_lock_is_an_override_the_toolset_marks(tmp_path):
    bumped = nix_eval(expr="""
      let
        pins = import ./nix/pins.nix;
        packages = import ./nix/packages.nix {
          pkgs = import ./tests/nix/stub-pkgs.nix { };
          pkgsOld = import ./tests/nix/stub-pkgs.nix { layout = "24.11"; };
          src = ./.;
          pins = pins // { bubblewrap = pins.bubblewrap // { version = "0.11.1"; }; };
        };
      in { inherit (packages.packages.bubblewrap) version overriddenAttrs;
           toolset = packages.packages.toolset.text; }
    """)
    assert bumped["version"] == "0.11.1" and sorted(bumped["overriddenAttrs"]) == ["src", "version"]
    marked = json.loads(bumped["toolset"])["tools"]["bwrap"]["extra"]["nixpkgs"]
    assert marked == {"input": "nixpkgs", "nixpkgs_version": "0.11.0", "override": True,
                      "pin_version": "0.11.1"}


def test_gpu_checks_use_the_host_driver_and_nixpkgs_mesa():
    outputs = flake_outputs()
    for system, checks in outputs["gpuChecks"].items():
        for check in checks.values():
            assert "toolset-gpu.json" in check["script"] and check["features"] == ["gpu"]
        assert (outputs["runtimeGpu"][system].startswith("export LD_LIBRARY_PATH="
                                                         "/run/opengl-driver/lib:"))
        assert ("__EGL_VENDOR_LIBRARY_DIRS=/run/opengl-driver/share/glvnd/egl_vendor.d:"
                in outputs["runtimeGpu"][system])
        env = json.loads(outputs["toolsetGpu"][system])["tools"]["mesa"]["extra"]["env"]
        assert (env["__EGL_VENDOR_LIBRARY_DIRS"].startswith("/run/opengl-driver/share/glvnd/"
                                                            "egl_vendor.d:"))
    for checks in outputs["checks"].values():
        assert all("toolset-gpu" not in check["script"] for check in checks.values())


def test_xvfb_comes_from_where_the_locked_nixpkgs_has_it():
    for layout in ("25.11", "26.05"):  # xorg.xvfb at 25.11; top-level xvfb and no xorg set later
        outputs = flake_outputs(layout)
        assert "xvfb" in outputs["devShell"]["x86_64-linux"]
        tools = json.loads(outputs["toolset"]["x86_64-linux"])["tools"]
        assert tools["Xvfb"]["path"].endswith("-xvfb-21.1.18/bin/Xvfb")
        # Xvfb's GLX and QEMU's GL display are pointed at the toolset's Mesa (no /run/opengl-driver
        # in a build).
        env = tools["mesa"]["extra"]["env"]
        assert (env["LIBGL_DRIVERS_PATH"] == tools["mesa"]["path"]
                and env["__GLX_VENDOR_LIBRARY_NAME"] == "mesa")


def test_checks_declare_the_builder_features_their_paths_need():
    outputs = flake_outputs()
    for name, check in outputs["checks"]["x86_64-linux"].items():
        if name == "unit-tests":
            continue
        expected = ["kvm"] if name.startswith("vm-") or "__on__" in name else []  # a guest
        assert check["features"] == expected and {"cpio", "zstd"} <= set(check["inputs"]), name


def test_the_stand_in_rejects_what_nixpkgs_rejects():
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "-E",
                           "(import ./tests/nix/stub-pkgs.nix { }).mesa.override { bogusDrivers = "
                           "[ ]; }"],
                          cwd=ROOT, capture_output=True, text=True)
    assert (done.returncode != 0
            and "mesa-25.2.6.override: unexpected argument(s) bogusDrivers" in done.stderr)
    missing = subprocess.run(["nix-instantiate", "--eval", "--strict", "-E",
                              "(import ./tests/nix/stub-pkgs.nix { }).nix-prefetch-git.version"],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode != 0 and "attribute 'version' missing" in missing.stderr
    accepted = nix_eval(expr="(import ./tests/nix/stub-pkgs.nix { }).mesa.override { "
                             "galliumDrivers = [ ]; } ? overridden")
    assert accepted is True


def test_runtime_checks_get_the_runtime_built_from_its_lock():
    """The Nix twin of `runtimes build`: every .deb of the lock from the snapshot archive at the
    lock's timestamp, with the lock's SHA256; the check hands the harness that root."""
    outputs = flake_outputs()
    lock = recipes.load_lock(recipes.load_recipe("trixie"))
    debs = outputs["runtimeDebs"]["x86_64-linux"]
    assert len(debs) == len(lock.packages) and lock.snapshot
    for deb, package in zip(debs, lock.packages, strict=True):
        assert deb == {"url": "https://snapshot.debian.org/archive/debian/"
                              f"{lock.snapshot}/{package.filename}",
                       "sha256": package.sha256}
    check = outputs["checks"]["x86_64-linux"]["vtest-virgl__trixie__gl"]
    assert ("--runtime-root "
            "trixie=/nix/store/00000000000000000000000000000000-gpu-harness-runtime-trixie "
            in check["script"])
    assert ("--runtime-root"
            not in outputs["checks"]["x86_64-linux"]["vtest-virgl__host__gl"]["script"])
