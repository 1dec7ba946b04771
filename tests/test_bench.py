import os
from pathlib import Path

from harness.studies import bench, serverbench
from harness import matrix
from harness.judging import verdict
from harness.launch import vtest
from harness.launch.lifecycle import LaunchResult
from harness.scenario.probes import ProbeReport
from harness.judging.scenario_result import ScenarioResult

SCENARIOS = {(s.path_id, s.probe): s for s in matrix.expand(
    {"matrix": {"paths": ["native", "software", "vtest-virgl", "vm-headless"],
                "probes": ["gl", "vulkan"]}},
    "t").scenarios}


def result(path, fps, rss, server_rss, wall, probe="gl"):
    launch = LaunchResult(phases={"setup_s": 0.01, "probe_s": wall},
                          rss_kb={"virgl_test_server": server_rss})
    report = ProbeReport(ok=fps is not None, timings={"fps": fps} if fps is not None else {},
                         peak_rss_kb=rss)
    return ScenarioResult(SCENARIOS[(path, probe)], verdict.Verdict(verdict.PASS, "ok"), launch,
                          report, Path("/x"),
                          wall)


def test_summary_gives_medians_fps_against_the_baseline_and_peak_memory():
    rounds = [[result("native", 1000, 80_000, 0, 0.2), result("vtest-virgl", 800, 90_000, 100_000,
                                                              0.3)],
              [result("native", 1200, 82_000, 0, 0.1), result("vtest-virgl", 600, 95_000, 120_000,
                                                              0.5)],
              [result("native", 1100, 81_000, 0, 0.3), result("vtest-virgl", 700, 91_000, 110_000,
                                                              0.4)]]
    rows = {row.scenario: row for row in bench.summarize(rounds)}
    vtest = rows["vtest-virgl/host/gl"]
    assert (vtest.fps == 700 and abs(vtest.fps_vs_reference - 700 / 1100) < 1e-9
            and vtest.reference_path == "native")
    assert vtest.wall_s == 0.4 and vtest.phases_s["probe_s"] == 0.4
    assert vtest.probe_rss_kb == 95_000 and vtest.service_rss_kb == {"virgl_test_server": 120_000}
    assert (rows["native/host/gl"].fps_vs_reference == 1.0 and vtest.outcome == "Pass"
            and vtest.runs == 3)


def test_each_api_is_measured_against_its_own_baseline_and_software_stands_in_for_native():
    """Vulkan fps is divided by Vulkan's baseline, never GL's; where native rendered no frame of
    a probe, the reference path (software) is the baseline, as in the report."""
    rounds = [[result("native", 1000, 1, 0, 0.1), result("native", None, 1, 0, 0.1, probe="vulkan"),
               result("software", 400, 1, 0, 0.1, probe="vulkan"), result("software", 900, 1, 0,
                                                                          0.1),
               result("vm-headless", 100, 1, 0, 0.1, probe="vulkan"), result("vm-headless", 50, 1,
                                                                             0, 0.1)]]
    rows = {row.scenario: row for row in bench.summarize(rounds)}
    assert rows["vm-headless/host/vulkan"].fps_vs_reference == 0.25
    assert rows["vm-headless/host/vulkan"].reference_path == "software"
    assert (rows["vm-headless/host/gl"].fps_vs_reference == 0.05
            and rows["vm-headless/host/gl"].reference_path == "native")
    assert rows["native/host/vulkan"].fps_vs_reference is None


def test_a_server_serves_every_client_in_one_process_only_with_no_fork_as_well():
    argv = vtest.server_argv("virgl_test_server", "/tmp/s", None, multi_clients=True)
    assert argv == ["virgl_test_server", "--use-egl-surfaceless", "--no-fork", "--multi-clients",
                    "--socket-path=/tmp/s"]
    assert "--multi-clients" not in vtest.server_argv("virgl_test_server", "/tmp/s", None)


def test_a_servers_complaint_is_its_cause_not_the_consequence(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("gl_version 45 - core profile enabled\n"
                   "vtest_protocol_version called protocol version too low which failed (-22)\n"
                   "client failed: VTEST_CLIENT_ERROR_COMMAND_DISPATCH\n")
    assert serverbench.complaint(str(log)) == ("vtest_protocol_version called protocol version too "
                                               "low which failed (-22)")
    log.write_text("client failed: VTEST_CLIENT_ERROR_CONTEXT_FAILED\nok\n")
    assert serverbench.complaint(str(log)) == "client failed: VTEST_CLIENT_ERROR_CONTEXT_FAILED"
    # what every passing run logs (a client's end) is no complaint
    log.write_text("client failed: VTEST_CLIENT_ERROR_INPUT_READ\nok\n")
    assert serverbench.complaint(str(log)) == ""
    assert serverbench.complaint(str(tmp_path / "absent.log")) == ""


def test_memory_of_a_live_process_and_of_none():
    rss, pss = serverbench.memory_kb(os.getpid())
    assert rss > 1000 and 0 < pss <= rss
    assert serverbench.memory_kb(2 ** 22 + 7) == (0, 0)


def sharing_run(mode, passed=4, rss=100_000, wall=1.0, reasons=(), said=""):
    return serverbench.SharingRun(mode, "vtest-virgl", 4, 1 if mode != serverbench.PER_INSTANCE
                                  else 4,
                                  [0.01, 0.03], 5, rss, rss // 2, rss // 4, wall, passed,
                                  list(reasons), said)


def test_a_mode_over_its_rounds_is_medians_and_says_why_apps_failed():
    row = serverbench.row([sharing_run(serverbench.SHARED, rss=100_000, wall=1.0),
                           sharing_run(serverbench.SHARED, rss=300_000, wall=3.0),
                           sharing_run(serverbench.SHARED, rss=200_000, wall=2.0)])
    assert (row.peak_rss_kb == 200_000 and row.wall_s == 2.0 and row.start_s == 0.02
            and row.passed == "4/4")
    assert row.reason == ""
    failing = serverbench.row([sharing_run(serverbench.MULTI_CLIENTS, passed=0,
                                           said="protocol version too low",
                                           reasons=["app 0: Fail: crash SIGABRT in open_display "
                                                    "(gles.py:130): "
                                                    "probe exit code 134 without a result"])])
    assert failing.passed == "0/4"
    assert failing.reason == ("crash SIGABRT in open_display (gles.py:130); server: protocol "
                              "version too low")
    assert serverbench.row([sharing_run(serverbench.SHARED, passed=4),
                            sharing_run(serverbench.SHARED, passed=3)]
                           ).passed == "3-4/4"
    rendered = serverbench.table([row, failing])
    assert rendered.row_count == 2 and "median of 3 rounds" in str(rendered.title)


def test_the_server_bench_defaults_to_plain_bwrap_apps():
    assert serverbench.plainest_vtest_path() == "vtest-virgl"
