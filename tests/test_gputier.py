"""The GPU tier's checks before anything runs: what the pack is for against the Python running
it, what it leaves to that Python, its wheels installed with the standard library only, and the
harness's dependencies split into packed and left (the real pack and run:
vmtests/test_gputier.py)."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.cli import gputier, gputier_pack

SYSTEM_PYTHON = Path("/usr/bin/python3")


def write_pack(folder: Path, pythons: dict, from_target: dict) -> Path:
    (folder / "wheels").mkdir(parents=True)
    (folder / "debs").mkdir()
    manifest = {"implementation": "cpython", "machine": "x86_64", "glibc": "2.17",
                "pythons": pythons,
                "from_target": from_target, "debs": [], "size_bytes": 0}
    (folder / "pack.json").write_text(json.dumps(manifest))
    return folder


def one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert (len(lines) == 1 and lines[0].startswith("gpu-tier: error: ")
            and "Traceback" not in text), text
    return lines[0]


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system Python at /usr/bin/python3")
def test_a_python_the_pack_has_no_wheels_for_is_one_line_from_a_bare_python(tmp_path):
    """The system's Python, none of the project's packages on its path: the check needs none of
    them."""
    folder = write_pack(tmp_path / "pack", {"3.99": []}, {})
    prefix, out = tmp_path / "prefix", tmp_path / "out"
    done = subprocess.run([str(gputier_pack.ROOT / "scripts" / "gpu-tier"), "run", "--pack",
                           str(folder), "--out", str(out),
                           "--prefix", str(prefix)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(SYSTEM_PYTHON),
                               "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    found = subprocess.run([str(SYSTEM_PYTHON), "-c",
                            "import platform; print(platform.python_version())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert "wheels for CPython 3.99 on x86_64" in line and f"this is cpython {found} " in line, line
    assert "--python " + ".".join(found.split(".")[:2]) in line
    assert not prefix.exists() and not out.exists()


def test_what_the_machines_python_lacks_is_named_before_anything_unpacks(tmp_path, capsys):
    folder = write_pack(tmp_path / "pack", {gputier.HERE: []}, {"numpy": "999.0", "Pillow": "9.0"})
    code = gputier.main(["run", "--pack", str(folder), "--out", str(tmp_path / "out"), "--prefix",
                         str(tmp_path / "p")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "lacks numpy>=999.0 (found " in line and "Pillow>=" not in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "p" / "root").exists()


def test_a_pack_that_names_no_python_is_one_line(tmp_path, capsys):
    folder = write_pack(tmp_path / "pack", {}, {})
    code = gputier.main(["run", "--pack", str(folder), "--out", str(tmp_path / "out"), "--prefix",
                         str(tmp_path / "p")])
    assert (code == 2
            and "run `scripts/gpu-tier pack` again" in one_error_line(capsys.readouterr().err))


def test_a_python_version_to_pack_for_is_checked_before_the_folder_is_touched(tmp_path, capsys):
    kept = tmp_path / "pack" / "kept"
    kept.parent.mkdir()
    kept.write_text("")
    assert gputier.main(["pack", "--pack", str(kept.parent), "--python", "three"]) == 2
    assert ("--python 'three': not a Python version" in one_error_line(capsys.readouterr().err)
            and kept.exists())


def test_wheels_install_with_the_standard_library_and_import(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/__init__.py", "from .extra import VALUE\n")
        archive.writestr("demo-1.0.data/purelib/demo/extra.py", "VALUE = 42\n")
        archive.writestr("demo-1.0.data/scripts/demo-tool", "#!/bin/sh\n")
        archive.writestr("demo-1.0.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    site = tmp_path / "site"
    gputier.install_wheels([wheel], site)
    done = subprocess.run([sys.executable, "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(site)!r}); "
                           "import demo; print(demo.VALUE)"], capture_output=True, text=True)
    assert done.stdout.strip() == "42", done.stderr
    assert gputier.versions_on(["demo", "absent-thing"], [str(site)]) == {"demo": "1.0",
                                                                          "absent-thing": None}
    assert not (site / "demo-tool").exists() and not (site / "demo-1.0.data").exists()


def test_a_wheel_member_outside_the_site_folder_is_refused(tmp_path):
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("evil-1.0.data/purelib/../../outside.py", "")
    with pytest.raises(gputier.InputError, match="leaves the site folder"):
        gputier.install_wheels([wheel], tmp_path / "site")
    assert not (tmp_path / "outside.py").exists()


def test_the_harness_dependencies_split_into_packed_and_left_to_the_machine():
    packed, left = gputier_pack.split_requirements(gputier_pack.dependencies())
    assert left == {"Pillow": "9.0", "numpy": "1.21"}
    names = {gputier.normalized(gputier_pack.REQUIREMENT.fullmatch(r).group(1)) for r in packed}
    assert {"jinja2", "rich", "qemu-qmp", "jsonschema", "pyyaml",
            "tomli"} <= names and not names & {"numpy", "pillow"}
    with pytest.raises(gputier.InputError, match="checks a least version"):
        gputier_pack.split_requirements(["numpy~=1.21"])


@pytest.mark.parametrize("wheel, glibc", [
    ("a-1-py3-none-any.whl", (0, 0)),
    ("b-1-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", (2,
                                                                                              17)),
    ("c-1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", (2, 27)),
    ("d-1-cp311-cp311-manylinux1_x86_64.whl", (2, 5)),
])
def test_the_oldest_glibc_a_wheel_runs_on(wheel, glibc):
    assert gputier_pack.glibc_of(wheel) == glibc


def test_version_release_numbers():
    assert gputier.release("2.4.6rc1") == (2, 4,
                                           6) and gputier.release("13.0.0") > gputier.release("9.0")
    assert gputier.lacking({"numpy": "1.21", "Pillow": ""}, {"numpy": "1.20.3",
                                                             "Pillow": None}) == [
        "numpy>=1.21 (found 1.20.3)", "Pillow (none found)"]
