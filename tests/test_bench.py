from pathlib import Path

from harness import bench, matrix, verdict
from harness.lifecycle import LaunchResult
from harness.probes import ProbeReport
from harness.runner import ScenarioResult

SCENARIOS = {s.path_id: s for s in matrix.expand({"matrix": {"paths": ["native", "vtest-virgl"], "probes": ["gl"]}},
                                                "t").scenarios}


def result(path, fps, rss, server_rss, wall):
    launch = LaunchResult(phases={"setup_s": 0.01, "probe_s": wall}, rss_kb={"virgl_test_server": server_rss})
    report = ProbeReport(ok=True, timings={"fps": fps}, peak_rss_kb=rss)
    return ScenarioResult(SCENARIOS[path], verdict.Verdict(verdict.PASS, "ok"), launch, report, Path("/x"), wall)


def test_summary_gives_medians_fps_against_the_baseline_and_peak_memory():
    rounds = [[result("native", 1000, 80_000, 0, 0.2), result("vtest-virgl", 800, 90_000, 100_000, 0.3)],
              [result("native", 1200, 82_000, 0, 0.1), result("vtest-virgl", 600, 95_000, 120_000, 0.5)],
              [result("native", 1100, 81_000, 0, 0.3), result("vtest-virgl", 700, 91_000, 110_000, 0.4)]]
    rows = {row.scenario: row for row in bench.summarize(rounds)}
    vtest = rows["vtest-virgl/host/gl"]
    assert vtest.fps == 700 and abs(vtest.fps_vs_native - 700 / 1100) < 1e-9
    assert vtest.wall_s == 0.4 and vtest.phases_s["probe_s"] == 0.4
    assert vtest.probe_rss_kb == 95_000 and vtest.service_rss_kb == {"virgl_test_server": 120_000}
    assert rows["native/host/gl"].fps_vs_native == 1.0 and vtest.outcome == "Pass" and vtest.runs == 3
