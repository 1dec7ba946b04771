"""Image archives without podman: gzip told by magic bytes (not by name), the cheap check the
matrix makes (one line each), the facts read from a docker-archive the harness writes and from
an OCI archive with a compressed layer and a Nix store (id, Entrypoint/Cmd, Env, Mesa), and
the archive written from a tree: the same tree gives the same file."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import cli, matrix
from harness.runtimes import imagearchive, recipes, builds
from harness.core.errors import InputError
from harness.runtimes.imagearchive import ImageArchiveError

STATUS = """Package: libegl-mesa0
Status: install ok installed
Architecture: amd64
Version: 25.0.7-2

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.41-12

Package: python3
Status: deinstall ok config-files
Architecture: amd64
Version: 3.13.5-1
"""


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3").write_text("#!/bin/false\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "bin").symlink_to("usr/bin")
    return root


def spec(**fields) -> imagearchive.ImageSpec:
    return imagearchive.ImageSpec(**{"tag": "localhost/gpu-harness/t:1", "architecture": "amd64",
                                     "cmd": ("/usr/bin/python3",), **fields})


def written(tmp_path: Path, name: str = "image.tar.gz") -> Path:
    out = tmp_path / "out" / name
    imagearchive.write(tree(tmp_path) if not (tmp_path / "tree").exists() else tmp_path / "tree",
                       out, spec())
    return out


def test_gzip_is_told_by_magic_bytes_not_by_name(tmp_path):
    plain, packed = written(tmp_path, "really-plain.tar.gz"), tmp_path / "packed.tar"
    shutil.move(written(tmp_path, "image.tar"), plain)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert imagearchive.compression(str(plain)) == "none"
    assert imagearchive.compression(str(packed)) == "gzip"
    assert imagearchive.read(str(plain)).id == imagearchive.read(str(packed)).id


@pytest.mark.parametrize("content, message", [
    (b"\x00" * 1024, "is neither a tar archive nor gzip-compressed"),
    (gzip.compress(b"hello\n" * 200, mtime=0), "is a gzip file, but not of a tar archive"),
    (b"\x1f\x8b\x08\x00garbage", "cannot read it"),
], ids=["zeros", "gzip-of-text", "broken-gzip"])
def test_what_is_not_an_archive_is_said_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.tar"
    path.write_bytes(content)
    why = imagearchive.problem(str(path))
    assert why and message in why and "\n" not in why


def test_missing_relative_and_folder_are_not_archives(tmp_path):
    assert "does not exist" in imagearchive.problem(str(tmp_path / "gone.tar"))
    assert "must be an absolute path" in imagearchive.problem("image.tar")
    assert "is not a file" in imagearchive.problem(str(tmp_path))


def test_the_written_archive_says_what_it_is(tmp_path):
    info = imagearchive.read(str(written(tmp_path)))
    assert (info.format, info.compression, info.architecture) == ("docker-archive", "gzip", "amd64")
    assert info.cmd == ("/usr/bin/python3",) and info.entrypoint == ()
    assert dict(info.env)["PATH"].endswith("/usr/bin:/sbin:/bin")
    assert info.tags == ("localhost/gpu-harness/t:1",)
    # only installed packages; versions as runtimes read them
    assert recipes.component_versions(info.packages) == {"mesa": "25.0.7", "libc": "2.41",
                                                         "python": None}


def test_the_id_is_the_config_digest_and_the_same_tree_gives_the_same_file(tmp_path):
    first, second = written(tmp_path, "a.tar.gz"), written(tmp_path, "b.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        config = archive.extractfile(manifest[0]["Config"]).read()
        layer = archive.extractfile(manifest[0]["Layers"][0]).read()
    assert imagearchive.read(str(first)).id == hashlib.sha256(config).hexdigest()
    assert (json.loads(config)["rootfs"]["diff_ids"]
            == [f"sha256:{hashlib.sha256(layer).hexdigest()}"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        assert sorted(inner.getnames())[:3] == ["bin", "usr", "usr/bin"]  # no ./ prefix, sorted


def add(archive: tarfile.TarFile, name: str, data: bytes) -> str:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
    return name


def blob(archive: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    add(archive, f"blobs/sha256/{digest}", data)
    return f"sha256:{digest}"


def layer(files: dict, compressed: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            add(archive, name, data)
    return gzip.compress(out.getvalue()) if compressed else out.getvalue()


NIX_PYTHON = "/nix/store/" + "b" * 32 + "-python3-3.12.8/bin/python3"


def oci_archive(tmp_path: Path, layers, config_settings) -> Path:
    path = tmp_path / "oci.tar"
    with tarfile.open(path, "w") as archive:
        layer_digests = [blob(archive, data) for data in layers]
        config = blob(archive, json.dumps({"architecture": "amd64", "os": "linux",
                                           "config": config_settings}).encode())
        manifest = blob(archive, json.dumps({"schemaVersion": 2, "config": {"digest": config},
                                             "layers": [{"digest": d}
                                                        for d in layer_digests]}).encode())
        add(archive, "index.json", json.dumps({"schemaVersion": 2,
                                               "manifests": [{"digest": manifest}]}).encode())
        add(archive, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    return path


def test_an_oci_archive_of_a_nix_image(tmp_path):
    """As dockerTools lays Mesa out: store entries, the python named by Cmd, a compressed layer."""
    mesa = "nix/store/" + "a" * 32 + "-mesa-25.1.4-drivers/lib/dri/swrast_dri.so"
    glibc = "nix/store/" + "c" * 32 + "-glibc-2.40-66/lib/libc.so.6"
    layers = [layer({mesa: b"", glibc: b""}, compressed=True), layer({NIX_PYTHON.lstrip("/"): b""})]
    path = oci_archive(tmp_path, layers, {"Cmd": [NIX_PYTHON, "/probe/gles.py"],
                                          "Env": ["LIBGL_DRIVERS_PATH=/x"]})
    info = imagearchive.read(str(path))
    assert info.format == "oci-archive" and info.cmd[0] == NIX_PYTHON
    assert recipes.component_versions(info.packages) == {"mesa": "25.1.4", "libc": "2.40",
                                                         "python": "3.12.8"}
    assert info.env == (("LIBGL_DRIVERS_PATH", "/x"),)


def test_a_later_layer_deletes_or_replaces_dpkgs_status(tmp_path):
    first = layer({"var/lib/dpkg/status": STATUS.encode()})
    deleted = oci_archive(tmp_path, [first, layer({"var/lib/dpkg/.wh.status": b""})], {})
    assert imagearchive.read(str(deleted)).packages == {}
    newer = STATUS.replace("25.0.7-2", "26.0.1-1").encode()
    (tmp_path / "two").mkdir()
    replaced = oci_archive(tmp_path / "two", [first, layer({"./var/lib/dpkg/status": newer})], {})
    assert recipes.component_versions(imagearchive.read(str(replaced)).packages)["mesa"] == "26.0.1"


@pytest.mark.parametrize("members, message", [
    ({"a.txt": b"x"}, "is a tar archive but not an image: no manifest.json"),
    ({"manifest.json": b"[]"}, "manifest.json lists no image"),
    ({"manifest.json": b"{"}, "manifest.json is not JSON"),
    ({"manifest.json": json.dumps([{"Config": "c.json", "Layers": []}]).encode()},
     "names c.json, which it does not hold"),
    ({"index.json": json.dumps({"manifests": [{"digest": "md5:1"}]}).encode()},
     "bad digest 'md5:1'"),
])
def test_a_tar_that_is_no_image_is_one_line(tmp_path, members, message):
    path = tmp_path / "x.tar"
    path.write_bytes(layer(members))
    with pytest.raises(ImageArchiveError) as err:
        imagearchive.read(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_archive_is_unreadable(tmp_path):
    whole = written(tmp_path)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    with pytest.raises(ImageArchiveError, match="not a readable tar archive"):
        imagearchive.read(str(cut))


def image_matrix(runtime: dict, paths=("podman-vtest",)) -> dict:
    return {"matrix": {"paths": list(paths), "runtimes": ["img"], "probes": ["gl"]},
            "runtimes": {"img": runtime}}


@pytest.mark.parametrize("runtime, message", [
    ({"kind": "image"}, "runtimes.img: an image runtime needs exactly one of archive"),
    ({"kind": "image", "archive": "/x.tar", "recipe": "trixie"}, "needs exactly one of archive"),
    ({"kind": "image", "root": "/"}, "runtimes.img.root: an image runtime has no root"),
    ({"kind": "image", "archive": "/nonexistent/x.tar"},
     "runtimes.img.archive: /nonexistent/x.tar does not exist"),
    ({"kind": "image", "archive": 3}, "runtimes.img.archive: must be a string"),
    ({"kind": "image", "recipe": "nope"}, "runtimes.img.recipe: no shipped recipe 'nope'"),
    ({"kind": "rootfs", "root": "/", "archive": "/x.tar"},
     "runtimes.img.archive: only an image runtime"),
])
def test_a_bad_image_runtime_is_one_matrix_line(runtime, message):
    with pytest.raises(InputError) as err:
        matrix.expand(image_matrix(runtime), "m.toml")
    assert any(message in line for line in err.value.problems), err.value.problems


def test_an_image_runs_only_where_a_family_takes_images(tmp_path):
    declared = image_matrix({"kind": "image", "archive": str(written(tmp_path))},
                            ("podman-vtest", "vtest-virgl", "sandbox-dri", "flatpak-vtest",
                             "vm-headless"))
    scenarios = matrix.expand(declared, "m.toml").scenarios
    assert [s.id for s in scenarios] == ["podman-vtest/img/gl"]
    assert scenarios[0].runtime.root == str(tmp_path / "out/image.tar.gz")


def test_an_image_from_a_recipe_is_cached_by_its_lock():
    (scenario,) = matrix.expand(image_matrix({"kind": "image", "recipe": "trixie"}),
                                "m.toml").scenarios
    assert scenario.runtime.recipe == "trixie"
    assert scenario.runtime.root == str(builds.image_archive_path("trixie"))
    assert Path(scenario.runtime.root).parent == builds.IMAGES_DIR


def test_the_packages_of_an_image_runtime_are_read_from_its_archive(tmp_path):
    assert recipes.component_versions(builds.installed(written(tmp_path)))["mesa"] == "25.0.7"


def test_runtimes_image_of_an_unknown_runtime_is_one_line(tmp_path, capsys):
    assert cli.main(["runtimes", "image", "nope", "--out", str(tmp_path / "x.tar.gz")]) == 2
    assert "no recipe nope.toml" in capsys.readouterr().err and not (tmp_path / "x.tar.gz").exists()


# tar of a tree, its output held back once it has opened `big` (the pipe fills and tar waits in
# the middle of the file), then `big` hard-linked and unlinked (as a Flatpak export of the same
# runtime does: its ctime changes, its bytes do not), then the rest let through to our stdout.
RACED_TAR = r"""
import os, subprocess, sys
big, link, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
tar = subprocess.Popen(argv, stdout=subprocess.PIPE)
out = sys.stdout.buffer
def holds_big():
    for fd in os.listdir(f"/proc/{tar.pid}/fd"):
        try:
            if os.readlink(f"/proc/{tar.pid}/fd/{fd}") == big:
                return True
        except OSError:
            pass
    return False
while not holds_big():
    chunk = tar.stdout.read(4096)
    if not chunk:
        sys.exit("tar never opened " + big)
    out.write(chunk)
os.link(big, link)
os.unlink(link)
while True:
    chunk = tar.stdout.read(65536)
    if not chunk:
        break
    out.write(chunk)
sys.exit(tar.wait())
"""


def raced_tar(big: Path, argv: list) -> list:
    """The link outside the tree: a folder's own mtime, which tar records, stays as it was."""
    return [sys.executable, "-c", RACED_TAR, str(big), str(big.parents[3] / "export-link"), *argv]


def test_a_file_hard_linked_while_tar_reads_it_still_makes_the_image(tmp_path, monkeypatch):
    root = tree(tmp_path)
    big = root / "usr/lib/big.so"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(1 << 20) * 8)  # far more than a pipe holds: tar waits in its middle
    calm = imagearchive.write(root, tmp_path / "calm.tar", spec())
    said = tmp_path / "tar.log"
    with open(said, "w") as log:
        code = subprocess.run(raced_tar(big, imagearchive.layer_argv(root)),
                              stdout=subprocess.DEVNULL,
                              stderr=log).returncode
    assert (code == 1
            and said.read_text().endswith(": file changed as we read it\n")), said.read_text()
    assert imagearchive.only_inodes_changed(said)
    layer_argv = imagearchive.layer_argv
    monkeypatch.setattr(imagearchive, "layer_argv",
                        lambda tree_root: raced_tar(big, layer_argv(tree_root)))
    assert imagearchive.write(root, tmp_path / "raced.tar", spec()) == calm


def test_tar_failing_for_another_reason_is_no_changed_inode(tmp_path):
    root = tree(tmp_path)
    said = tmp_path / "tar.log"
    with open(said, "w") as log:
        code = subprocess.run(["tar", "--create", "--file=-", f"--directory={root}", "--", "gone"],
                              stdout=subprocess.DEVNULL, stderr=log).returncode
    assert code == 2 and "gone: Cannot stat" in said.read_text()
    assert not imagearchive.only_inodes_changed(said)
