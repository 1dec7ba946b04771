"""`gpu-harness diff OLD NEW` on pairs of generated runs (tests/runs.py), each pair with one kind
of change: outcomes (regressions first), renderers, versions, images, fps beyond noise."""
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.scenario.outcomes import Outcome
from harness.report import diff
from tests import runs

BASE = runs.document(seed=1)


def pair(tmp_path: Path, new: dict, shades=None, old=None):
    old_dir = runs.write(tmp_path / "old", old or BASE)
    new_dir = runs.write(tmp_path / "new", new, shades)
    return old_dir, new_dir


def compared(tmp_path: Path, new: dict, shades=None, **options) -> diff.RunDiff:
    old_dir, new_dir = pair(tmp_path, new, shades)
    return diff.compare(diff.load(old_dir), diff.load(new_dir / "results.json"), **options)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                          capture_output=True, text=True,
                          timeout=120)


def test_the_same_run_twice_has_no_change(tmp_path):
    found = compared(tmp_path, BASE)
    assert found.compared == 150
    assert (found.outcomes, found.renderers, found.versions, found.images, found.fps) == ([], [],
                                                                                          [], [],
                                                                                          [])


@pytest.mark.parametrize("before, after, kind", [
    (Outcome.PASS, Outcome.FAIL, diff.Kind.REGRESSION),
    (Outcome.FLAKE, Outcome.FAIL, diff.Kind.REGRESSION),
    (Outcome.SKIP, Outcome.FAIL, diff.Kind.REGRESSION),
    (Outcome.PASS, Outcome.EXPECTED_FAIL, diff.Kind.REGRESSION),  # rendered, renders no more
    (Outcome.FAIL, Outcome.PASS, diff.Kind.FIXED),
    (Outcome.EXPECTED_FAIL, Outcome.UNEXPECTED_PASS, diff.Kind.FIXED),
    (Outcome.FAIL, Outcome.EXPECTED_FAIL, diff.Kind.CHANGED),
    (Outcome.PASS, Outcome.SKIP, diff.Kind.CHANGED),
    (Outcome.PASS, Outcome.FLAKE, diff.Kind.CHANGED),
])
def test_outcome_changes_are_classified(tmp_path, before, after, kind):
    scenario = runs.first(BASE, before)
    found = compared(tmp_path, runs.changed(BASE, scenario["id"], outcome=after.value,
                                            reason="now so"))
    [change] = found.outcomes
    assert (change.id, change.kind, change.old, change.new, change.reason) == (
        scenario["id"], kind, before.value, after.value, "now so")
    assert (kind is diff.Kind.REGRESSION) == bool(found.regressions)


def test_a_new_failure_class_is_a_change_not_a_regression(tmp_path):
    scenario = runs.first(BASE, Outcome.FAIL)
    other = "crash" if scenario["failure_kind"] != "crash" else "timeout"
    [change] = compared(tmp_path, runs.changed(BASE, scenario["id"], failure_kind=other)).outcomes
    assert (change.kind is diff.Kind.CHANGED
            and change.describe() == f"Fail ({scenario['failure_kind']}) -> Fail ({other})")


def test_added_and_removed_scenarios(tmp_path):
    gone, failing, passing = (BASE["scenarios"][0], dict(BASE["scenarios"][1]),
                              dict(BASE["scenarios"][2]))
    new = runs.changed(BASE, gone["id"], remove=True)
    failing.update(id="brand-new/host/gl", outcome="Fail", failure_kind="crash")
    passing.update(id="another/host/gl", outcome="Pass", failure_kind=None)
    new["scenarios"] += [failing, passing]
    found = compared(tmp_path, new)
    kinds = {c.id: c.kind for c in found.outcomes}
    assert kinds == {gone["id"]: diff.Kind.REMOVED, "brand-new/host/gl": diff.Kind.REGRESSION,
                     "another/host/gl": diff.Kind.ADDED}
    assert found.outcomes[0].id == "brand-new/host/gl"  # regressions first


def test_regressions_come_first(tmp_path):
    fixed, broken = runs.first(BASE, Outcome.FAIL), runs.first(BASE, Outcome.PASS)
    new = runs.changed(runs.changed(BASE, fixed["id"], outcome="Pass"), broken["id"],
                       outcome="Fail")
    found = compared(tmp_path, new)
    assert [c.kind for c in found.outcomes] == [diff.Kind.REGRESSION, diff.Kind.FIXED]


def test_renderer_changes(tmp_path):
    scenario = runs.first(BASE, Outcome.PASS)
    found = compared(tmp_path, runs.changed(BASE, scenario["id"], renderer="zink (Radeon RX 6600)"))
    [change] = found.renderers
    assert (change.old, change.new, change.scenarios) == (scenario["renderer"],
                                                          "zink (Radeon RX 6600)",
                                                          (scenario["id"],))
    assert found.outcomes == []


def test_version_changes_are_grouped(tmp_path):
    new = json.loads(json.dumps(BASE))
    bumped = []
    for scenario in new["scenarios"]:
        if scenario["versions"].get("virgl_test_server") == "0.10.4":
            scenario["versions"]["virgl_test_server"] = "1.3.0"
            bumped.append(scenario["id"])
    new["toolset"]["tools"]["virgl_test_server"]["version"] = "1.3.0"
    new["scenarios"][0]["driver_match"] = {**(new["scenarios"][0].get("driver_match") or {}),
                                           "runtime_mesa": "99.0"}
    found = compared(tmp_path, new)
    changes = {(c.name, c.old, c.new): c.scenarios for c in found.versions}
    assert changes[("virgl_test_server", "0.10.4", "1.3.0")] == tuple(bumped) and len(bumped) > 5
    assert changes[("toolset:virgl_test_server", "0.10.4", "1.3.0")] == ("toolset",)
    assert ("runtime Mesa", BASE["scenarios"][0]["driver_match"]["runtime_mesa"], "99.0") in changes


def test_image_changes_keep_both_images(tmp_path):
    scenario = runs.first(BASE, Outcome.PASS)
    found = compared(tmp_path, BASE, shades={scenario["id"]: 40})
    [change] = found.images
    assert change.id == scenario["id"] and change.differing_fraction == 1.0
    assert Path(change.old_image).is_file() and Path(change.new_image).is_file()
    assert change.old_image != change.new_image and "100.00% of pixels differ" in change.detail


def test_fps_changes_beyond_the_factor_only(tmp_path):
    rendered = [s for s in BASE["scenarios"] if s.get("fps")]
    slower, noisy, faster = rendered[0], rendered[1], rendered[2]
    new = runs.changed(BASE, slower["id"], fps=slower["fps"] / 20)
    new = runs.changed(new, noisy["id"], fps=noisy["fps"] * 7)  # within x10: the noise measured
    new = runs.changed(new, faster["id"], fps=faster["fps"] * 12)
    found = compared(tmp_path, new)
    assert [(c.id, round(c.change, 2)) for c in found.fps] == [(slower["id"], -0.95), (faster["id"],
                                                                                       11.0)]
    tighter = diff.compare(diff.load(tmp_path / "old"), diff.load(tmp_path / "new"), fps_factor=2)
    assert noisy["id"] in [c.id for c in tighter.fps]


def test_text_json_and_html(tmp_path):
    scenario, image_changed = runs.first(BASE, Outcome.PASS), runs.first(BASE, Outcome.FLAKE)
    new = runs.changed(BASE, scenario["id"], outcome="Fail", failure_kind="crash",
                       reason="probe crashed")
    old_dir, new_dir = pair(tmp_path, new, shades={image_changed["id"]: 90})
    found = diff.compare(diff.load(old_dir), diff.load(new_dir))
    text = diff.text(found)
    assert f"regression {scenario['id']}" in text and "Pass -> Fail (crash): probe crashed" in text
    assert f"images:\n  {image_changed['id']}: 100.00% of pixels differ" in text
    data = json.loads(json.dumps(found.to_json()))
    assert data["regressions"] == 1 and data["outcomes"][0]["kind"] == "regression"
    page_file = tmp_path / "out" / "diff.html"
    page_file.parent.mkdir()
    page = diff.html(found, page_file)
    sources = ImageSources()
    sources.feed(page)
    assert len(sources.found) == 2 and all((page_file.parent / src).resolve().is_file()
                                           for src in sources.found)
    assert 'class="regression"' in page and "probe crashed" in page


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.found.append(dict(attrs)["src"])


def test_cli_exit_codes(tmp_path):
    broken = runs.first(BASE, Outcome.PASS)
    old_dir, new_dir = pair(tmp_path, runs.changed(BASE, broken["id"], outcome="Fail"))
    same = run_cli("diff", old_dir, old_dir / "results.json")
    assert same.returncode == 0 and "0 regressions" in same.stdout, same.stderr
    worse = run_cli("diff", old_dir, new_dir, "--json", "--html", tmp_path / "d.html")
    assert worse.returncode == 1, worse.stderr
    assert json.loads(worse.stdout)["regressions"] == 1 and (tmp_path / "d.html").is_file()
    better = run_cli("diff", new_dir, old_dir)
    assert better.returncode == 0 and f"fixed      {broken['id']}" in better.stdout


@pytest.mark.parametrize("args, message", [
    (["/nonexistent", "/nonexistent2"], "/nonexistent: no such result folder or results.json"),
    (["{tmp}", "{tmp}"], "not a result folder (no results.json in it)"),
    (["{tmp}/bad.json", "{tmp}/bad.json"], "not a gpu-harness results file"),
    (["{tmp}/r", "{tmp}/r", "--fps-factor", "1"], "must be more than 1"),
    (["{tmp}/r", "{tmp}/r", "--html", "{tmp}/no/such/folder/d.html"], "--html"),
    (["{tmp}/r"], "the following arguments are required: new"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("[]")
    runs.write(tmp_path / "r", BASE)
    done = run_cli("diff", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert (len(lines) == 1 and lines[0].startswith("gpu-harness: error: ")
            and message in lines[0]), done.stderr


def test_fps_changes_by_the_spread_of_timed_rounds(tmp_path):
    """Both runs timed their rounds: a change counts only where the ranges stay apart when each is
    widened by its own width; --fps-factor still decides for every scenario when given."""
    rendered = [s for s in BASE["scenarios"] if s.get("fps")]
    apart_one, near_one = rendered[0], rendered[1]
    old = runs.changed(BASE, apart_one["id"], fps=100.0, fps_spread=[95.0, 105.0])
    old = runs.changed(old, near_one["id"], fps=100.0, fps_spread=[80.0, 120.0])
    # 58..62 vs 95..105: apart
    new = runs.changed(old, apart_one["id"], fps=60.0, fps_spread=[58.0, 62.0])
    # widened, 30..90 meets 40..160
    new = runs.changed(new, near_one["id"], fps=60.0, fps_spread=[50.0, 70.0])
    old_dir, new_dir = pair(tmp_path, new, old=old)
    found = diff.compare(diff.load(old_dir), diff.load(new_dir))
    by_spread = {c.id: c.rule for c in found.fps}
    assert by_spread.get(apart_one["id"]) == "spread" and near_one["id"] not in by_spread
    by_factor = diff.compare(diff.load(old_dir), diff.load(new_dir), fps_factor=1.5)
    assert {apart_one["id"], near_one["id"]} <= {c.id for c in by_factor.fps}
    assert "beyond both runs' spread" in diff.text(found)
