"""Containers for real: rootful podman over the built runtimes, with all of podman's state in
the scenario's temp folder. A run, a timeout and a SIGKILLed harness leave no podman state, no
mount, no cgroup folder and no process behind. Over an image archive too: made from the trixie
runtime by `gpu-harness runtimes image`, loaded per scenario into its private store, rendering
through vtest, its Mesa recorded and matched; refused archives fail with podman's words, and a
harness killed mid-load leaves nothing either."""
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from harness.runtimes import imagearchive, builds as runtimes
from harness.system import reaper
from harness.run import runner
from harness.judging import verdict
from harness.launch.families.container import PRIVATENS, STATE_PARENT, STATE_PREFIX
from harness.scenario.outcomes import FailureKind
from harness.system.retry import poll
from tests.leftovers import processes_in

from .conftest import (describe, harness_in_subprocess, on_runtimes, outcome_or_skip,
                       scenarios_from,
                       skip_unless_required)

GLOBAL_STATE = ("/var/lib/containers", "/run/containers")


def podman_matrix(paths, runtimes=("trixie",), **settings):
    return on_runtimes(paths, runtimes, **settings)


def cgroups(prefix):
    """Cgroup folders whose name starts with `prefix` (tests run side by side: each checks its
    own)."""
    return sorted(str(p) for p in Path(reaper.CGROUP_ROOT).glob(f"*/{prefix}*"))


def left_of(result):
    """What a finished container scenario left: its cgroups, podman state and mounts."""
    facts = result.launch.facts
    return (cgroups(facts["cgroup"])
            + [facts["podman_state"]] * os.path.exists(facts["podman_state"])
            + [line for line in open("/proc/self/mountinfo") if facts["podman_state"] in line])


def global_state():
    return {path: sorted(os.listdir(path)) if os.path.isdir(path) else None
            for path in GLOBAL_STATE}


def need_podman(toolset):
    if toolset.missing(["podman", "runc"]):
        skip_unless_required("podman-vtest", "podman",
                             "needs podman and runc (apt-get install podman runc)")


def test_podman_vtest_renders_and_capdrop_shows_what_still_works(run_scenarios, toolset):
    need_podman(toolset)
    before = global_state()
    # One retry: Debian 12's virgl_test_server's process for a client crashed once at context
    # creation here (its handler's "SIGSEGV!"; 1 run in 6 of the quick tier), which the harness
    # then says as a Flake. Any other failure fails the test.
    results = {r.scenario.path_id: r
               for r in run_scenarios(podman_matrix(["podman-vtest", "podman-vtest-capdrop"]),
                                      retries=1)}
    for result in results.values():
        outcome = outcome_or_skip(result)
        assert outcome == verdict.PASS or (
            outcome == verdict.FLAKE
            and "the vtest server's process for a client crashed" in result.verdict.reason), \
            describe(result)
        facts = result.report.raw["isolation"]
        assert facts["dri_nodes"] == [] and facts["seccomp_mode"] == 2
        assert (result.exposure.host_sockets == ["/tmp/.virgl_test"]
                and result.exposure.host_files == [])
    assert results["podman-vtest"].report.raw["isolation"]["capabilities"] > 0
    assert results["podman-vtest-capdrop"].report.raw["isolation"]["capabilities"] == 0
    assert global_state() == before and all(left_of(r) == [] for r in results.values())


def test_podman_dri_passes_the_render_node_with_device(tmp_path, toolset):
    """With a stand-in node (/dev/null, as podman accepts): the container sees one render node at
    /dev/dri/renderD128 and nothing else of /dev/dri; Mesa cannot use it, and the verdict says
    so."""
    need_podman(toolset)
    fake = dataclasses.replace(toolset, render_nodes=["/dev/null"])
    (scenario,) = podman_matrix(["podman-dri"])
    (result,) = runner.run([scenario], fake, runner.RunOptions(out_dir=tmp_path / "out"))
    assert "/dev/null:/dev/dri/renderD128" in result.launch.argv
    assert result.report is not None, describe(result)
    assert result.report.raw["isolation"]["dri_nodes"] == ["/dev/dri/renderD128"]
    assert result.verdict.outcome == verdict.FAIL
    assert result.verdict.failure_kind == FailureKind.SILENT_SOFTWARE_FALLBACK, describe(result)
    assert left_of(result) == []


def test_a_container_that_outlives_its_timeout_is_stopped_and_leaves_nothing(run_scenarios,
                                                                             toolset):
    need_podman(toolset)
    (scenario,) = podman_matrix(["podman-vtest"], timeout_s=3, probe_args=["--hold", "60"])
    started = time.monotonic()
    (result,) = run_scenarios([scenario])
    assert result.verdict.failure_kind == FailureKind.TIMEOUT, describe(result)
    assert time.monotonic() - started < 30
    assert left_of(result) == []


def podman_states(run):
    return sorted(Path(STATE_PARENT).glob(f"{STATE_PREFIX}{run}-*"))


def conmons(run):
    return [pid for pid in processes_in(f"{STATE_PARENT}/{STATE_PREFIX}{run}-")
            if command_name(pid) == "conmon"]


def command_name(pid) -> str:
    """A process's name; "" for one that has just ended (found, then gone before it was read)."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def test_harness_sigkilled_during_a_container_leaves_nothing(tmp_path, toolset):
    need_podman(toolset)
    # The container holds long: on a loaded 2-core machine the poll below may see it late.
    harness, scratch = harness_in_subprocess(tmp_path, """
        [matrix]
        paths = ["podman-vtest"]
        runtimes = ["trixie"]
        probes = ["gl"]
        [runtimes.trixie]
        kind = "debootstrap"
        [defaults]
        timeout_s = 300
        probe_args = ["--hold", "240"]
    """)

    def container_of_the_run():
        runs = [entry.name for entry in scratch.iterdir() if entry.name.startswith("gh-")]
        return next((run for run in runs if conmons(run)), None)

    try:
        run = poll(container_of_the_run, 300, 0.1)
        assert run, f"the container never started: {sorted(scratch.iterdir())}"
    finally:
        harness.send_signal(signal.SIGKILL)  # also where the test failed: nothing may run on
        harness.wait()

    def left():
        return (conmons(run) + podman_states(run) + list(scratch.iterdir())
                + cgroups(f"gpu-harness-{run}-")
                + [line for line in open("/proc/self/mountinfo")
                   if f"{STATE_PREFIX}{run}-" in line])

    poll(lambda: not left(), 60, 0.1)  # the reaper's rounds on a loaded 2-core machine
    assert left() == []


@pytest.mark.parametrize("bad", ["/tmp/a:b", "/tmp/a,b"])
def test_a_path_podman_would_split_is_refused(bad):
    from harness.launch.families.container import ContainerError, volume

    with pytest.raises(ContainerError, match="podman splits"):
        volume(bad, "/x")


# -- image runtimes ---------------------------------------------------------------------------

def image_matrix(paths, archive=None, recipe=None, **settings):
    spec = {"kind": "image", **({"archive": str(archive)} if archive else {"recipe": recipe})}
    declaration = {"matrix": {"paths": list(paths), "runtimes": ["img"], "probes": ["gl"]},
                   "runtimes": {"img": spec}}
    if settings:
        declaration["defaults"] = settings
    return scenarios_from(declaration)


@pytest.fixture(scope="module")
def trixie_image(tmp_path_factory):
    """The trixie runtime as a gzip docker-archive, written by the CLI (as a user makes one)."""
    if runtimes.cached("trixie") is None and not shutil.which("mmdebstrap"):
        skip_unless_required("podman-vtest", "trixie image",
                             "the trixie runtime is not built and mmdebstrap is missing")
    out = tmp_path_factory.mktemp("image") / "trixie.tar.gz"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "runtimes", "image", "trixie",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert (done.stdout.startswith(f"{out}: image sha256:")
            and "(docker-archive, gzip," in done.stdout)
    assert imagearchive.compression(str(out)) == "gzip"
    return out


def trixie_mesa():
    return runtimes.cached("trixie").facts["mesa"]


@pytest.mark.full("image-runtime")
def test_podman_vtest_over_an_image_renders_and_records_the_images_mesa(run_scenarios, toolset,
                                                                        trixie_image):
    need_podman(toolset)
    before = global_state()
    results = {r.scenario.path_id: r for r in run_scenarios(image_matrix(["podman-vtest",
                                                                          "podman-vtest-capdrop"],
                                                                         trixie_image))}
    for result in results.values():
        assert outcome_or_skip(result) == verdict.PASS, describe(result)
        assert result.report.renderer.startswith("virgl (")
        image = result.launch.facts["image"]
        assert image["mesa"] == trixie_mesa() and image["compression"] == "gzip"
        assert image["python_command"] == "/usr/bin/python3"  # the image's Cmd
        assert (result.driver_match.runtime_mesa == trixie_mesa()
                and result.driver_match.used == "runtime")
        assert image["id"] in result.launch.argv and "--rootfs" not in result.launch.argv
        assert result.launch.phases["image_build_s"] > 0  # the load, each scenario anew
        assert "Loaded image" in Path(result.launch.logs["podman-load"]).read_text()
        assert (result.exposure.host_sockets == ["/tmp/.virgl_test"]
                and result.exposure.host_files == [])
    assert results["podman-vtest-capdrop"].report.raw["isolation"]["capabilities"] == 0
    assert global_state() == before and all(left_of(r) == [] for r in results.values())


@pytest.mark.full("image-runtime")
def test_podman_dri_over_an_image_passes_the_node_and_flags_the_images_mesa(tmp_path, toolset,
                                                                            trixie_image):
    """A stand-in render node: the image's own Mesa renders in software (the verdict says so),
    and driver matching compares that Mesa with the host's."""
    need_podman(toolset)
    fake = dataclasses.replace(toolset, render_nodes=["/dev/null"])
    (scenario,) = image_matrix(["podman-dri"], trixie_image)
    (result,) = runner.run([scenario], fake, runner.RunOptions(out_dir=tmp_path / "out"))
    assert ("/dev/null:/dev/dri/renderD128" in result.launch.argv
            and "--entrypoint" in result.launch.argv)
    assert result.report is not None, describe(result)
    assert result.report.raw["isolation"]["dri_nodes"] == ["/dev/dri/renderD128"]
    assert result.verdict.failure_kind == FailureKind.SILENT_SOFTWARE_FALLBACK, describe(result)
    match, host = result.driver_match, toolset.version("host-driver")
    assert match.runtime_mesa == trixie_mesa() and match.used == "runtime"
    if host and host.startswith("mesa "):
        assert match.mismatch == (host != f"mesa {trixie_mesa()}")
        assert match.note == ("" if not match.mismatch
                              else f"runtime Mesa {trixie_mesa()}, host Mesa {host[5:]}")
    assert left_of(result) == []


@pytest.mark.full("image-runtime")
def test_an_image_made_from_a_runtime_by_the_matrix(run_scenarios, toolset):
    """recipe = "trixie": the archive is made once and cached by the runtime's lock."""
    need_podman(toolset)
    (result,) = run_scenarios(image_matrix(["podman-vtest"], recipe="trixie"))
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    assert result.launch.facts["image"]["archive"] == str(runtimes.image_archive_path("trixie"))
    assert result.launch.facts["image"]["mesa"] == trixie_mesa()
    assert left_of(result) == []


def tiny_image(tmp_path, break_digest=False):
    """A small docker-archive; with break_digest, its config names a layer digest it does not
    have."""
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("tiny\n")
    out = tmp_path / "tiny.tar"
    imagearchive.write(root, out, imagearchive.ImageSpec(tag="localhost/tiny:1",
                                                         architecture="amd64"))
    if not break_digest:
        return out
    with tarfile.open(out) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()]
    manifest = json.loads(dict((m.name, d) for m, d in members)["manifest.json"])
    config = json.loads(dict((m.name, d) for m, d in members)[manifest[0]["Config"]])
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    data = json.dumps(config).encode()
    manifest[0]["Config"] = f"{hashlib.sha256(data).hexdigest()}.json"
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as archive:
        for name, content in [(manifest[0]["Layers"][0],
                               dict((m.name, d) for m, d in members)[manifest[0]["Layers"][0]]),
                              (manifest[0]["Config"], data),
                              ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return broken


def test_an_archive_podman_refuses_fails_with_podmans_words_and_leaves_nothing(run_scenarios,
                                                                               toolset, tmp_path):
    need_podman(toolset)
    before = global_state()
    (result,) = run_scenarios(image_matrix(["podman-vtest"], tiny_image(tmp_path,
                                                                        break_digest=True)))
    assert (result.verdict.outcome == verdict.FAIL
            and result.verdict.failure_kind == FailureKind.RUNTIME_BUILD)
    assert ("podman load of" in result.verdict.reason
            and "Digest did not match" in result.verdict.reason)
    assert "\n" not in result.verdict.reason
    # its blob-info cache went with its state
    assert global_state() == before and left_of(result) == []


def test_a_tar_that_is_no_image_fails_before_podman_runs(run_scenarios, toolset, tmp_path):
    need_podman(toolset)
    plain = tmp_path / "files.tar"
    with tarfile.open(plain, "w") as archive:
        archive.add(__file__, "test.py")
    (result,) = run_scenarios(image_matrix(["podman-vtest"], plain))
    assert result.verdict.failure_kind == FailureKind.RUNTIME_BUILD
    assert "is a tar archive but not an image" in result.verdict.reason
    assert "podman-load" not in result.launch.logs and left_of(result) == []


def processes_naming(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.full("image-runtime")
def test_harness_sigkilled_during_a_load_leaves_nothing(tmp_path, toolset, trixie_image):
    need_podman(toolset)
    before = global_state()
    harness, scratch = harness_in_subprocess(tmp_path, f"""
        [matrix]
        paths = ["podman-vtest"]
        runtimes = ["img"]
        probes = ["gl"]
        [runtimes.img]
        kind = "image"
        archive = "{trixie_image}"
    """)

    def loading():
        runs = [entry.name for entry in scratch.iterdir()]
        return runs and [pid for pid in processes_naming(f"{STATE_PREFIX}{runs[0]}-")
                         if b"load" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")]

    poll(loading, 60, 0.05)
    (run,) = [entry.name for entry in scratch.iterdir()]
    assert loading(), "the load never started"
    time.sleep(1)  # well into it: the archive is being copied and unpacked
    harness.send_signal(signal.SIGKILL)
    harness.wait()

    def left():
        return (processes_naming(f"{STATE_PREFIX}{run}-") + processes_naming(str(trixie_image))
                + podman_states(run) + list(scratch.iterdir()) + cgroups(f"gpu-harness-{run}-")
                + [line for line in open("/proc/self/mountinfo")
                   if f"{STATE_PREFIX}{run}-" in line])

    poll(lambda: not left(), 30, 0.1)
    assert left() == [] and global_state() == before


def test_privatens_keeps_what_a_command_writes_in_var_lib_and_var_tmp_in_its_folder(tmp_path):
    before = global_state()
    marker = f"gh-privatens-{os.getpid()}"
    done = subprocess.run([sys.executable, str(PRIVATENS), str(tmp_path), "--", "sh", "-c",
                           "mkdir -p /var/lib/containers/cache && touch "
                           f"/var/lib/containers/cache/{marker} "
                           f"/var/tmp/{marker} && ls /var/lib"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["containers"]  # the folder, not the host's /var/lib
    assert ((tmp_path / f"var-lib/containers/cache/{marker}").exists()
            and (tmp_path / f"var-tmp/{marker}").exists())
    assert not os.path.exists(f"/var/tmp/{marker}") and global_state() == before
    # the binds ended with the namespace
    assert str(tmp_path) not in open("/proc/self/mountinfo").read()
