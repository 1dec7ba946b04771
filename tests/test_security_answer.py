"""The security answer from results.json entries: the fuzzer's summary read from its step's output
(captured from a real run of harness/data/security.toml's vtest-virgl scenario), the server's
crashed processes and the path's exposure beside it; and the shipped matrix that runs it."""
import json
from pathlib import Path

from harness.host import diagnosis
from harness import matrix
from harness.report import answers, records, security

FILES = Path(__file__).parent / "files" / "vtest"
OUTPUT = (FILES / "fuzz-step-output.txt").read_text()
# Captured from a real run of security.toml's vm-virgl scenario: the guest program's output, QEMU's
# log.
VM_OUTPUT = (FILES / "vm-fuzz-step-output.txt").read_text()
VM_QEMU_LOG = FILES / "vm-fuzz-qemu.log"
SUMMARY = json.loads(OUTPUT.splitlines()[-1])


def entry(outcome="Pass", crashes=0, output=OUTPUT, path="vtest-virgl"):
    return {"id": f"{path}/trixie/hostile", "path": path, "runtime": "trixie", "probe": "hostile",
            "outcome": outcome,
            "reason": "the reason", "wall_s": 31.0,
            "result_dir": f"scenarios/{path}__trixie__hostile",
            "versions": {"virgl_test_server": "0.10.4"}, "vtest_server_crashes": crashes,
            "probe_result": {"steps": [{"name": "python3", "exit_code": 0, "output": output}]},
            "exposure": {"host_file_count": 0, "host_sockets": ["/tmp/.virgl_test"],
                         "shared_namespaces": []}}


def security_answer(scenarios):
    return next(a for a in answers.build(records.entries(scenarios)) if a.key == "security")


def test_the_fuzzer_s_summary_is_read_from_its_real_output():
    assert security.fuzz_summary(records.entry(entry())) == SUMMARY
    assert (SUMMARY["tried"]
            == SUMMARY["answered"] + SUMMARY["dropped"] + SUMMARY["waiting"] + SUMMARY["hung"])
    (record,) = security_answer([entry()]).records
    assert {k: record[k] for k in ("tried", "answered", "dropped", "waiting", "hung")} == {
        k: SUMMARY[k] for k in ("tried", "answered", "dropped", "waiting", "hung")}
    assert (record["server"] == "virgl_test_server 0.10.4"
            and record["targeted"] == len(SUMMARY["targeted"]))
    assert record["inputs"] == "scenarios/vtest-virgl__trixie__hostile/probe/fuzz/inputs"
    assert record["exposes"] == {"host_files": 0, "host_sockets": ["/tmp/.virgl_test"],
                                 "shared_namespaces": []}


def test_a_crash_fails_the_row_and_is_counted():
    answer = security_answer([entry(), entry("Fail", crashes=2, path="podman-vtest")])
    rows = {row[0].text: [cell.text for cell in row] for row in answer.rows}
    assert rows["podman-vtest"][9] == "2" and rows["podman-vtest"][10] == "Fail"
    assert rows["vtest-virgl"][9] == "0" and rows["vtest-virgl"][10] == "Pass"


def test_the_confined_server_s_path_says_how_its_server_runs():
    answer = security_answer([entry(), entry(path="vtest-virgl-confined")])
    modes = {record["path"]: record["mode"] for record in answer.records}
    assert modes == {"vtest-virgl": "forking",
                     "vtest-virgl-confined": "forking, confined (bwrap, seccomp)"}


def test_scenarios_without_a_hostile_client_make_no_row():
    plain = {**entry(), "probe_result": {"renderer": "llvmpipe"}}
    not_json = entry(output="rendered 3 frames\n")
    answer = security_answer([plain, not_json])
    assert answer.rows == [] and "harness/data/security.toml" in answer.note


def test_the_shipped_security_matrix_runs_the_fuzzer_inside_each_vtest_path_and_a_vm():
    loaded = matrix.load(matrix.DEFAULT_MATRIX.parent / "security.toml")
    assert sorted(s.path_id for s in loaded.scenarios) == ["flatpak-vtest", "podman-vtest",
                                                           "podman-vtest-capdrop",
                                                           "vm-virgl", "vtest-virgl",
                                                           "vtest-virgl-confined"]
    for scenario in loaded.scenarios:
        settings = scenario.declared.settings
        assert scenario.declared.kind == "command" and settings["argv"][:4] == [
            "python3", "{out}/inputs/vtestfuzz.py", "fuzz", "-"]
        assert sorted(Path(f).name for f in settings["files"]) == ["gl-session.bin",
                                                                   "virtgpufuzz.py",
                                                                   "vtestcases.py", "vtestfuzz.py"]
        assert all(Path(f).is_file() for f in settings["files"])


def test_a_vm_s_row_names_qemu_and_the_refusals_its_virglrenderer_logged():
    vm = {**entry(output=VM_OUTPUT, path="vm-virgl"), "versions": {"qemu-system-x86_64": "7.2.19"},
          "vtest_server_crashes": None,
          "renderer_refusals": diagnosis.renderer_refusals(str(VM_QEMU_LOG))}
    summary = security.fuzz_summary(records.entry(vm))
    assert summary is not None and summary["target"] == "/dev/dri/renderD128"
    answer = security_answer([entry(), vm])
    record = next(r for r in answer.records if r["path"] == "vm-virgl")
    assert (record["server"] == "qemu-system-x86_64 7.2.19"
            and record["mode"].startswith("in QEMU's process"))
    assert record["host_refused"] == vm["renderer_refusals"] > 0  # the guest never hears of these
    assert record["others"] == ("fresh clients' pixels wrong after 0 inputs; another client's "
                                "texture: answered")
    cells = next([cell.text for cell in row] for row in answer.rows if row[0].text == "vm-virgl")
    assert cells[6] == f"{summary['dropped']} by the guest kernel; {record['host_refused']} " \
                       "commands by virglrenderer (QEMU's log)"
    vtest = next(r for r in answer.records if r["path"] == "vtest-virgl")
    assert vtest["host_refused"] is None and vtest["others"] == ""


def test_a_vm_s_virglrenderer_refusals_are_its_error_lines_in_qemu_s_log():
    lines = VM_QEMU_LOG.read_text().splitlines()
    refusals = [line for line in lines if "context error reported" in line
                or "Illegal resource parameters" in line]
    assert diagnosis.renderer_refusals(str(VM_QEMU_LOG)) == len(refusals) > 100
    assert (diagnosis.renderer_refusals(None) == 0
            and diagnosis.renderer_refusals("/nonexistent") == 0)
