"""The podman command line of each container path, built without running podman: every piece
of state private, runc, both ulimits, no network, the devices seed 003 names, values that
podman would split refused."""
from pathlib import Path

import pytest

from harness import matrix
from harness.families.container import ContainerError, Names, dri_devices, overlay_root, volume
from harness.lifecycle import LaunchContext, Workload, Workspace
from harness.toolset import Tool, Toolset


def plan_for(path: str, tmp_path: Path, nodes=("/dev/dri/renderD128",)):
    (tmp_path / "root").mkdir(exist_ok=True)
    (scenario,) = matrix.expand({"matrix": {"paths": [path], "runtimes": ["r"], "probes": ["gl"]},
                                 "runtimes": {"r": {"kind": "rootfs", "root": str(tmp_path / "root")}}}, "t").scenarios
    toolset = Toolset("test", {"podman": Tool("podman", "/usr/bin/podman"), "runc": Tool("runc", "/usr/sbin/runc")},
                      list(nodes))
    workspace = Workspace(tmp_path / "result", tmp_path / "gh-run" / "1")
    ctx = LaunchContext(scenario, toolset, workspace, Workload(probe="gl"))
    return scenario.spec.family.plan(ctx), Names.of(workspace)


def test_all_state_is_private_and_the_container_has_no_network(tmp_path):
    plan, names = plan_for("podman-dri", tmp_path)
    argv = plan.argv
    for flag, part in (("--root", "root"), ("--runroot", "runroot"), ("--tmpdir", "tmp"),
                       ("--network-config-dir", "net")):
        assert argv[argv.index(flag) + 1] == f"{names.state}/{part}"
    assert len(f"{names.state}/runroot") <= 50, "podman refuses a longer runroot"
    assert argv[argv.index("--runtime") + 1] == "runc" and argv[argv.index("--events-backend") + 1] == "none"
    assert argv[argv.index("--network") + 1] == "none"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--ulimit"] == ["nofile=1024:4096", "nproc=4096:4096"]
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
    assert dri_devices("kms", "/dev/null") == ["/dev/null:/dev/dri/renderD128"]  # no sysfs device: no card


@pytest.mark.parametrize("bad", ["/a:b", "/a,b"])
def test_values_podman_would_split_are_refused(bad):
    with pytest.raises(ContainerError):
        volume(bad, "/x")
    with pytest.raises(ContainerError):
        overlay_root(bad)
