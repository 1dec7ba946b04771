"""A declared command's own fps (its fps_pattern) for real: the command through native and software
on the host runtime, its figure in results.json as the workload's fps with its share of the
reference path's (native), and from results.json, read back into records, in the cost answer, the
grid and report.html; the probe's own fps beside it, as it was."""
import datetime
import json

import pytest

from harness import matrix as matrix_mod, report
from harness.judging import verdict
from harness.report import answers, document as report_document, grid, records

from .conftest import describe, outcome_or_skip

# The software path forces llvmpipe by its environment: the program says another fps there, so
# that the share is the program's and no other figure's.
SAYS_FPS = "if [ -n \"$LIBGL_ALWAYS_SOFTWARE\" ]; then echo 'fps: 30'; else echo 'fps: 120'; fi"


@pytest.mark.launches("host")
def test_a_command_s_fps_reaches_results_json_the_cost_answer_and_the_grid(run_scenarios, toolset,
                                                                           tmp_path):
    loaded = matrix_mod.expand({"matrix": {"paths": ["native", "software"], "runtimes": ["host"],
                                           "probes": ["app"]},
                                "probes": {"app": {"kind": "command", "argv": ["sh", "-c",
                                                                               SAYS_FPS],
                                                   "fps_pattern": r"fps: ([\d.]+)"}}}, "<test>")
    results = run_scenarios(loaded.scenarios)
    for result in results:
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
    out = tmp_path / "out"  # where run_scenarios ran them
    report.write_all(out, report_document.document(results, out, toolset,
                                                   datetime.datetime.now(datetime.timezone.utc),
                                                   "<test>"))
    written = {s["id"]: s for s in json.loads((out / "results.json").read_text())["scenarios"]}
    native, software = written["native/host/app"], written["software/host/app"]
    assert (native["workload_fps"], software["workload_fps"]) == (120.0, 30.0)
    assert (software["workload_fps_vs_reference"], software["workload_fps_reference"]) == (0.25,
                                                                                           "native")
    assert (native["workload_fps_vs_reference"] == 1.0
            and software["workload_fps_same_as_reference"] is None)
    for entry in (native, software):  # the probe's own fps as it was, under both names of its share
        assert (entry["fps"] == entry["timings"]["fps"]
                and entry["fps_reference"] == entry["fps_baseline"] == "native")
        assert entry["fps_vs_reference"] == entry["fps_vs_baseline"] is not None
    run = records.read_file(out)
    cost = next(a for a in answers.build(run.scenarios) if a.key == "cost")
    record = next(r for r in cost.records if r["path"] == "software")
    assert (record["workload_fps_vs_reference"] == {"app": 0.25}
            and record["workload_fps_same_as_reference"] == {"app": False})
    assert (record["fps_vs_reference"] == record["fps_vs_baseline"]
            == {"app": software["fps_vs_reference"]})
    assert next(row for row in cost.rows if row[0].text == "software")[7].text == "app workload 25%"
    (app,) = grid.build(list(run.scenarios))
    cell = app.cell("host", "software")
    assert cell is not None and cell.fps_workload and cell.fps_pct == 25 and cell.fps_text == "25%"
    # as written, as read back
    assert json.loads((out / "results.json").read_text())["grid"] == [app.to_json()]
    assert "workload's fps 30.0: 25% of native" in (out / "report.html").read_text()
