"""The vtest compatibility answer from conformance runs: a vtest scenario's piglit subtests against
the same tests natively on the same client Mesa give the pair's pass rate and its gaps."""
import copy

from harness.report import answers, conformance, records
from tests import runs

PASS, FAIL = "pass", "fail"


def scenario(template: dict, path: str, outcomes: dict, server: str = "0.10.4") -> dict:
    found = copy.deepcopy(template)
    found.update(id=f"{path}/trixie/gles", path=path, runtime="trixie", probe="gles",
                 outcome="Fail", failure_kind="subtest-failed",
                 subtests=[{"name": name, "outcome": outcome, "detail": "", "seconds": 0.1}
                           for name, outcome in outcomes.items()])
    found["versions"] = {"mesa": "25.0.7", **({"virgl_test_server": server} if server else {})}
    found["runtime_facts"] = {**(found.get("runtime_facts") or {}), "mesa": "25.0.7"}
    found["probe_result"] = {**(found.get("probe_result") or {}),
                             "workload": {"kind": "piglit", "probe": "gles"}}
    return found


def entries():
    template = runs.document(count=1)["scenarios"][0]
    native = {"spec@a@1": PASS, "spec@a@2": PASS, "spec@a@3": FAIL, "spec@a@4": PASS}
    vtest = {"spec@a@1": PASS, "spec@a@2": FAIL, "spec@a@3": FAIL, "spec@a@4": PASS}
    return records.entries([scenario(template, "flatpak-ext", native, server=""),
                            scenario(template, "vtest-virgl", vtest)])


def test_a_pairs_pass_rate_against_native_and_its_gaps():
    scenarios = list(entries())
    vtest = [s for s in scenarios if s.path == "vtest-virgl"]
    found = conformance.figures(vtest, scenarios)
    assert found == {"tests": 4, "passed": 2, "native_passed": 3, "passed_of_native": 2,
                     "pass_vs_native": 0.6667, "gap_count": 1, "gaps": ["spec@a@2"]}
    assert conformance.cell_text(found) == "67% of native (2/3 of 4); 1 gaps"


def test_the_answer_cell_says_it_and_the_record_keeps_the_gaps():
    answer = answers.vtest_compat(list(entries()))
    (record,) = answer.records
    assert record["pass_vs_native"] == 0.6667 and record["gaps"] == ["spec@a@2"]
    cells = [cell.text for row in answer.rows for cell in row[1:]]
    assert "67% of native (2/3 of 4); 1 gaps" in cells


def test_without_a_native_run_the_cell_counts_what_passed():
    only_vtest = [s for s in entries() if s.path == "vtest-virgl"]
    found = conformance.figures(only_vtest, only_vtest)
    assert found == {"tests": 4, "passed": 2}
    assert conformance.cell_text(found) == "2/4 tests pass (no native run to compare)"


def test_a_users_commands_steps_are_no_conformance_run():
    template = runs.document(count=1)["scenarios"][0]
    steps = scenario(template, "vtest-virgl", {"step": PASS})
    steps["probe_result"]["workload"]["kind"] = "command"
    (entry,) = records.entries([steps])
    assert conformance.figures([entry], [entry]) == {}


def test_a_test_that_passes_only_through_vtest_is_no_share_of_native():
    """The share counts the tests that pass natively and through vtest, over those that pass
    natively: one that passes through vtest alone raises neither side."""
    template = runs.document(count=1)["scenarios"][0]
    native = scenario(template, "flatpak-ext", {"a": PASS, "b": FAIL}, server="")
    vtest = scenario(template, "vtest-virgl", {"a": PASS, "b": PASS})
    scenarios = list(records.entries([native, vtest]))
    found = conformance.figures([s for s in scenarios if s.path == "vtest-virgl"], scenarios)
    assert (found["passed"], found["passed_of_native"], found["native_passed"]) == (2, 1, 1)
    assert conformance.cell_text(found) == "100% of native (1/1 of 2); 0 gaps"


def test_tests_that_lost_the_server_are_counted_in_the_mesa_clients_words():
    """A subtest whose detail has Mesa's vtest client's words for a server process gone (as
    measured: virglrenderer 1.3.0 under trixie's Mesa, `lost connection to rendering server on 8
    read -1 104`)."""
    template = runs.document(count=1)["scenarios"][0]
    vtest = scenario(template, "vtest-virgl", {"a": PASS, "b": "crash"})
    vtest["subtests"][1]["detail"] = "crash; lost connection to rendering server on 8 read -1 104"
    (entry,) = records.entries([vtest])
    found = conformance.figures([entry], [entry])
    assert (found["lost_server"], found["lost_server_tests"]) == (1, ["b"])
    assert conformance.cell_text(found) == ("1/2 tests pass (no native run to compare); 1 lost "
                                            "the server")
