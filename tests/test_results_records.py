"""results.json read into typed records (harness.report.records) and every report made from them.

The fixture is a real run's folder as the version before the records wrote it (tests/files/reports/
host-run: native, software, sandbox-dri, sandbox-hostlibs and vtest-virgl on the host runtime, the
gl
probe and two command workloads, with a baseline: every outcome): read into records, it renders the
junit.xml and report.html that run wrote, its grid and answers are those it wrote, and `baseline
update` writes what it did; but for what was said or added since, each named here: the fps
reference path's words and fields, and a workload's own fps. Also: the display details live in the
report, not in the domain's Outcome; driver matching is typed and its JSON is what it was."""
import gzip
import json
import re
from pathlib import Path

import pytest

from harness import report
from harness.host import drivermatch
from harness.judging import baseline
from harness.report import answers, display, grid, records
from harness.scenario.outcomes import Outcome

FIXTURE = Path(__file__).parent / "files" / "reports" / "host-run"
# What report.html says differently since: the fps reference path named so (it was "baseline", a
# word the known-failures file keeps), and a declared workload's own fps in the grid.
SAID_SINCE = [
    ("fps as % of the run's baseline path\n(native)",
     "fps as % of the run's reference path\n(native; a declared workload's own fps where it "
     "reports one)"),
    ("the path&#39;s scenarios that ran)",
     "the path&#39;s scenarios that ran; a workload&#39;s own fps where it reports one)"),
    ("fps % of baseline, per API", "fps % of reference, per API"),
    (" same as baseline", " same as reference"),
]


def fixture(name: str) -> str:
    return gzip.decompress((FIXTURE / f"{name}.gz").read_bytes()).decode()


def said_since(text: str) -> str:
    for before, now in SAID_SINCE:
        text = text.replace(before, now).replace(before.replace("&#39;", "'"), now.replace("&#39;",
                                                                                           "'"))
    return text


# What report.html adds since: a scenario's subtests counted, the failing ones listed, the rest
# folded (issue 39's subtest table).
ADDED_SINCE = re.compile(r'<p>\d+ subtests: [^<]*</p>\n(?:<table class="subtests">.*?</table>'
                         r'(?:<p>and \d+ more failing[^<]*</p>)?)?\n?(?:<details><summary>the '
                         r'other \d+ \(pass, skip, warn\)</summary>.*?</details>)?\n?', re.DOTALL)


def without_added(text: str) -> str:
    return ADDED_SINCE.sub("", text)


def answer_since(answer: dict) -> dict:
    """An answer as the run wrote it, with what the cost answer says and records since."""
    added = {"cost": lambda record: {"fps_vs_reference": record["fps_vs_baseline"],
                                     "fps_same_as_reference": record["fps_same_as_baseline"],
                                     "workload_fps_vs_reference": {},
                                     "workload_fps_same_as_reference": {}}}
    found = json.loads(said_since(json.dumps(answer)))
    more = added.get(answer["key"])
    return {**found, "records": [{**record, **more(record)}
                                 for record in found["records"]]} if more else found


@pytest.fixture
def written(tmp_path) -> Path:
    (tmp_path / "results.json").write_text(fixture("results.json"))
    return tmp_path


def test_the_fixture_is_a_real_run_of_every_outcome(written):
    run = records.read_file(written)
    assert {s.outcome for s in run.scenarios} == set(Outcome) and len(run.scenarios) == 15
    assert {s.probe for s in run.scenarios} == {"gl", "mine",
                                                "bad"} and run.baseline == "/tmp/gh/known.toml"
    mine = next(s for s in run.scenarios if s.id == "software/host/mine")
    # written before it was read
    assert mine.subtests[0].figures == {"fps": 123.0} and mine.workload_fps is None


def test_a_run_written_before_the_records_renders_as_it_did(written):
    run = report.render_from_json(written)
    assert (written / "junit.xml").read_text() == fixture("junit.xml")
    assert without_added((written / "report.html").read_text()) == said_since(
        fixture("report.html"))
    document = json.loads(fixture("results.json"))
    cells_since = [{**grid_json, "cells": [{**cell, "fps_reference": cell["fps_baseline"],
                                            "fps_workload": False}
                                           for cell in grid_json["cells"]]}
                   for grid_json in document["grid"]]
    assert [g.to_json() for g in grid.build(list(run.scenarios))] == cells_since
    assert {a.key: a.to_json() for a in answers.build(run.scenarios)} == {
        key: answer_since(answer) for key, answer in document["answers"].items()}


def test_an_older_file_s_fps_baseline_fields_are_read_as_the_reference_share(written):
    document = json.loads(fixture("results.json"))
    for entry, scenario in zip(document["scenarios"], records.read_file(written).scenarios,
                               strict=True):
        assert "fps_vs_reference" not in entry
        assert (scenario.fps_share.share, scenario.fps_share.reference,
                scenario.fps_share.same) == (
            entry["fps_vs_baseline"], entry["fps_baseline"], entry["fps_same_as_baseline"] is True)
    shared = [s for s in records.read_file(written).scenarios if s.fps_share.share is not None]
    assert len(shared) == 12 and {s.fps_share.reference for s in shared} == {"native"}


def test_baseline_update_from_the_records_writes_what_it_did(written):
    done = baseline.update(records.read_file(written).scenarios, None, "known.toml")
    assert baseline.dumps(done.baseline) == (FIXTURE / "baseline-update.toml").read_text()
    assert [e.subtest for e in done.added] == ["sh", "sh", None, "sh"]


def test_a_written_entry_read_back_is_the_same_scenario():
    entry = json.loads(fixture("results.json"))["scenarios"][0]
    scenario = records.entry(entry)
    assert scenario.raw is entry and scenario == records.entry(json.loads(json.dumps(entry)))
    assert (scenario.id, scenario.path, scenario.runtime, scenario.probe, scenario.machine) == (
        "native/host/gl", "native", "host", "gl", "local")
    assert scenario.driver_match == drivermatch.DriverMatch.from_dict(entry["driver_match"])
    assert scenario.exposure is not None and scenario.exposure.to_dict() == entry["exposure"]


def test_an_entry_of_an_older_version_or_by_hand_reads_with_what_it_has():
    scenario = records.entry({"id": "vtest-virgl/trixie/gl@virgl-guest", "path": "vtest-virgl",
                              "outcome": "Nope",
                              "reason": 5, "checks": ["odd", {"name": "renderer", "ok": 1}],
                              "subtests": [
                                  {"name": "a", "outcome": "pass"}, {"name": "b",
                                                                     "outcome": "later"}, "c"],
                              "fps": "fast", "fps_spread": [3, 1],
                              "driver_match": {"used": "elsewhere"},
                              "exposure": {}, "isolation": {"host_paths_visible_list": "x"}})
    assert (scenario.runtime, scenario.probe, scenario.machine) == ("trixie", "gl", "virgl-guest")
    assert scenario.outcome is Outcome.FAIL and scenario.reason == "5"
    assert [(c.name, c.ok) for c in scenario.checks] == [("", False), ("renderer", True)]
    # an outcome this version does not know is left out
    assert [s.name for s in scenario.subtests] == ["a"]
    assert scenario.fps is None and scenario.fps_spread is None and scenario.exposure is None
    assert scenario.driver_match is not None and scenario.driver_match.used is None
    assert scenario.isolation is not None and scenario.isolation.host_paths_visible_list == ()
    assert scenario.isolation.host_paths_checked_list is None  # not listed: an older probe's


# --- display details live in the report
# -------------------------------------------------------------

def test_the_outcome_carries_no_css_class_and_the_report_has_one_for_each():
    assert not hasattr(Outcome.PASS, "css_class") and not hasattr(Outcome.PASS, "style")
    assert set(display.CSS_CLASSES) == set(display.STYLES) == set(Outcome)
    assert set(display.GRID_COLOURS) == set(display.CSS_CLASSES.values())
    assert display.classes_by_word()["ExpectedFail"] == "xfail"
    # the terminal's, from the report's display details
    assert display.style(Outcome.FAIL) == "bold red"


# --- driver matching, typed
# ----------------------------------------------------------------------------

def test_driver_matching_is_a_record_whose_json_is_as_it_was():
    match = drivermatch.driver_match("25.0.7", "mesa 22.3.6", {"name": "i915", "version": None},
                                     ["/usr/lib/x86_64-linux-gnu/libgallium-25.0.7.so"])
    assert json.dumps(match.to_dict()) == json.dumps({
        "runtime_mesa": "25.0.7", "host_driver": "mesa 22.3.6", "kernel_driver": "i915",
                                                      "kernel_driver_version": None,
        "used": "runtime", "mismatch": True, "note": "runtime Mesa 25.0.7, host Mesa 22.3.6"})
    assert drivermatch.DriverMatch.from_dict(json.loads(json.dumps(match.to_dict()))) == match
    assert (drivermatch.DriverMatch.from_dict({}) is None
            and drivermatch.DriverMatch.from_dict(None) is None)
