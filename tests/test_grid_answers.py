"""The grid and every answer section, from a generated results.json of 150 scenarios
(tests/runs.py), checked against the scenarios themselves; and where they appear: results.json,
report.html, junit.xml."""
import datetime
import json
import re
import statistics
import xml.etree.ElementTree as ET
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness import matrix, report
from harness.launch.lifecycle import LaunchResult
from harness.scenario.outcomes import FailureKind, Outcome
from harness.report import answers, display, document as report_document, grid, junit, records, text
from harness.judging.scenario_result import ScenarioResult
from harness.host.toolset import Toolset
from harness.judging.verdict import Verdict
from tests import runs

DOC = runs.document()
SCENARIOS = DOC["scenarios"]
ENTRIES = records.entries(SCENARIOS)  # as the reports read them
BY_ID = {s["id"]: s for s in SCENARIOS}


def answer(key: str) -> answers.Answer:
    return next(a for a in answers.build(ENTRIES) if a.key == key)


def by_path(scenarios):
    found = {}
    for scenario in scenarios:
        found.setdefault(scenario["path"], []).append(scenario)
    return found


def test_the_fixture_is_150_scenarios_of_every_outcome_over_the_path_table():
    assert len(SCENARIOS) == 150 and len(BY_ID) == 150
    assert {s["outcome"] for s in SCENARIOS} == {o.value for o in Outcome}
    assert len({s["path"] for s in SCENARIOS}) >= 25 and len({s["runtime"] for s in SCENARIOS}) == 6
    # seeded: the same run, or another
    assert runs.document() == DOC and runs.document(seed=17) != DOC


# --- the grid -----------------------------------------------------------------------------------

def test_one_grid_per_probe_with_every_scenario_in_its_cell():
    grids = grid.build(ENTRIES)
    assert [g.probe for g in grids] == ["gl", "vulkan"]
    placed = []
    for g in grids:
        for runtime in g.runtimes:
            for path in g.paths:
                cell = g.cell(runtime, path)
                if cell is None:
                    assert f"{path}/{runtime}/{g.probe}" not in BY_ID
                    continue
                scenario = BY_ID[cell.scenario]
                assert (scenario["path"], scenario["runtime"], scenario["probe"]) == (path, runtime,
                                                                                      g.probe)
                assert (cell.outcome == scenario["outcome"]
                        and cell.css == display.css_class(Outcome(scenario["outcome"])))
                placed.append(cell.scenario)
    assert sorted(placed) == sorted(BY_ID)


def test_grid_rows_and_columns_follow_the_run_order():
    gl = grid.build(ENTRIES)[0]
    first_seen = list(dict.fromkeys(s["runtime"] for s in SCENARIOS if s["probe"] == "gl"))
    assert gl.runtimes == first_seen
    assert gl.paths == list(dict.fromkeys(s["path"] for s in SCENARIOS if s["probe"] == "gl"))
    assert sum(gl.counts.values()) == sum(1 for s in SCENARIOS if s["probe"] == "gl")


def test_a_cell_says_renderer_fps_and_failure_class():
    cells = {c.scenario: c for g in grid.build(ENTRIES) for row in g.cells.values()
             for c in row.values()}
    assert sum(c.fps_pct is not None for c in cells.values()) > 30
    for scenario_id, cell in cells.items():
        scenario = BY_ID[scenario_id]
        outcome = Outcome(scenario["outcome"])
        if outcome in (Outcome.FAIL, Outcome.EXPECTED_FAIL):
            assert cell.failure == scenario["failure_kind"] and cell.label == cell.failure
            assert cell.subject == scenario["diagnosis"]["subject"]
        else:
            assert cell.failure is None
        if outcome.renders:
            assert (cell.renderer == grid.short_renderer(scenario["renderer"])
                    and cell.label == cell.renderer)
            # None where the probe's baseline path did not render
            share = scenario["fps_vs_baseline"]
            assert cell.fps_pct == (round(100 * share) if share is not None else None)
        if outcome is Outcome.SKIP:  # the cause in a few words; the whole reason on hover
            assert cell.label == cell.cause == text.short_cause(scenario["reason"]) != "skip"
            assert cell.fps_pct is None and cell.reason == scenario["reason"]
        match = scenario.get("driver_match") or {}
        assert cell.driver_mismatch == (match.get("note") if match.get("mismatch") else None)
    assert any(c.driver_mismatch for c in cells.values()) and not all(c.driver_mismatch
                                                                      for c in cells.values())


@pytest.mark.parametrize("renderer, short", [
    ("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe"),
    ("virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))", "virgl/llvmpipe"),
    ("Virtio-GPU Venus (llvmpipe (LLVM 15.0.6, 256 bits))", "Venus/llvmpipe"),
    ("virgl", "virgl"),
    ("AMD Radeon RX 6600 (radeonsi, navi23, LLVM 15.0.6, DRM 3.49, 6.1.0)", "Radeon RX 6600"),
    # cut between words, never in one
    ("Mesa Intel(R) UHD Graphics 620 (KBL GT2)", "Intel(R) UHD…"),
    ("zink (Intel(R) UHD Graphics)", "zink/Intel(R)…"),
    ("", None), ("((", "(("),
])
def test_short_renderer(renderer, short):
    assert grid.short_renderer(renderer) == short


def test_grid_of_an_old_results_file_without_runtime_and_probe_fields():
    old = [{"id": "vtest-virgl/trixie/gl", "path": "vtest-virgl", "outcome": "Pass",
            "reason": "ok"},
           {"id": "odd", "path": "x", "outcome": "Fail", "reason": "r", "renderer": 5,
            "fps_vs_baseline": "1"}]
    grids = grid.build(records.entries(old))
    assert grids[0].cell("trixie", "vtest-virgl").outcome == "Pass"
    assert grids[1].probe == "?" and grids[1].cell("?", "x").label == "failed"


# --- the answers --------------------------------------------------------------------------------

def test_vtest_compatibility_puts_every_vtest_scenario_in_one_cell():
    vtest = answer("vtest")
    through_server = [s for s in SCENARIOS if "virgl_test_server" in s["versions"]]
    assert through_server
    members = [i for r in vtest.records for i in r["rendered"] + [f["id"] for f in r["failed"]]]
    attempted = [s["id"] for s in through_server if s["outcome"] != Outcome.SKIP.value]
    assert sorted(members) == sorted(attempted)
    # The client's Mesa as the scenario recorded it; a scenario that recorded none (skipped before
    # its runtime was known) is in the row "unknown", last.
    clients = sorted({(s.get("driver_match") or {}).get("runtime_mesa")
                      or (s.get("runtime_facts") or {}).get("mesa")
                      or "unknown" for s in through_server}, key=lambda mesa: (mesa == "unknown",
                                                                               mesa))
    assert [row[0].text.split()[0] for row in vtest.rows] == clients
    columns = sorted({(s["versions"]["virgl_test_server"], s["probe"]) for s in through_server})
    assert vtest.columns[1:] == [f"virglrenderer {server} · {probe}" for server, probe in columns]
    for record in vtest.records:
        rendered, failed = record["rendered"], record["failed"]
        assert all(Outcome(BY_ID[i]["outcome"]).renders for i in rendered)
        assert all(f["failure"] == BY_ID[f["id"]]["failure_kind"] for f in failed)
        expected = ("not run" if not rendered and not failed else "renders" if not failed
                    else "fails" if not rendered else "partly")
        assert record["renders"] == expected


def test_vtest_cells_say_renders_or_why_not():
    vtest = answer("vtest")
    texts = [cell.text for row in vtest.rows for cell in row[1:]]
    assert any(t.startswith("renders (") for t in texts) and any("fails: " in t for t in texts)
    kinds = {str(kind) for kind in FailureKind}
    for row in vtest.rows:
        for cell in row[1:]:
            if cell.text.startswith("fails"):
                assert cell.css == display.css_class(Outcome.FAIL), cell.text
            if "fails: " in cell.text:
                said = cell.text.split("fails: ", 1)[1].split(", ")
                assert said and all(kind.split()[0] in kinds for kind in said), cell.text


def test_exposure_per_path_from_the_leak_audit():
    exposure = answer("exposure")
    audited = by_path(s for s in SCENARIOS if s.get("exposure"))
    assert [r["path"] for r in exposure.records] == list(audited)
    for record in exposure.records:
        group = audited[record["path"]]
        assert record["scenarios"] == len(group)
        assert record["whole_host"] == any(s["exposure"]["whole_host"] for s in group)
        assert record["host_paths"] == max(len(s["exposure"]["host_files"]) for s in group)
        counts = [s["exposure"]["host_file_count"] for s in group
                  if s["exposure"]["host_file_count"] is not None]
        assert record["host_files"] == counts
        assert set(record["shared_namespaces"]) == {n for s in group
                                                    for n in s["exposure"]["shared_namespaces"]}
        assert set(record["host_devices"]) == {d for s in group
                                               for d in s["exposure"]["host_devices"]}
    rows = {row[0].text: row for row in exposure.rows}
    assert (rows["native"][1].text == "whole host"
            and rows["vm-headless"][5].text == "none: a guest kernel")
    assert rows["podman-vtest"][5].text == "user, cgroup" and rows["podman-vtest"][4].text == "1"


def test_isolation_per_path_is_what_the_probe_measured():
    isolation = answer("isolation")
    measured = by_path(s for s in SCENARIOS if s.get("isolation"))
    assert [r["path"] for r in isolation.records] == list(measured)
    for record in isolation.records:
        group = measured[record["path"]]
        facts = [s["isolation"] for s in group]
        assert sorted(record["capabilities"]) == sorted({f["capabilities"] for f in facts})
        assert record["seccomp_mode"] == [facts[0]["seccomp_mode"]] and record["uid"] == [0]
        assert record["no_new_privs"] == [facts[0]["no_new_privs"]]
        assert set(record["dri_nodes"]) == {n for f in facts for n in f["dri_nodes"]}
        for scenario in group:
            own = answers.own_namespaces(records.entry(scenario))
            if scenario["exposure"]["separate_kernel"]:
                assert own == ["guest kernel"]
            else:
                assert (set(own) == set(scenario["isolation"]["namespaces"])
                        - set(scenario["exposure"]["shared_namespaces"]))
    rows = {row[0].text: row for row in isolation.rows}
    assert rows["podman-vtest"][2].text == "filter" and rows["sandbox-hostlibs"][2].text == "off"
    assert rows["podman-vtest-capdrop"][4].text == "0" and rows["native"][1].text == "none"
    assert rows["flatpak-vtest"][3].text == "yes" and rows["podman-vtest"][3].text == "no"


def test_cost_per_path_is_the_median_of_its_scenarios_that_ran():
    cost = answer("cost")
    ran = by_path(s for s in SCENARIOS if s["outcome"] != Outcome.SKIP.value)
    assert [r["path"] for r in cost.records] == list(ran)
    for record in cost.records:
        group = ran[record["path"]]
        phases = [s["phases_s"] for s in group]
        assert record["setup_s"] == pytest.approx(statistics.median(p["setup_s"] for p in phases),
                                                  abs=1e-4)
        start = [p["services_ready_s"] + p.get("qemu_start_s", 0) + p.get("boot_s", 0)
                 for p in phases]
        assert record["start_s"] == pytest.approx(statistics.median(start), abs=1e-4)
        memory = [sum(s["peak_rss_kb"].values()) / 1024 for s in group]
        assert record["memory_mb"] == pytest.approx(statistics.median(memory), abs=1e-3)
        for probe in ("gl", "vulkan"):
            shares = [s["fps_vs_baseline"] for s in group
                      if s.get("fps_vs_baseline") is not None and s["probe"] == probe]
            assert record["fps_vs_baseline"].get(probe) == (
                pytest.approx(statistics.median(shares), abs=1e-4) if shares else None)
    rows = {row[0].text: row for row in cost.rows}
    assert rows["native"][7].text.startswith("gl 100%")
    # a VM boots
    assert float(rows["vm-headless"][3].text) > 1.5 > float(rows["vtest-virgl"][3].text)


def test_driver_matching_per_runtime():
    driver = answer("driver")
    with_facts = [s for s in SCENARIOS if s.get("driver_match")]
    assert [r["runtime"] for r in driver.records] == list(dict.fromkeys(s["runtime"]
                                                                        for s in with_facts))
    for record in driver.records:
        group = [s for s in with_facts if s["runtime"] == record["runtime"]]
        assert record["runtime_mesa"] == [runs.RUNTIMES[record["runtime"]]]
        assert sorted(m["id"] for m in record["mismatches"]) == sorted(
            s["id"] for s in group if s["driver_match"]["mismatch"])
        assert set(record["host_driver_rendered"]) == {
            s["path"] for s in group if s["driver_match"]["used"] == "host-driver"}
    rows = {row[0].text: row for row in driver.rows}
    assert (rows["host"][5].text == "none"
            and rows["trixie"][5].css == display.css_class(Outcome.FAIL))
    assert "runtime Mesa 25.0.7, host Mesa 22.3.6" in rows["trixie"][5].text


def test_answers_say_why_they_are_empty():
    empty = answers.build(records.entries([{"id": "a/b/gl", "path": "a", "outcome": "Skip",
                                            "reason": "r"}]))
    assert all(a.note and not a.rows for a in empty)


# --- where they appear --------------------------------------------------------------------------

def scenario_result(tmp_path: Path, scenario, outcome: Outcome, kind=None) -> ScenarioResult:
    return ScenarioResult(scenario, Verdict(outcome, "reason", [], kind), LaunchResult(), None,
                          tmp_path / scenario.slug, 0.1)


def test_results_json_carries_the_grid_and_the_answers(tmp_path):
    scenarios = matrix.expand({"matrix": {"paths": ["software", "vtest-virgl"],
                                          "runtimes": ["host"],
                                          "probes": ["gl"]}}, "<test>").scenarios
    produced = [scenario_result(tmp_path, scenarios[0], Outcome.PASS),
                scenario_result(tmp_path, scenarios[1], Outcome.FAIL, FailureKind.CRASH)]
    document = report_document.document(produced, tmp_path, Toolset("discovery", {}, []),
                                datetime.datetime.now(datetime.timezone.utc), "<test>",
                                        "known.toml")
    assert document["baseline"] == "known.toml"
    assert document["grid"] == [g.to_json()
                                for g in grid.build(records.entries(document["scenarios"]))]
    [cells] = [g["cells"] for g in document["grid"]]
    assert [(c["path"], c["outcome"], c["failure"]) for c in cells] == [
        ("software", "Pass", None), ("vtest-virgl", "Fail", "crash")]
    assert sorted(document["answers"]) == ["cost", "driver", "exposure", "isolation", "security",
                                           "vtest"]
    assert all(set(a) >= {"title", "columns", "rows", "records"}
               for a in document["answers"].values())
    report.write_all(tmp_path, document)
    assert json.loads((tmp_path / "results.json").read_text())["grid"] == document["grid"]


class Page(HTMLParser):
    """What of report.html the tests look at: ids, grid links, details and their state."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.details, self.grids, self.open = set(), [], 0, 0, 0
        self.in_grid = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table" and attrs.get("class") == "grid":
            self.grids += 1
            self.in_grid = True
        if tag == "a" and self.in_grid:
            self.links.append(attrs["href"])
        if tag == "details":
            self.details += 1
            self.open += "open" in attrs

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_grid = False


def test_report_html_opens_on_the_grids_and_answers_and_collapses_the_details(tmp_path):
    runs.write(tmp_path, DOC)
    report.render_from_json(tmp_path)
    html = (tmp_path / "report.html").read_text()
    page = Page()
    page.feed(html)
    assert page.grids == 2 and len(page.links) == 150
    assert all(link.startswith("#") and link[1:] in page.ids for link in page.links)
    assert page.details >= 150 and page.open == 0
    assert {f"answer-{key}" for key in ("vtest", "exposure", "isolation", "cost",
                                        "driver")} <= page.ids
    assert (html.index('class="grid"') < html.index('id="answer-vtest"')
            < html.index('id="scenarios"'))
    for scenario in SCENARIOS[:10]:
        assert f"{scenario['result_dir']}/rerun.sh" in html
        if scenario.get("image"):
            assert f'src="{scenario["image"]}"' in html
    # Driver matching is next to the outcome: in each scenario's summary line, and flagged in the
    # grid.
    summaries = re.findall(r"<summary><b>(\w+)</b> <code>([^<]+)</code>(.*?)</summary>", html)
    by_id = {scenario_id: rest for _, scenario_id, rest in summaries}
    for scenario in SCENARIOS:
        match = scenario.get("driver_match") or {}
        rest = by_id[html_escape(scenario["id"])]
        if match.get("used"):
            assert ("mismatch" in rest) == bool(match.get("mismatch")), rest
            assert (match["runtime_mesa"] if match["used"] == "runtime"
                    else match["host_driver"]) in rest
    flagged = sum(bool((s.get("driver_match") or {}).get("mismatch")) for s in SCENARIOS)
    assert html.count('class="mismatch">&ne;drv') == flagged > 0


def test_junit_properties_per_test_case():
    suite = ET.fromstring(junit.render(records.parse(DOC)))
    cases = suite.findall("testcase")
    assert len(cases) == 150
    for case in cases:
        scenario = BY_ID[case.get("name")]
        properties = {p.get("name"): p.get("value") for p in case.find("properties")}
        assert (properties["runtime"] == scenario["runtime"]
                and properties["probe"] == scenario["probe"])
        assert properties["outcome"] == scenario["outcome"]
        assert properties.get("renderer") == scenario["renderer"]
        assert properties["version.runtime_gl"] == scenario["versions"]["runtime_gl"]
        assert (properties.get("version.virgl_test_server")
                == scenario["versions"].get("virgl_test_server"))
        # before failure/skipped/system-out, as the schema has it
        assert list(case)[0].tag == "properties"


def test_vtest_versions_sort_as_versions_not_as_text():
    def vtest(server, mesa, outcome="Pass"):
        return {"id": f"vtest-virgl/{mesa}/gl", "path": "vtest-virgl", "runtime": mesa,
                "probe": "gl",
                "outcome": outcome, "reason": "r", "versions": {"virgl_test_server": server},
                "driver_match": {"runtime_mesa": mesa}}

    found = answers.vtest_compat(records.entries([vtest("0.10.4", "20.3.5"), vtest("0.9.1", "9.0.1",
                                                                                   "Fail")]))
    assert found.columns[1:] == ["virglrenderer 0.9.1 · gl", "virglrenderer 0.10.4 · gl"]
    assert [[cell.text for cell in row] for row in found.rows] == [
        ["9.0.1 (9.0.1)", "fails: failed", "-"], ["20.3.5 (20.3.5)", "-", "renders (1)"]]


def test_a_grid_that_cannot_be_made_costs_the_report_nothing_but_the_grid(monkeypatch):
    from harness.report import grid as grid_mod, html

    document = runs.document(20)

    def broken(entries):
        raise KeyError("no such field")

    monkeypatch.setattr(grid_mod, "build", broken)
    page = html.render(records.parse(document))
    assert "The grid and the answers could not be made from this run: KeyError" in page
    # every scenario's detail is still there
    assert all(s["id"] in page for s in document["scenarios"])
