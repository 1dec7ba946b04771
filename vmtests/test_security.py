"""Is vtest a boundary, measured: the gl probe's real session recorded through a relay, then
mutated and replayed against a real virgl_test_server (the host's 0.10.4, and 1.1.0 from the
trixie-host runtime) while an honest app renders through the same server; the server's
per-client crash (a SIGSEGV its handler reports) is counted; saved inputs replay the same way."""
import os
import signal
import struct
import subprocess
import threading
import time

import pytest

from harness.studies import vtestsecurity
from harness.report import security as security_answer
from harness.system.process import process_stats

from .conftest import skip_unless_required
from .test_faults import comm
from .test_venus import toolset_from

pytestmark = pytest.mark.full("security")


def server_children():
    """The live processes of this test's own vtest servers for their clients: descendants of
    this process only (another run's server on the machine is not ours to signal), no zombie
    (one that already ended; a signal to it does nothing)."""
    members = dict(process_stats())
    ours, grew = {os.getpid()}, True
    while grew:
        found = {pid for pid, stat in members.items() if stat.ppid in ours} - ours
        ours |= found
        grew = bool(found)
    servers = {pid for pid in ours if comm(pid) == "virgl_test_serv" and not zombie(pid)}
    return sorted(pid for pid in servers if members[pid].ppid in servers)


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.parametrize("server", ["host", "trixie-host"])
def test_a_hostile_client_beside_an_honest_app(server, toolset, tmp_path):
    chosen = toolset if server == "host" else toolset_from(server)
    if chosen.missing(["virgl_test_server", "bwrap"]):
        skip_unless_required("vtest-virgl", "the vtest fuzz run",
                             "needs virgl_test_server and bwrap")
    session = vtestsecurity.record_session(chosen, tmp_path / "record")
    # the short session: setup, one frame, read-back
    assert 1000 < session.stat().st_size < 1 << 20, session
    run = vtestsecurity.fuzz(chosen, session, tmp_path / "fuzz", seed=3, count=150, seconds=15,
                             deadline_s=3)
    assert run.tried > 20 and run.answered + run.dropped + run.waiting + run.hung == run.tried
    # the server serves what it can and refuses the rest
    assert run.answered > 0 and run.dropped > 0
    assert run.server_alive and run.honest.startswith("Pass"), run.honest
    assert run.peak_rss_kb > 0
    # A saved input replays against a fresh server and ends in one of the four ways again. Not
    # always the same way: with 1.1.0 an input the server dropped in the run (a resource created
    # twice) was answered alone (measured), so the saved outcome is what the run saw.
    # The targeted cases come first, and some of them end one way or another by timing (a resource
    # of width 0x80000000 was answered, refused or left silent past 3 s, measured): six inputs.
    said = [vtestsecurity.replay(chosen, tmp_path / "fuzz" / saved["file"], tmp_path / "replay",
                                 deadline_s=3)[0]
            for saved in run.inputs[:6]]
    assert all(s and s.split(":")[0] in ("answered", "dropped", "waiting", "hung")
               for s in said), said
    assert any(s and s.split(":")[0] == saved["outcome"] for s, saved in zip(said, run.inputs[:6],
                                                                             strict=True)), said


# it signals every virgl_test_server's child it finds: another test's too, beside it
@pytest.mark.exclusive
def test_a_crash_of_a_servers_process_for_a_client_is_counted(toolset, tmp_path):
    """A crash planted from outside: one of the server's processes for a fuzzing client gets SIGSEGV
    (its handler says "SIGSEGV!") once the honest app is done; the count, the server's life and the
    honest app's pass are what the run says."""
    if toolset.missing(["virgl_test_server", "bwrap"]):
        skip_unless_required("vtest-virgl", "the vtest fuzz run",
                             "needs virgl_test_server and bwrap")
    session = vtestsecurity.record_session(toolset, tmp_path / "record")
    killed, honest_done = [], threading.Event()

    def plant():
        # A process for one client lives milliseconds: one signalled as it exits says nothing
        # (measured once in CI), so a few are signalled, a second apart.
        deadline = time.monotonic() + 60
        honest_done.wait(60)
        while time.monotonic() < deadline and len(killed) < 5:
            # each time another one: one that outlived its signal was already ending (measured
            # once: the same process signalled five times, no crash said)
            for pid in (pid for pid in server_children() if pid not in killed):
                try:
                    os.kill(pid, signal.SIGSEGV)
                    killed.append(pid)
                    time.sleep(1)
                    break
                except ProcessLookupError:
                    continue
            time.sleep(0.05)

    threading.Thread(target=plant, daemon=True).start()
    # The fuzzer's run outlasts the honest app by far (it renders in seconds, longer under load),
    # so a process for a fuzzing client is there to plant the crash in.
    run = vtestsecurity.fuzz(toolset, session, tmp_path / "fuzz", seed=5, count=2000, seconds=30,
                             deadline_s=3,
                             honest_done=honest_done)
    assert killed, (f"no process for a client to plant the crash in: fuzzed {run.seconds} s, "
                    "honest "
                    f"{run.honest}")
    assert run.crashes >= 1 and run.dropped >= 1, (killed, run.crashes, run.dropped, run.tried)
    assert run.server_alive and run.honest.startswith("Pass"), run.honest


MARKER = b"GPU-HARNESS-PLANTED-CRASH!!!"  # 28 bytes: whole dwords
# A server stubbed to crash on a marker input: its read() raises SIGSEGV when the bytes it read
# hold the marker, so the real server's own handler reports it as any crash of its.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
ssize_t read(int fd, void *buf, size_t count) {
    static ssize_t (*real)(int, void *, size_t);
    if (!real) real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    ssize_t got = real(fd, buf, count);
    if (got > 0 && memmem(buf, (size_t)got, "%s", %d)) raise(SIGSEGV);
    return got;
}
""" % (MARKER.decode(), len(MARKER))


def planted_crash_library(folder) -> str:
    source, library = folder / "plant.c", folder / "plant.so"
    source.write_text(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
                   check=True,
                   capture_output=True, timeout=120)
    return str(library)


def test_a_planted_crash_is_found_saved_and_replayed(toolset, tmp_path):
    """The session with one more command whose data is the marker: the stubbed server's process
    for the fuzzing client crashes on it; the run counts the crash and saves the input, which
    replays to the same crash on a fresh stubbed server and to none on the real one."""
    if toolset.missing(["virgl_test_server", "bwrap"]):
        skip_unless_required("vtest-virgl", "the vtest fuzz run",
                             "needs virgl_test_server and bwrap")
    planted = {"LD_PRELOAD": planted_crash_library(tmp_path)}
    recorded = vtestsecurity.record_session(toolset, tmp_path / "record")
    session = tmp_path / "marked-session.bin"
    # VCMD_SUBMIT_CMD
    session.write_bytes(recorded.read_bytes() + struct.pack("<II", len(MARKER) // 4, 6) + MARKER)
    run = vtestsecurity.fuzz(toolset, session, tmp_path / "fuzz", seed=1, count=40, seconds=30,
                             deadline_s=3,
                             server_env=planted)
    assert run.crashes >= 1 and run.server_alive and run.honest.startswith("Pass"), run
    # A saved input that carries the marker whole in one read of the server crashes it again (a
    # mutation that changed the framing before it can split it between two reads: not every one).
    marked = [tmp_path / "fuzz" / saved["file"] for saved in run.inputs
              if MARKER in (tmp_path / "fuzz" / saved["file"]).read_bytes()]
    assert marked, run.inputs
    # Most inputs that were dropped and carry the marker were refused before it (a mutation earlier
    # in the session): replayed in turn until one crashes.
    replayed, crashing = [], []
    for n, saved in enumerate(marked):
        replayed.append((saved, *vtestsecurity.replay(toolset, saved, tmp_path / f"replay-{n}", 3,
                                                      server_env=planted)))
        crashing = [(saved, said) for saved, said, crashes in replayed if crashes == 1]
        if crashing:
            break
    assert crashing and all(said.startswith("dropped") for _, said in crashing), replayed
    said, crashes = vtestsecurity.replay(toolset, crashing[0][0], tmp_path / "replay-real", 3)
    assert crashes == 0, said  # the marker means nothing to the real server


def test_the_confined_server_renders_and_a_crash_there_reaches_only_its_socket_folder(toolset,
                                                                                      tmp_path):
    """The same fuzz run against the server under bwrap and its seccomp filter: the honest app still
    renders through it, and what its process reaches is measured: no home, no network, of the
    host's folders only the socket's writable (a private /tmp and root besides), the syscalls the
    filter refuses refused."""
    if toolset.missing(["virgl_test_server", "bwrap"]):
        skip_unless_required("vtest-virgl", "the vtest fuzz run",
                             "needs virgl_test_server and bwrap")
    session = vtestsecurity.record_session(toolset, tmp_path / "record")
    runs = {mode: vtestsecurity.fuzz(toolset, session, tmp_path / mode, seed=2, count=40,
                                     seconds=15, deadline_s=3,
                                     mode=mode) for mode in (vtestsecurity.FORKING,
                                                             vtestsecurity.CONFINED)}
    confined, forking = runs[vtestsecurity.CONFINED], runs[vtestsecurity.FORKING]
    assert confined.server_alive and confined.honest.startswith("Pass"), confined.honest
    assert confined.targeted and {t["case"].split(":")[0] for t in confined.targeted} >= {
        "oversized resource", "another client's resources", "a client that never reads"}
    reach = confined.reach
    assert (not reach["home_readable"] and reach["network"] == []
            and len(reach["writable_host"]) == 1), reach
    assert "/tmp" in reach["writable_private"], reach
    # Under the seccomp filter (setup installs the binding that compiles it): no inet socket, no
    # user namespace of its own; as the seed runs it, both.
    assert reach["seccomp"].startswith("seccomp: "), reach
    assert reach["syscalls"] == {"socket(AF_INET)": "EAFNOSUPPORT",
                                 "unshare(CLONE_NEWUSER)": "EPERM"}, reach
    # as the seed runs it
    assert forking.reach["home_readable"] and len(forking.reach["writable_host"]) > 1, forking.reach
    assert (set(forking.reach["syscalls"].values()) == {"allowed"}
            and "seccomp" not in forking.reach), forking.reach


@pytest.mark.parametrize("path", ["vtest-virgl", "vtest-virgl-confined"])
def test_the_shipped_security_matrix_s_hostile_client_inside_vtest_virgl(path, run_scenarios,
                                                                         toolset):
    """security.toml's scenario for real: the fuzzer inside the sandbox, against the scenario's own
    server (confined too: under bwrap and its seccomp filter); the verdict and the security answer
    from its entry."""
    from harness import matrix
    from harness.judging import verdict
    from harness.report import answers, document, records

    from .conftest import describe, outcome_or_skip

    loaded = matrix.load(matrix.DEFAULT_MATRIX.parent / "security.toml")
    (scenario,) = [s for s in loaded.scenarios if s.path_id == path]
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    entry = records.entry(document.scenario_entry(result, result.result_dir.parent.parent,
                                                  toolset))
    (record,) = next(a for a in answers.build([entry]) if a.key == "security").records
    assert (record["tried"] > record["targeted"] > 0 and record["crashes"] == 0
            and record["hung"] == 0), record
    # it serves what it can, refuses the rest
    assert record["answered"] > 0 and record["dropped"] > 0, record
    assert record["exposes"]["host_sockets"], record
    assert (record["mode"].startswith("forking, confined")
            == (path == "vtest-virgl-confined")), record



def test_the_shipped_security_matrix_s_hostile_guest_program_inside_vm_virgl(run_scenarios,
                                                                             toolset):
    """security.toml's vm-virgl scenario for real: in the guest there is no vtest socket, so the
    fuzzer takes the virtio-gpu render node and sends the recorded session, mutated, through the
    guest kernel's driver to QEMU's virglrenderer; a fresh client's texture round trip after
    each input and a victim client's texture through the run say whether other clients were
    disturbed; QEMU outlives it all."""
    from harness import matrix
    from harness.judging import verdict
    from harness.report import answers, document, records

    from .conftest import describe, outcome_or_skip

    loaded = matrix.load(matrix.DEFAULT_MATRIX.parent / "security.toml")
    (scenario,) = [s for s in loaded.scenarios if s.path_id == "vm-virgl"]
    (result,) = run_scenarios([scenario])
    assert outcome_or_skip(result) == verdict.PASS, describe(result)
    entry = records.entry(document.scenario_entry(result, result.result_dir.parent.parent,
                                                  toolset))
    summary = security_answer.fuzz_summary(entry)
    assert (summary is not None
            and summary["target"].startswith("/dev/dri/renderD")), describe(result)
    assert summary["unmutated"] == "answered" and summary["victim"] == "answered", summary
    assert summary["disturbed"] == 0 and summary["hung"] == 0, summary
    assert [case["case"] for case in summary["targeted"]][-2:] == [
        "another client's texture as a copy's target",
        "another client's texture as an upload's target"], summary
    (record,) = next(a for a in answers.build([entry]) if a.key == "security").records
    assert (record["server"].startswith("qemu-system-")
            and record["mode"].startswith("in QEMU")), record
    assert (record["tried"] > record["targeted"] > 0 and record["answered"] > 0
            and record["dropped"] > 0), record
    assert "another client's texture: answered" in record["others"], record
    # the mutated commands reached QEMU's virglrenderer, which refused some
    assert record["host_refused"] > 0, record


def session_commands(session) -> list:
    """The command ids of a recorded session (each: length in dwords, id, then its data)."""
    data, ids, at = session.read_bytes(), [], 0
    while at + 8 <= len(data):
        length, command = struct.unpack_from("<II", data, at)
        ids.append(command)
        at += 8 + 4 * length
    return ids


def test_a_hostile_venus_client_beside_an_honest_gl_app(tmp_path):
    """The Vulkan probe's session through vtest-venus (trixie's Venus driver against trixie-host's
    virglrenderer 1.1), recorded through the relay (the blobs' fds reach the driver's recvmsg),
    mutated against a --venus server: the inputs reach Venus's decoder in virgl_render_server (its
    "vkr:" lines), an honest GL app beside it still gets its golden, and the kernel's log is read
    for faults of the server's programs."""
    from harness import matrix

    chosen = toolset_from("trixie-host")
    venus = matrix.load(matrix.DEFAULT_MATRIX.parent / "venus.toml")
    trixie = next(s.runtime for s in venus.scenarios if s.runtime.name == "trixie")
    session = vtestsecurity.record_session(chosen, tmp_path / "record", trixie)
    commands = session_commands(session)
    # VCMD_CONTEXT_INIT, VCMD_SUBMIT_CMD2: Venus's own
    assert 17 in commands and 24 in commands, commands
    run = vtestsecurity.fuzz(chosen, session, tmp_path / "fuzz", seed=1, count=60, seconds=15,
                             deadline_s=10,
                             venus=True)
    assert (run.server.endswith("--venus") and run.tried > 10 and run.answered > 0
            and run.dropped > 0), run
    assert run.server_alive and run.honest.startswith("Pass"), run.honest
    assert run.crashes == 0 and run.kernel_faults == [] and run.kernel_log == "", run
    assert "vkr:" in (tmp_path / "fuzz" / "server.log").read_text(errors="replace")
