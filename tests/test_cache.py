"""The cache's entries, their last use, which are stale, and pruning them: over a cache tree
made by the test (the real layout, small files), and the CLI over it in a subprocess."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.runtimes import cache, recipes, builds

NOW = 1_800_000_000.0
DAY = cache.DAY_S


def aged(path: Path, days: float) -> None:
    os.utime(path, (NOW - days * DAY, NOW - days * DAY))


def runtime(root: Path, digest: str, name: str, days: float) -> Path:
    entry = root / "runtimes" / digest
    (entry / "root" / "usr").mkdir(parents=True)
    (entry / "root" / "usr" / "file").write_bytes(b"x" * 10000)
    (entry / "facts.json").write_text(json.dumps({"runtime": name, "mesa": "25.0.7",
                                                  "packages": 128}))
    (entry / cache.STAMP).touch()
    aged(entry / cache.STAMP, days)
    return entry


def flatpak(root: Path, key: str, ref_id: str, days: float, source_root=None, layout=None) -> Path:
    entry = root / "flatpak" / key
    (entry / "repo").mkdir(parents=True)
    (entry / "repo" / "done").write_text(json.dumps({"id": ref_id}))
    (entry / "lock").touch()
    if source_root is not None:
        (entry / cache.SOURCE_FILE).write_text(json.dumps({"root": str(source_root),
                                                           "layout": layout}))
    (entry / cache.STAMP).touch()
    aged(entry / cache.STAMP, days)
    return entry


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "gpu-harness"
    live_root = runtime(root, "a" * 24, "trixie", 1)
    runtime(root, "b" * 24, "trixie", 40)  # an older lock's build
    (root / "runtimes" / ("c" * 24 + ".partial-x1")).mkdir()  # a killed build
    aged(root / "runtimes" / ("c" * 24 + ".partial-x1"), 3)
    (root / "images").mkdir()
    for name, days in ((f"trixie-{'a' * 24}-v1.tar.gz", 2), (f"trixie-{'b' * 24}-v1.tar.gz", 50)):
        (root / "images" / name).write_bytes(b"i" * 5000)
        aged(root / "images" / name, days)
    flatpak(root, "f1", "org.gpuharness.Runtime.trixie", 1, live_root / "root", None)
    flatpak(root, "f2", "org.gpuharness.Platform.GL.trixie", 1, live_root / "root", "oldlayout")
    flatpak(root, "f3", "org.gpuharness.Runtime.bookworm", 60, tmp_path / "gone", None)
    flatpak(root, "f4", "org.gpuharness.Runtime.sid", 90)  # made before sources were recorded
    (root / "initramfs").mkdir()
    (root / "initramfs" / "d1.cpio").write_bytes(b"c")
    aged(root / "initramfs" / "d1.cpio", 20)
    for kind in cache.KINDS:  # every entry so far as a run records what it makes
        for entry in cache.children(root / kind.folder):
            cache.record_made(entry, root)
    return root


DECOY = f"trixie-{'d' * 24}-v1.tar.gz"


def test_a_file_named_like_an_entry_that_no_run_made_is_never_removed(tree):
    """A user's file in the cache folder, named like an old and stale image, and one that took
    the name of an entry a run made: listed, never pruned."""
    (tree / "images" / DECOY).write_bytes(b"mine")
    aged(tree / "images" / DECOY, 400)
    old = tree / "images" / f"trixie-{'b' * 24}-v1.tar.gz"
    (tree / "mine").write_bytes(b"mine too")
    os.replace(tree / "mine", old)  # the name a run recorded, another file in it
    aged(old, 400)
    listed = {e.path.name: e for e in cache.entries(tree, CURRENT)}
    assert (listed[DECOY].made is False and listed[old.name].made is False
            and listed["d1.cpio"].made is True)
    done = cache.prune(1, stale=True, now=NOW, root=tree, current=CURRENT)
    assert (tree / "images" / DECOY).read_bytes() == b"mine" and old.read_bytes() == b"mine too"
    assert DECOY not in names(done.removed) and "d1.cpio" in names(done.removed)


CURRENT = cache.Current(frozenset({"a" * 24}), "v1", "newlayout")


def test_every_entry_is_listed_with_what_it_holds_its_size_and_last_use(tree):
    found = {e.path.name: e for e in cache.entries(tree, CURRENT)}
    assert {(str(e.kind), e.path.name) for e in found.values()} == {
        ("runtime", "a" * 24), ("runtime", "b" * 24), ("partial", "c" * 24 + ".partial-x1"),
        ("image", f"trixie-{'a' * 24}-v1.tar.gz"), ("image", f"trixie-{'b' * 24}-v1.tar.gz"),
        ("flatpak-repo", "f1"), ("flatpak-repo", "f2"), ("flatpak-repo", "f3"), ("flatpak-repo",
                                                                                 "f4"),
        ("initramfs", "d1.cpio")}
    live = found["a" * 24]
    assert live.name == "trixie (Mesa 25.0.7, 128 packages)" and live.size >= 10000
    assert (live.age_days(NOW) == pytest.approx(1)
            and found["d1.cpio"].age_days(NOW) == pytest.approx(20))
    assert found["f2"].name == "org.gpuharness.Platform.GL.trixie"


def test_stale_is_what_this_checkout_can_no_longer_use(tree):
    current = {e.path.name: e.current for e in cache.entries(tree, CURRENT)}
    assert current["a" * 24] is True and current["b" * 24] is False
    assert (current[f"trixie-{'a' * 24}-v1.tar.gz"] is True
            and current[f"trixie-{'b' * 24}-v1.tar.gz"] is False)
    assert current["f1"] is True  # a plain export: no layout in its key
    assert current["f2"] is False  # another GL split
    assert current["f3"] is False  # its runtime root is gone
    assert current["f4"] is None and current["d1.cpio"] is None  # cannot tell
    assert current["c" * 24 + ".partial-x1"] is False  # what a killed build left
    # Knowing nothing of the checkout, nothing is called stale.
    assert {e.current for e in cache.entries(tree) if e.kind is cache.Kind.RUNTIME} == {None}


def names(entries):
    return sorted(e.path.name for e in entries)


def test_prune_by_age_by_staleness_or_both(tree):
    by_age = cache.prune(30, now=NOW, root=tree, current=CURRENT, dry_run=True)
    assert names(by_age.removed) == ["b" * 24, "f3", "f4", f"trixie-{'b' * 24}-v1.tar.gz"]
    stale = cache.prune(stale=True, now=NOW, root=tree, current=CURRENT, dry_run=True)
    assert names(stale.removed) == ["b" * 24, "c" * 24 + ".partial-x1", "f2", "f3",
                                    f"trixie-{'b' * 24}-v1.tar.gz"]
    assert all(e.path.exists() for e in stale.removed)  # a dry run
    done = cache.prune(10, stale=True, now=NOW, root=tree, current=CURRENT)
    assert names(done.removed) == sorted(["b" * 24, "c" * 24 + ".partial-x1", "f2", "f3", "f4",
                                          f"trixie-{'b' * 24}-v1.tar.gz", "d1.cpio"])
    assert not any(e.path.exists() for e in done.removed) and all(e.path.exists()
                                                                  for e in done.kept)
    assert (tree / "runtimes" / ("a" * 24) / "root" / "usr" / "file").exists()
    assert not list(tree.rglob(f"*{cache.TRASH}*"))


def test_a_dry_run_says_what_the_run_does(tree):
    """Every entry is judged before any is removed: removing a runtime does not make its repos
    stale halfway through (they are judged on the next prune)."""
    dry = cache.prune(stale=True, now=NOW, root=tree, current=CURRENT, dry_run=True)
    real = cache.prune(stale=True, now=NOW, root=tree, current=CURRENT)
    assert names(dry.removed) == names(real.removed)


def test_nothing_is_pruned_while_a_run_holds_the_cache(tree):
    held = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                             "from harness.runtimes import cache; "
                             "cache.hold_shared(Path(sys.argv[1])); print('held', flush=True); "
                             "time.sleep(60)", str(tree)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        assert held.stdout.readline().strip() == "held"
        with pytest.raises(cache.CacheBusy, match="a gpu-harness run is using"):
            cache.prune(0, root=tree, current=CURRENT)
    finally:
        held.kill()
        held.wait()
    assert (tree / "runtimes" / ("a" * 24)).exists()
    # the run has ended
    assert names(cache.prune(0, root=tree, current=CURRENT, now=NOW).kept) == []


def test_a_removal_that_fails_keeps_no_entry_that_looks_whole(tree):
    """The entry is renamed first: what a failed removal leaves is a partial, never a runtime a
    run would take for a built one; the failure is said."""
    def half(entry):
        if entry.kind is cache.Kind.RUNTIME:
            trash = entry.path.rename(entry.path.with_name(entry.path.name + cache.TRASH + "1"))
            (trash / "facts.json").unlink()
            raise PermissionError(13, "Permission denied")
        cache.remove(entry)

    done = cache.prune(30, now=NOW, root=tree, current=CURRENT, remover=half)
    assert done.failed == [f"{tree / 'runtimes' / ('b' * 24)}: cannot remove: Permission denied"]
    assert not (tree / "runtimes" / ("b" * 24)).exists()
    left = {e.path.name: e for e in cache.entries(tree, CURRENT)}
    assert left["b" * 24 + cache.TRASH + "1"].kind is cache.Kind.PARTIAL


def test_an_image_entry_names_its_runtime(tmp_path):
    for name in ("trixie-host", "bookworm-i386", "sid"):
        assert cache.image_name(tmp_path / f"{name}-{'a' * 24}-v1.tar.gz") == name


def test_a_use_is_marked(tmp_path):
    folder, file = tmp_path / "entry", tmp_path / "image.tar.gz"
    folder.mkdir()
    file.write_bytes(b"x")
    aged(file, 5)
    before = time.time() - 1
    cache.mark_used(folder)
    cache.mark_used(file)
    assert cache.last_used(folder) >= before and cache.last_used(file) >= before
    cache.mark_used(tmp_path / "absent")  # a pruned entry: nothing to mark, no error


def test_the_shipped_recipes_are_current():
    shipped = builds.current()
    for name in recipes.recipe_names():
        recipe = recipes.load_recipe(name)
        assert recipes.digest(recipe, recipes.load_lock(recipe)) in shipped.runtime_digests
    assert shipped.image_format == builds.IMAGE_FORMAT and shipped.layout


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "harness.cli", "cache", *args],
                          capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)),
                          cwd=Path(__file__).parent.parent)


def test_the_cache_command(tree, tmp_path):
    listed = cli(tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["root"] == str(tree) and len(document["entries"]) == 10
    pruned = cli(tmp_path, "prune", "--stale", "--dry-run")
    assert pruned.returncode == 0, pruned.stderr
    # The fixture's runtime digests are not the shipped ones: both runtimes, both images, the
    # repos of another layout or of a root that is gone, and the killed build's partial.
    assert "would remove 7 entries" in pruned.stdout
    assert (tree / "runtimes" / ("b" * 24)).exists()
    for args, message in ((["prune"], "say what to remove"), (["prune", "--older-than", "-1"],
                                                              "from 0 to 36500"),
                          (["prune", "--older-than", "nan"], "from 0 to 36500")):
        bad = cli(tmp_path, *args)
        assert (bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
                and message in bad.stderr), bad.stderr


@pytest.mark.parametrize("configured", ["", "relative/cache", "."])
def test_a_cache_home_that_is_not_an_absolute_path_is_ignored(monkeypatch, configured):
    monkeypatch.setenv("XDG_CACHE_HOME", configured)
    assert cache.cache_root() == Path.home() / ".cache" / "gpu-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/cache")
    assert cache.cache_root() == Path("/srv/cache/gpu-harness")
