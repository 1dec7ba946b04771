"""The podman command line of each container path, built without running podman: every piece
of state private, runc, both ulimits, no network, the devices seed 003 names, values that
podman would split refused. Over an image: run by id with the image's python as entrypoint and
its Env kept, loaded by argv lists (gzip -dc into podman load, no shell) whose values stay one
argument each."""
import json
import sys
from pathlib import Path

import pytest

from harness.launch.families import registry
from harness.runtimes import imagearchive
from harness import matrix
from harness.launch.families import container
from harness.launch.families.container import (ContainerError, Names, dri_devices, overlay_root,
                                               volume)
from harness.runtimes.imagearchive import ImageInfo
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.host.toolset import Tool, Toolset


TOOLS = {"podman": Tool("podman", "/usr/bin/podman"), "runc": Tool("runc", "/usr/sbin/runc"),
         "virgl_test_server": Tool("virgl_test_server", "/usr/bin/virgl_test_server")}


def plan_for(path: str, tmp_path: Path, nodes=("/dev/dri/renderD128",), runtime=None, **defaults):
    (tmp_path / "root").mkdir(exist_ok=True)
    declared = {"matrix": {"paths": [path], "runtimes": ["r"], "probes": ["gl"]},
                "runtimes": {"r": runtime or {"kind": "rootfs", "root": str(tmp_path / "root")}}}
    if defaults:
        declared["defaults"] = defaults
    (scenario,) = matrix.expand(declared, "t").scenarios
    toolset = Toolset("test", TOOLS, list(nodes))
    workspace = Workspace(tmp_path / "result", tmp_path / "gh-run" / "1")
    ctx = LaunchContext(scenario, toolset, workspace, Workload(probe="gl"))
    return registry.of(scenario.spec).plan(ctx), Names.of(workspace)


def test_all_state_is_private_and_the_container_has_no_network(tmp_path):
    plan, names = plan_for("podman-dri", tmp_path)
    argv = plan.argv
    for flag, part in (("--root", "root"), ("--runroot", "runroot"), ("--tmpdir", "tmp"),
                       ("--network-config-dir", "net")):
        assert argv[argv.index(flag) + 1] == f"{names.state}/{part}"
    assert len(f"{names.state}/runroot") <= 50, "podman refuses a longer runroot"
    assert (argv[argv.index("--runtime") + 1] == "runc"
            and argv[argv.index("--events-backend") + 1] == "none")
    assert argv[argv.index("--network") + 1] == "none"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--ulimit"] == ["nofile=1024:4096",
                                                                            "nproc=4096:4096"]
    assert argv[argv.index("--cgroup-parent") + 1] == f"/{names.cgroup}"
    assert argv[argv.index("--rootfs") + 1] == f"{tmp_path}/root:O"


@pytest.mark.parametrize("path, devices", [
    ("podman-dri", ["/dev/dri/renderD128:/dev/dri/renderD128"]),
    ("podman-dri-all", ["/dev/dri"]),
])
def test_the_devices_seed_003_names(path, devices, tmp_path):
    plan, _ = plan_for(path, tmp_path)
    assert [plan.argv[i + 1] for i, a in enumerate(plan.argv) if a == "--device"] == devices


def test_a_stand_in_node_appears_as_a_render_node_and_capdrop_drops_all(tmp_path):
    plan, _ = plan_for("podman-dri-capdrop", tmp_path, nodes=("/dev/null",))
    assert "/dev/null:/dev/dri/renderD128" in plan.argv
    assert plan.argv[plan.argv.index("--cap-drop") + 1] == "ALL"


def test_kms_adds_the_card_of_the_same_gpu_only_where_there_is_one():
    # no sysfs device: no card
    assert dri_devices("kms", "/dev/null") == ["/dev/null:/dev/dri/renderD128"]


@pytest.mark.parametrize("bad", ["/a:b", "/a,b"])
def test_values_podman_would_split_are_refused(bad):
    with pytest.raises(ContainerError):
        volume(bad, "/x")
    with pytest.raises(ContainerError):
        overlay_root(bad)


def test_a_relative_bind_source_is_made_absolute(tmp_path, monkeypatch):
    # podman reads a source without a leading '/' as the name of a volume to create.
    monkeypatch.chdir(tmp_path)
    assert volume("out/probe", "/x", "ro") == f"{tmp_path}/out/probe:/x:ro"


def image(tmp_path: Path, name="image.tar.gz", **fields) -> str:
    """A real (tiny) docker-archive, as `gpu-harness runtimes image` writes one."""
    root = tmp_path / "tree"
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/python3").write_text("")
    out = tmp_path / name
    imagearchive.write(root, out, imagearchive.ImageSpec(tag="localhost/t:1", architecture="amd64",
                                                         **fields))
    return str(out)


def test_an_image_runs_by_id_with_its_python_as_the_entrypoint(tmp_path):
    archive = image(tmp_path, cmd=("/usr/bin/python3.13", "-u"))
    plan, names = plan_for("podman-vtest", tmp_path, runtime={"kind": "image", "archive": archive})
    argv, image_id = plan.argv, imagearchive.read(archive).id
    assert "--rootfs" not in argv
    at = argv.index(image_id)
    assert argv[at - 2:at] == ["--entrypoint", '["/usr/bin/python3.13"]']
    assert argv[at + 1:at + 4] == ["/run/gpu-harness/gles.py", "--out", "/run/gpu-harness/out"]
    assert (argv[argv.index("--root") + 1] == f"{names.state}/root"
            and argv[argv.index("--pull") + 1] == "never")
    # the probe is the image's command, after the id
    assert "/run/gpu-harness/gles.py" not in argv[:at]


@pytest.mark.parametrize("entrypoint, cmd, python", [
    ((), ("/nix/store/x-python3-3.12.8/bin/python3", "/probe/gles.py"),
     "/nix/store/x-python3-3.12.8/bin/python3"),
    (("/usr/bin/python3",), ("/app.py",), "/usr/bin/python3"),
    (("/bin/sh", "-c"), ("/usr/bin/python3",), "/usr/bin/python3"),
    (("/docker-entrypoint.sh",), ("nginx",), "python3"),
    ((), (), "python3"),
])
def test_the_images_python(entrypoint, cmd, python):
    assert container.image_python(ImageInfo("0" * 64, "docker-archive", "none", entrypoint,
                                            cmd)) == python


def test_the_images_env_stays_unless_the_path_or_the_matrix_sets_it(tmp_path):
    archive = image(tmp_path, env=("PATH=/opt/bin:/usr/bin", "HOME=/home/app",
                                   "LIBGL_DRIVERS_PATH=/x"))
    plan, _ = plan_for("podman-vtest", tmp_path, runtime={"kind": "image", "archive": archive},
                       env={"HOME": "/scratch"})
    env = [plan.argv[i + 1] for i, a in enumerate(plan.argv) if a == "--env"]
    # the image's own
    assert not any(item.startswith(("PATH=", "LIBGL_DRIVERS_PATH=")) for item in env)
    assert "HOME=/scratch" in env and "GALLIUM_DRIVER=virpipe" in env  # the matrix's, the path's
    assert "VTEST_SOCKET_NAME=/tmp/.virgl_test" in env


def test_a_tree_keeps_the_harness_defaults(tmp_path):
    plan, _ = plan_for("podman-vtest", tmp_path)
    assert "PATH=/usr/bin:/bin" in plan.argv and "--entrypoint" not in plan.argv


def test_podman_dri_over_an_image_passes_the_node(tmp_path):
    plan, _ = plan_for("podman-dri", tmp_path, nodes=("/dev/null",),
                       runtime={"kind": "image", "archive": image(tmp_path)})
    assert ([plan.argv[i + 1] for i, a in enumerate(plan.argv)
             if a == "--device"] == ["/dev/null:/dev/dri/renderD128"])
    # no Cmd: python3 on its PATH
    assert plan.argv[plan.argv.index("--entrypoint") + 1] == '["python3"]'


def test_a_command_is_its_own_entrypoint_whatever_it_looks_like(tmp_path):
    archive = image(tmp_path)
    (tmp_path / "root").mkdir(exist_ok=True)
    (scenario,) = matrix.expand({"matrix": {"paths": ["podman-vtest"], "runtimes": ["r"]},
                                 "runtimes": {"r": {"kind": "image", "archive": archive}}},
                                "t").scenarios
    toolset = Toolset("test", TOOLS, [])
    ctx = LaunchContext(scenario, toolset, Workspace(tmp_path / "result",
                                                     tmp_path / "gh-run" / "1"),
                        Workload(command=["--privileged", "-c", "x"]))
    argv = registry.of(scenario.spec).plan(ctx).argv
    assert argv[argv.index("--entrypoint") + 1] == json.dumps(["--privileged"])
    assert argv[-3:] == [imagearchive.read(archive).id, "-c", "x"]
    assert "--privileged" not in argv


def test_the_load_is_argv_lists_with_no_shell():
    archive = "/srv/odd --root /etc,x.tar.gz"
    gz = container.load_argvs("/usr/bin/podman", "/tmp/gh-podman-s", archive, "gzip")
    assert gz[0] == ["gzip", "--decompress", "--stdout", "--", archive]
    assert gz[1][:4] == [sys.executable, str(container.PRIVATENS), "/tmp/gh-podman-s", "--"]
    assert gz[1][4:] == container.podman_state("/usr/bin/podman", "/tmp/gh-podman-s") + ["load"]
    (plain,) = container.load_argvs("/usr/bin/podman", "/tmp/gh-podman-s", archive, "none")
    # the value is one argument
    assert plain[-1] == f"--input={archive}" and plain.count("--root") == 1
    assert not any(arg in ("sh", "/bin/sh", "bash", "-c", "|") for argv in gz + [plain]
                   for arg in argv)


def test_the_pipeline_passes_data_and_says_why_it_failed(tmp_path):
    log = tmp_path / "log"
    with open(log, "wb") as handle:
        assert container.pipeline([["printf", "abc"], ["tr", "a-c", "x-z"]], handle, 10) is None
    assert log.read_bytes() == b"xyz"
    with open(log, "wb") as handle:
        assert container.pipeline([["printf", "abc"], ["sh", "-c",
                                                       "cat >/dev/null; echo no >&2; exit 3"]],
                                  handle, 10) == "exit code 3"
    assert log.read_text() == "no\n"
    with open(log, "wb") as handle:
        assert container.pipeline([["sh", "-c", "printf x; exit 1"], ["cat"]], handle,
                                  10) == "sh exit code 1"
    with open(log, "wb") as handle:
        assert container.pipeline([["sleep", "30"]], handle, 0.3) == "did not finish within 0.3 s"
    with open(log, "wb") as handle:
        assert container.pipeline([["printf", "x"], ["/nonexistent/podman"]], handle,
                                  10).startswith(
            "cannot start /nonexistent/podman")


def test_podmans_words_for_the_archives_format(tmp_path):
    log = tmp_path / "podman-load.log"
    log.write_text("Getting image source signatures\n"
                   "Error: payload does not match any of the supported image formats:\n"
                   " * oci-archive: loading index: open /var/tmp/oci1/index.json: no such file or "
                   "directory\n"
                   " * docker-archive: writing blob: Digest did not match\n"
                   " * dir: open /x/manifest.json: not a directory\n")
    assert container.said(str(log), "docker-archive") == \
        "Error: payload does not match any of the supported image formats: * docker-archive: " \
        "writing blob: Digest did not match"
