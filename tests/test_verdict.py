from pathlib import Path

import pytest

from harness.host import diagnosis
from harness import matrix
from harness.judging import verdict
from harness.scenario.imagecompare import Comparison
from harness.launch.lifecycle import LaunchResult
from harness.scenario.outcomes import FailureKind
from harness.scenario.probes import ProbeReport
from harness.system.process import Exit

HOST = verdict.HostFacts({"mnt": "mnt:[1]", "pid": "pid:[2]", "net": "net:[3]", "ipc": "ipc:[4]",
                          "uts": "uts:[5]"},
                         has_gpu=False)
SANDBOXED_NS = {"mnt": "mnt:[11]", "pid": "pid:[12]", "net": "net:[13]", "ipc": "ipc:[14]",
                "uts": "uts:[15]"}
GOOD_IMAGE = Comparison(True, "image matches golden")
# Logs captured from real runs (vmtests/test_faults.py) where virgl_test_server's process for the
# probe's client died mid-frames: SIGSEGV (the client aborted) and SIGKILL (the client drew on).
VTEST_LOGS = Path(__file__).parent / "files" / "vtest"


def ProbeResult(data, exit, log_path, image_path, *_, problem="", skipped=""):
    """An attempt as the verdict sees it: what the launch saw and what the probe reported."""
    launch = LaunchResult(exit=exit, skipped=skipped, logs={"probe": log_path},
                          artifacts={"image": image_path} if image_path else {})
    if problem:
        launch.fail(problem, FailureKind.LAUNCH_FAILED)
    report = None if data is None else ProbeReport(ok=data.get("ok") is True,
                                                   error=data.get("error", ""),
                                                   renderer=data.get("renderer", ""),
                                                   isolation=data.get("isolation", {}), raw=data)
    return verdict.Observed(launch, report)


def scenario(path, **override):
    declaration = {"matrix": {"paths": [path]}}
    if override:
        declaration["override"] = [{"match": "*", **override}]
    return matrix.expand(declaration, "t").scenarios[0]


def probe(renderer="virgl (LLVMPIPE (LLVM 15.0.6, 256 bits))", dri=(), visible=(), namespaces=None,
          code=0,
          ok=True, **kw):
    data = {"ok": ok, "renderer": renderer, "isolation": {
        "dri_nodes": list(dri), "host_paths_visible_list": list(visible), "host_paths_checked": 10,
        "namespaces": namespaces or SANDBOXED_NS}}
    return ProbeResult(data, Exit(code, None), "/nonexistent.log", "probe.png", {}, {}, {}, **kw)


def test_vtest_pass():
    v = verdict.judge(scenario("vtest-virgl"), probe(), GOOD_IMAGE, HOST)
    assert v.outcome == verdict.PASS and [c.name for c in v.checks] == [
        "renderer", "image", "no-dri", "host-hidden", "namespaces"]


def test_llvmpipe_on_vtest_is_a_silent_fallback():
    v = verdict.judge(scenario("vtest-virgl"), probe(renderer="llvmpipe (LLVM 15.0.6, 256 bits)"),
                      GOOD_IMAGE, HOST)
    assert v.outcome == verdict.FAIL and v.reason.startswith("silent fallback to software")


def test_native_with_render_node_must_not_be_llvmpipe():
    with_gpu = verdict.HostFacts(HOST.namespaces, has_gpu=True)
    data = probe(renderer="llvmpipe (LLVM 15.0.6, 256 bits)", namespaces=HOST.namespaces)
    assert verdict.judge(scenario("native"), data, GOOD_IMAGE, with_gpu).outcome == verdict.FAIL
    assert verdict.judge(scenario("native"), data, GOOD_IMAGE, HOST).outcome == verdict.PASS


@pytest.mark.parametrize("path", ["sandbox-hostlibs", "sandbox-hostdeps", "sandbox-hostdeps-glibc",
                                  "sandbox-capsule"])
def test_the_host_driver_falling_back_to_llvmpipe_on_a_gpu_host_is_a_silent_fallback(path):
    """On a host with a GPU, the host's driver in the sandbox must drive it: glvnd dropping the
    vendor and Mesa's software rasterizer answering instead is a classified Fail, not a Pass."""
    from harness.scenario.outcomes import FailureKind

    with_gpu = verdict.HostFacts(HOST.namespaces, has_gpu=True)
    data = probe(renderer="llvmpipe (LLVM 15.0.6, 256 bits)", dri=["/dev/dri/renderD128"])
    judged = verdict.judge(scenario(path), data, GOOD_IMAGE, with_gpu)
    assert (judged.outcome == verdict.FAIL
            and judged.failure_kind == FailureKind.SILENT_SOFTWARE_FALLBACK)
    hardware = probe(renderer="AMD Radeon RX 6600 (radeonsi, navi23)", dri=["/dev/dri/renderD128"])
    hardware.report.raw["libraries"] = ["/run/host-driver/lib/libEGL_mesa.so.0",
                                        "/run/host-driver/dri/radeonsi_dri.so"]
    assert verdict.judge(scenario(path), hardware, GOOD_IMAGE, with_gpu).outcome == verdict.PASS
    # Without a GPU llvmpipe is the host's driver, and what the path must render with.
    software = probe(renderer="llvmpipe (LLVM 15.0.6, 256 bits)")
    software.report.raw["libraries"] = ["/run/host-driver/lib/libEGL_mesa.so.0",
                                        "/run/host-driver/dri/swrast_dri.so"]
    assert verdict.judge(scenario(path), software, GOOD_IMAGE, HOST).outcome == verdict.PASS


@pytest.mark.parametrize("kwargs, message", [
    ({"dri": ["/dev/dri/renderD128"]}, "1 /dev/dri nodes visible: /dev/dri/renderD128"),
    ({"visible": ["/home"]}, "1 of 10 host paths visible: /home"),
    ({"namespaces": dict(SANDBOXED_NS, net="net:[3]")}, "shares the host's net namespace"),
])
def test_isolation_failures(kwargs, message):
    v = verdict.judge(scenario("vtest-virgl"), probe(**kwargs), GOOD_IMAGE, HOST)
    assert v.outcome == verdict.FAIL and message in v.reason


def test_image_mismatch_fails():
    v = verdict.judge(scenario("vtest-virgl"), probe(), Comparison(False,
                                                                   "image differs from golden: 5%"),
                      HOST)
    assert v.outcome == verdict.FAIL and "image differs" in v.reason


@pytest.mark.parametrize("result, message", [
    (ProbeResult(None, Exit(None, 11), "/nonexistent", None, {}, {}, {}),
     "probe killed by SIGSEGV without a result"),
    (ProbeResult(None, Exit(None, 9, timed_out=True), "/x", None, {}, {}, {}),
     "probe timed out after 60 s"),
    (ProbeResult(None, None, "/x", None, {}, {}, {}, problem="service virgl_test_server not ready"),
     "service virgl_test_server not ready"),
    (ProbeResult({"ok": False, "error": "no EGL display"}, Exit(1, None), "/x", None, {}, {}, {}),
     "probe failed: no EGL display"),
    (ProbeResult(None, Exit(None, 6,
                            stopped_because="service virgl_test_server died during the run"), "/x",
                 None, {}, {}, {}, problem="service virgl_test_server died during the run"),
     "service virgl_test_server died during the run; probe killed by SIGABRT"),
])
def test_launch_failures_have_reasons(result, message):
    v = verdict.judge(scenario("vtest-virgl"), result, None, HOST)
    assert v.outcome == verdict.FAIL and message in v.reason


def test_skip():
    result = ProbeResult(None, None, "", None, {}, {}, {}, skipped="no DRM render node")
    assert verdict.judge(scenario("sandbox-dri"), result, None,
                         HOST) == verdict.Verdict(verdict.SKIP, "no DRM render node")


def test_expected_fail_and_unexpected_pass():
    xfail = scenario("vtest-virgl", expect="fail", reason="old Mesa")
    failed = verdict.judge(xfail, probe(renderer="llvmpipe"), GOOD_IMAGE, HOST)
    assert failed.outcome == verdict.EXPECTED_FAIL and "old Mesa" in failed.reason
    passed = verdict.judge(xfail, probe(), GOOD_IMAGE, HOST)
    # An unexpected pass (one spelling), which the matrix's own expectation makes a failure of the
    # run
    assert (passed.outcome == verdict.Outcome.UNEXPECTED_PASS
            and passed.reason == "passed, but expected to fail (old Mesa)")
    assert passed.outcome.fails_run(xfail.expect.fails) and passed.failure_kind is None


def test_retries_make_flakes():
    fail, ok = verdict.Verdict(verdict.FAIL, "boom"), verdict.Verdict(verdict.PASS, "fine")
    assert verdict.combine_attempts([fail, ok]).outcome == verdict.FLAKE
    assert "after: boom" in verdict.combine_attempts([fail, ok]).reason
    assert verdict.combine_attempts([fail, fail]).outcome == verdict.FAIL
    assert verdict.combine_attempts([ok]).outcome == verdict.PASS


def with_logs(result, probe_log, server_log):
    result.launch.logs.update({"probe": str(VTEST_LOGS / probe_log),
                               "virgl_test_server": str(VTEST_LOGS / server_log)})
    return result


def test_a_client_aborted_by_its_servers_crash_is_the_servers_death():
    log = (VTEST_LOGS / "client-aborted-on-lost-read.log").read_text().splitlines()
    server = (VTEST_LOGS / "server-child-segv.log").read_text().splitlines()
    found = diagnosis.classify(None, log, 6, {}, server)
    assert found is not None and found.kind is FailureKind.SERVICE_DIED
    assert found.subject == ("the vtest server's side of the socket went away: SIGABRT in frame "
                             "(gles.py:381)")
    assert found.detail == "lost connection to rendering server on 8 read 0 0"
    assert found.evidence == "its process for a client crashed (SIGSEGV!)"


def test_a_client_that_drew_on_after_its_server_went_away_fails():
    """Mesa 22.3's client exited 0 with an image and an fps figure after its socket was reset."""
    result = with_logs(probe(), "client-drew-on-after-reset.log", "server-child-killed.log")
    v = verdict.judge(scenario("vtest-virgl"), result, GOOD_IMAGE, HOST)
    assert v.outcome == verdict.FAIL and v.failure_kind is FailureKind.SERVICE_DIED
    assert v.reason.endswith("the vtest server's side of the socket went away mid-run: "
                             "Failed with Connection reset by peer"), v.reason


def test_the_server_connection_holds_in_a_passing_run():
    result = with_logs(probe(), "client-drew-on-after-reset.log", "server-child-killed.log")
    result.launch.logs["probe"] = "/nonexistent.log"
    v = verdict.judge(scenario("vtest-virgl"), result, GOOD_IMAGE, HOST)
    assert v.outcome == verdict.PASS and "server-connection" in [c.name for c in v.checks]
    assert diagnosis.service_evidence(
        (VTEST_LOGS / "server-child-killed.log").read_text().splitlines()) == ""


def test_a_crash_of_the_servers_process_for_the_client_is_a_death_under_it():
    """The server's SIGSEGV handler spoke and the client's socket was reset: both said, and the
    class is the one the classifier gives a client that aborted on the same crash."""
    result = with_logs(probe(), "client-drew-on-after-reset.log", "server-child-segv.log")
    v = verdict.judge(scenario("vtest-virgl"), result, GOOD_IMAGE, HOST)
    assert v.outcome == verdict.FAIL and v.failure_kind is FailureKind.SERVICE_DIED
    assert "the vtest server's process for a client crashed 1 time (SIGSEGV!)" in v.reason, v.reason
    assert "the vtest server's side of the socket went away mid-run" in v.reason, v.reason


def test_a_crash_the_client_did_not_feel_is_still_a_crash():
    """Another client's server process crashed (a hostile one's) while this client's socket held."""
    result = with_logs(probe(), "client-drew-on-after-reset.log", "server-child-segv.log")
    result.launch.logs["probe"] = "/nonexistent.log"
    v = verdict.judge(scenario("vtest-virgl"), result, GOOD_IMAGE, HOST)
    assert v.outcome == verdict.FAIL and v.failure_kind is FailureKind.CRASH
    assert v.reason.endswith("the vtest server's process for a client crashed 1 time "
                             "(SIGSEGV!)"), v.reason
