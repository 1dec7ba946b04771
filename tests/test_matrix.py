import pytest

from harness.scenario import model
from harness import matrix
from harness.core.errors import InputError


def problems(declaration):
    with pytest.raises(InputError) as err:
        matrix.expand(declaration, "m.toml")
    return err.value.problems


def test_default_matrix_expands():
    ids = [s.id for s in matrix.load().scenarios]
    assert ids == [
        "native/host/gl", "native/host/vulkan", "software/host/gl", "software/host/vulkan",
                   "sandbox-dri/host/gl",
        "sandbox-dri/host/vulkan", "sandbox-dri/trixie/gl", "sandbox-dri/trixie/gl@virgl-guest",
                   "sandbox-dri/trixie/gl+wayland@virgl-guest", "sandbox-dri/trixie/vulkan",
        "sandbox-hostlibs/host/gl", "sandbox-hostlibs/host/vulkan", "sandbox-hostdeps/host/gl",
        "sandbox-hostdeps/host/vulkan", "sandbox-hostdeps-glibc/host/gl",
                   "sandbox-hostdeps-glibc/host/vulkan",
        "sandbox-capsule/host/gl", "sandbox-capsule/host/vulkan", "vtest-virgl/host/gl",
                   "vtest-virgl/trixie/gl", "vtest-virgl/trixie/gl+wayland",
        "podman-vtest/trixie/gl",
        "podman-dri/trixie/gl", "podman-dri/trixie/gl@virgl-guest", "podman-dri/trixie/vulkan",
        "flatpak-vtest/host/gl", "flatpak-vtest/trixie/gl", "flatpak-vtest/trixie/gl+wayland",
        "flatpak-dri/host/gl", "flatpak-dri/host/vulkan", "flatpak-dri/trixie/gl",
                   "flatpak-dri/trixie/gl@virgl-guest",
        "flatpak-dri/trixie/vulkan",
        "vm-headless/host/gl", "vm-headless/host/vulkan", "vm-headless/trixie/gl",
                   "vm-headless/trixie/vulkan",
        "vm-virtio-2d/host/gl", "vm-virtio-2d/host/vulkan", "vm-virtio-2d/trixie/gl",
                   "vm-virtio-2d/trixie/vulkan",
        "vm-virgl/host/gl", "vm-virgl/trixie/gl", "vm-vfio-nested/host/vfio"]


def test_cross_product_excludes_and_overrides():
    m = matrix.expand({
        "matrix": {"paths": ["software", "vtest-virgl", "sandbox-dri"], "runtimes": ["host", "deb"],
                   "exclude": [{"path": "sandbox-dri", "runtime": "deb"}]},
        "runtimes": {"deb": {"kind": "rootfs", "root": "/usr"}},
        "defaults": {"timeout_s": 5, "tolerance": {"channel": 4}},
        "override": [{"match": "vtest-*", "expect": "fail", "reason": "old Mesa",
                      "tolerance": {"fraction": 0.5}}],
    }, "m.toml")
    by_id = {s.id: s for s in m.scenarios}
    # host-family paths pair with the host runtime only; the exclude drops sandbox-dri/deb.
    assert sorted(by_id) == ["sandbox-dri/host/gl", "software/host/gl", "vtest-virgl/deb/gl",
                             "vtest-virgl/host/gl"]
    vtest = by_id["vtest-virgl/deb/gl"]
    assert vtest.expect == model.Expectation("fail", "old Mesa")
    assert vtest.tolerance == model.Tolerance(channel=4, fraction=0.5)
    assert vtest.timeout_s == 5 and vtest.runtime.root == "/usr"
    assert by_id["software/host/gl"].expect.outcome == "pass"


@pytest.mark.parametrize("declaration, expected", [
    ({"matrix": {"paths": ["software"]}, "colour": 1}, "m.toml: colour: unknown key"),
    ({"matrix": {"paths": ["software"], "path": []}}, "m.toml: matrix.path: unknown key"),
    ({"matrix": {"paths": ["warp-drive"]}}, "m.toml: matrix.paths[0]: unknown path 'warp-drive'"),
    ({"matrix": {"paths": "software"}},
     "m.toml: matrix.paths: must be a list of strings, not string"),
    ({"matrix": {"paths": [3]}}, "m.toml: matrix.paths[0]: must be a string, not integer"),
    ({"matrix": {"paths": ["software"]}, "defaults": {"timeout_s": "fast"}},
     "m.toml: defaults.timeout_s: must be a number, not string"),
    ({"matrix": {"paths": ["software"]}, "defaults": {"timeout_s": -1}},
     "m.toml: defaults.timeout_s: must be positive"),
    ({"matrix": {"paths": ["software"]}, "defaults": {"timeout_s": True}},
     "must be a number, not boolean"),
    ({"matrix": {"paths": []}}, "m.toml: matrix: expands to no scenarios"),
    ({"matrix": {"paths": ["software"], "exclude": [{"path": "*"}]}}, "expands to no scenarios"),
    ({"matrix": {"paths": ["software", "software"]}},
     "m.toml: matrix: duplicate scenario id 'software/host/gl'"),
    ({"matrix": {"paths": ["software"], "runtimes": ["nope"]}},
     "m.toml: matrix.runtimes[0]: unknown runtime 'nope'"),
    ({"matrix": {"paths": ["software"], "probes": ["vk9"]}},
     "m.toml: matrix.probes[0]: unknown probe 'vk9'"),
    ({"matrix": {"paths": ["software"]}, "override": [{"match": "*", "expect": "fail"}]},
     "m.toml: override[0].reason: an expected failure needs a reason"),
    ({"matrix": {"paths": ["software"]}, "override": [{"match": "nothing/*", "timeout_s": 1}]},
     "m.toml: override[0].match: 'nothing/*' matches no scenario"),
    ({"matrix": {"paths": ["software"]}, "override": [{"timeout_s": 1}]},
     "m.toml: override[0].match: is required"),
    ({"matrix": {"paths": ["software"]}, "defaults": {"tolerance": {"channel": 300}}},
     "m.toml: defaults.tolerance.channel: must be within 0..255"),
    ({"matrix": {"paths": ["software"]}, "runtimes": {"r": {"kind": "vm-image"}}},
     "m.toml: runtimes.r.kind: unknown runtime kind 'vm-image'"),
    ({"matrix": {"paths": ["software"]}, "runtimes": {"r": {"root": "relative/dir"}}},
     "m.toml: runtimes.r.root: must be an absolute path"),
    ({}, "m.toml: matrix: is required"),
    ([], "m.toml: (top): must be a table"),
])
def test_bad_input_is_one_line_per_problem(declaration, expected):
    found = problems(declaration)
    assert any(expected in line for line in found), found
    assert all("\n" not in line for line in found)


def test_every_problem_is_reported_at_once():
    found = problems({"matrix": {"paths": ["nope", "software"], "probes": ["x"]}, "extra": 1})
    assert len(found) == 3


def test_read_declaration_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matrix\npaths = 1")
    with pytest.raises(InputError, match="not valid TOML"):
        matrix.load(bad)
    with pytest.raises(InputError, match="no such file"):
        matrix.load(tmp_path / "missing.toml")
    other = tmp_path / "m.yaml"
    other.write_text("x")
    with pytest.raises(InputError, match="unknown matrix format"):
        matrix.load(other)


def test_json_form_expands_like_toml(tmp_path):
    import json
    toml_file = tmp_path / "m.toml"
    toml_file.write_text('[matrix]\npaths = ["software", "vtest-virgl"]\n[defaults]\ntimeout_s = '
                         '9\n')
    json_file = tmp_path / "m.json"
    json_file.write_text(json.dumps({"matrix": {"paths": ["software", "vtest-virgl"]},
                                     "defaults": {"timeout_s": 9}}))
    assert matrix.load(toml_file).scenarios == matrix.load(json_file).scenarios


def test_select_by_path_and_glob():
    m = matrix.load()
    assert [s.id for s in m.select(["vtest-virgl"])] == ["vtest-virgl/host/gl",
                                                         "vtest-virgl/trixie/gl",
                                                         "vtest-virgl/trixie/gl+wayland"]
    assert [s.id for s in m.select(None, "*-*/host/gl")] == [
        "sandbox-dri/host/gl", "sandbox-hostlibs/host/gl", "sandbox-hostdeps/host/gl",
                                                             "sandbox-hostdeps-glibc/host/gl",
        "sandbox-capsule/host/gl", "vtest-virgl/host/gl", "flatpak-vtest/host/gl",
                                                             "flatpak-dri/host/gl",
        "vm-headless/host/gl", "vm-virtio-2d/host/gl", "vm-virgl/host/gl"]


def test_a_shipped_runtime_is_usable_by_name_without_a_declaration():
    (scenario,) = matrix.expand({"matrix": {"paths": ["vtest-virgl"], "runtimes": ["trixie"],
                                            "probes": ["gl"]}},
                                "m").scenarios
    assert scenario.runtime == model.Runtime("trixie", model.RuntimeKind.DEBOOTSTRAP, "",
                                             "shipped runtime trixie",
                                             "trixie")


def test_errors_name_the_fix():
    """Each error says how to get there: the runtimes there are and how to declare one, the
    pairing rule that left nothing, the probes a path runs."""
    [unknown] = problems({"matrix": {"paths": ["vtest-virgl"], "runtimes": ["trixy"]}})
    assert unknown.startswith("m.toml: matrix.runtimes[0]: unknown runtime 'trixy' (did you mean "
                              "trixie")
    assert "declared: host; shipped: " in unknown
    assert "trixie" in unknown and '[runtimes.NAME] kind = "rootfs", root = "/path"' in unknown
    [pairing] = problems({"matrix": {"paths": ["software"], "runtimes": ["trixie"]}})
    assert pairing == ("m.toml: matrix: expands to no scenarios: software (host family) runs in "
                       "host runtimes only, "
                       "not trixie (debootstrap)")
    [probes] = problems({"matrix": {"paths": ["vtest-virgl"], "probes": ["vulkan"]}})
    assert probes == ("m.toml: matrix: expands to no scenarios: vtest-virgl runs the gl probe, not "
                      "vulkan")
    [empty] = problems({"matrix": {"paths": []}})
    assert empty == "m.toml: matrix: expands to no scenarios: matrix.paths is empty"
    [excluded] = problems({"matrix": {"paths": ["software"], "exclude": [{"path": "software"}]}})
    assert excluded == "m.toml: matrix: expands to no scenarios: matrix.exclude leaves nothing"


def test_a_path_the_matrix_lacks_points_to_the_shipped_matrix_that_has_it(capsys):
    from harness import cli

    assert cli.main(["list", "--paths", "vtest-venus"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "it has no vtest-venus scenario, the shipped " in line
    assert (line.endswith("--matrix harness/data/venus.toml")
            or line.endswith("/harness/data/venus.toml"))
