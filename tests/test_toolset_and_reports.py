import json
import xml.etree.ElementTree as ET

import pytest

from harness.launch.families import registry
from harness import report
from harness.host import toolset
from harness.core.errors import InputError


def manifest(tmp_path, data):
    path = tmp_path / "toolset.json"
    path.write_text(json.dumps(data))
    return path


def test_manifest_round_trips_the_discovery_schema(tmp_path):
    found = toolset.discover()
    loaded = toolset.load_manifest(manifest(tmp_path, found.to_dict()))
    assert loaded.source.startswith("manifest:")
    assert loaded.versions() == found.versions()


def test_manifest_errors(tmp_path):
    with pytest.raises(InputError) as err:
        toolset.load_manifest(manifest(tmp_path, {"schema": "v0", "tools": {"bwrap": "yes"},
                                                  "colour": 1}))
    assert len(err.value.problems) == 3
    with pytest.raises(InputError, match="not valid JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{")
        toolset.load_manifest(bad)


def test_missing_tool_gives_install_hint():
    from harness.scenario import paths
    empty = toolset.Toolset("discovery", {name: toolset.Tool(name) for name in toolset.TOOL_SPECS},
                            [])
    spec = paths.get("vtest-virgl")
    reason = registry.of(spec).available(spec, empty)
    assert ("bwrap (install bubblewrap)" in reason
            and "virgl_test_server (install virgl-server)" in reason)


DOC = {
    "schema": "gpu-harness/results/v1", "matrix": "m.toml", "started": "2026-11-22T00:00:00+00:00",
       "wall_s": 1.5,
    "host": {"kernel": "6.1", "machine": "x86_64", "render_nodes": []},
    "toolset": {"source": "discovery", "tools": {"bwrap": {"path": "/usr/bin/bwrap",
                                                           "version": "0.8.0"}}},
    "summary": {"Pass": 1, "Fail": 1, "Skip": 1},
    "scenarios": [
        {"id": "software/host/gl", "path": "software", "outcome": "Pass",
         "reason": "all checks passed", "wall_s": 0.2,
         "renderer": "llvmpipe", "image": "scenarios/s/probe/probe.png",
         "golden": "scenarios/s/golden.png",
         "diff": "scenarios/s/diff.png", "checks": [{"name": "renderer", "ok": True,
                                                     "detail": "ok"}]},
        {"id": "vtest-virgl/host/gl", "path": "vtest-virgl", "outcome": "Fail",
         "reason": "probe <crashed>",
         "wall_s": 0.3, "log_tail": "--- probe ---\nFatal Python error"},
        {"id": "sandbox-dri/host/gl", "path": "sandbox-dri", "outcome": "Skip",
         "reason": "no render node",
         "wall_s": 0},
    ],
}


def test_junit_and_html_from_results_json(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(DOC))
    report.render_from_json(tmp_path)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests") == "3" and suite.get("failures") == "1"
            and suite.get("skipped") == "1")
    failure = suite.find("testcase[@name='vtest-virgl/host/gl']/failure")
    assert failure.get("message") == "probe <crashed>"
    html = (tmp_path / "report.html").read_text()
    assert 'src="scenarios/s/golden.png"' in html and 'src="scenarios/s/diff.png"' in html
    assert "probe &lt;crashed&gt;" in html and "Fatal Python error" in html


def test_report_rejects_non_results(tmp_path):
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(InputError, match="no scenarios list"):
        report.render_from_json(tmp_path)


def test_junit_stays_valid_xml_with_control_characters_in_a_reason():
    from harness.report import junit, records
    document = json.loads(json.dumps(DOC))
    document["scenarios"][1]["reason"] = "probe said \x1b[31mred\x1b[0m and \x00"
    suite = ET.fromstring(junit.render(records.parse(document)))
    failure = suite.find("testcase[@name='vtest-virgl/host/gl']/failure")
    assert failure.get("message") == "probe said \\x1b[31mred\\x1b[0m and \\x00"
