"""The piglit kind's profile form: its table checked, piglit's runner inside the path choosing the
tests (a test list in either spelling, include/exclude, a fraction that partitions), and piglit's
own results file (captured from a real quick_gl run here) read back as one subtest a test."""
import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from harness.scenario.outcomes import SubtestOutcome
from harness.scenario.probes import PROBE_DIR
from harness.workloads import piglit, piglitresults, registry
from harness.workloads.base import StepRun

sys.path.insert(0, str(PROBE_DIR))
import piglitrun  # noqa: E402  (a probe: standard library only, run inside the path)

FILES = Path(__file__).parent / "files" / "piglit"
# `piglit run` of quick_gl's GLES tests, fraction 1/4, natively on this host (Mesa 22.3, llvmpipe)
RESULTS = FILES / "quick_gl-gles-quarter-results.json"
SELECTION = FILES / "quick_gl-gles-quarter-selection.json"


def parsed(table, base=Path(".")):
    return registry.parse("mine", table, base)


@pytest.mark.parametrize("table,key,message", [
    ({"kind": "piglit"}, "tests", "one of the two"),
    ({"kind": "piglit", "tests": ["fbo-alpha"], "profile": "quick_gl"}, "tests", "one of the two"),
    ({"kind": "piglit", "tests": ["fbo-alpha"], "include": ["gles"]}, "include",
     "goes with profile"),
    ({"kind": "piglit", "profile": "quick_gl", "include": ["gles("]}, "include",
     "not a regular expression"),
    ({"kind": "piglit", "profile": "quick_gl", "fraction": "0/4"}, "fraction", "K/N"),
    ({"kind": "piglit", "profile": "quick_gl", "fraction": "5/4"}, "fraction", "K/N"),
    ({"kind": "piglit", "profile": "quick_gl", "fraction": 4}, "fraction", "K/N"),
    ({"kind": "piglit", "profile": "quick_gl", "test_list": "none.txt"}, "test_list",
     "is not a file"),
])
def test_bad_declarations_say_which_key_and_why(table, key, message):
    _, problems = parsed(table)
    assert any(where == f"probes.mine.{key}" and message in said for where,
               said in problems), problems


def test_a_test_list_that_names_no_test_is_refused_at_load(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    _, problems = parsed({"kind": "piglit", "profile": "quick_gl", "test_list": "empty.txt"},
                         tmp_path)
    assert problems == [("probes.mine.test_list", f"{tmp_path / 'empty.txt'} names no test")]


def test_the_runner_is_given_the_profile_its_list_and_its_choices_as_arguments(tmp_path):
    (tmp_path / "gles.txt").write_text("spec@!opengl es 2.0@draw_buffers_gles2\n")
    declared, problems = parsed({"kind": "piglit", "profile": "quick_gl", "test_list": "gles.txt",
                                 "include": ["gles", "es3"], "exclude": ["astc"],
                                 "fraction": "2/8", "jobs": 2}, tmp_path)
    assert not problems
    (step,) = piglit.KIND.steps(declared.settings, "mine")
    assert step.argv == ("python3", "{out}/inputs/piglitrun.py", "{out}", "quick_gl",
                         "--test-list", "{out}/inputs/gles.txt", "--include", "gles",
                         "--include", "es3", "--exclude", "astc", "--fraction", "2/8",
                         "--jobs", "2", "--timeout", "60")
    assert step.programs == ("python3", "piglit") and step.timeout_s == piglit.PROFILE_RUN_S
    assert piglit.KIND.inputs(declared.settings) == {
        "piglitrun.py": str(PROBE_DIR / "piglitrun.py"), "gles.txt": str(tmp_path / "gles.txt")}


def test_a_real_results_file_is_one_subtest_a_test_named_as_piglit_names_it(tmp_path):
    out = tmp_path / "probe"
    (out / "piglit" / "results").mkdir(parents=True)
    shutil.copy(RESULTS, out / piglitresults.RESULTS)
    shutil.copy(SELECTION, out / piglitresults.SELECTION)
    subtests = piglitresults.judged(StepRun("mine", exit_code=0, out_dir=out), "mine")
    tests = json.loads(RESULTS.read_text())["tests"]
    assert [s.name for s in subtests] == sorted(tests)
    for sub in subtests:
        assert sub.outcome is piglitresults.WORDS[tests[sub.name]["result"]], sub
        assert "__type__" not in sub.detail
    crashed = [s for s in subtests if s.outcome is SubtestOutcome.CRASH]
    assert crashed and all(s.seconds > 0 for s in subtests)
    astc = next(s for s in subtests if s.name.endswith("miptree-gles srgb-fp"))
    assert astc.detail.startswith("1/2 subtests pass: failing srgb decode full precision"), astc


def test_names_the_list_gives_that_the_profile_lacks_fail(tmp_path):
    out = tmp_path / "probe"
    (out / "piglit" / "results").mkdir(parents=True)
    shutil.copy(RESULTS, out / piglitresults.RESULTS)
    (out / piglitresults.SELECTION).write_text(json.dumps(
        {"profile": "quick_gl", "not_in_profile": ["spec@nonexistent@test"]}))
    last = piglitresults.judged(StepRun("mine", exit_code=0, out_dir=out), "mine")[-1]
    assert (last.name, last.outcome) == ("spec@nonexistent@test", SubtestOutcome.FAIL)


def test_no_results_file_is_one_failing_subtest_in_the_runners_words(tmp_path):
    said = "piglitrun: this runtime's piglit has no profile 'quick_nothing' (Fatal Error: ...)"
    (only,) = piglitresults.judged(StepRun("mine", exit_code=2, output=said, out_dir=tmp_path),
                                   "mine")
    assert only.outcome is SubtestOutcome.FAIL and only.detail.endswith(said)


def test_both_spellings_of_a_name_are_piglits_own():
    assert piglitrun.piglit_name("spec/!OpenGL ES 3.0/Foo\n") == "spec@!opengl es 3.0@foo"
    assert piglitrun.piglit_name("spec@arb_blend_func_extended@x") == (
        "spec@arb_blend_func_extended@x")


def choose(names, fraction, include=(), exclude=()):
    return piglitrun.chosen(names, argparse.Namespace(include=list(include),
                                                      exclude=list(exclude), fraction=fraction))


@given(st.lists(st.text(alphabet="abc@_", min_size=1, max_size=6), unique=True, max_size=60),
       st.integers(min_value=1, max_value=9))
def test_the_fractions_of_a_profile_partition_it(names, parts):
    """Every test in exactly one of the N parts, each part in the profile's order."""
    chosen = [choose(names, (k, parts)) for k in range(1, parts + 1)]
    assert sorted(t for part in chosen for t in part) == sorted(names)
    assert sum(len(part) for part in chosen) == len(names)
    for part in chosen:
        assert part == [t for t in names if t in set(part)]


def test_include_then_exclude_then_fraction():
    names = ["spec@a@gles2", "spec@a@gles3", "spec@b@gl", "spec@c@gles2-astc", "spec@d@es3"]
    assert choose(names, (1, 1), ["gles", "es3"], ["astc"]) == [
        "spec@a@gles2", "spec@a@gles3", "spec@d@es3"]
    assert choose(names, (2, 2), ["gles", "es3"], ["astc"]) == ["spec@a@gles3"]


def test_names_with_a_hash_go_to_piglit_as_one_exact_pattern_not_a_test_list():
    """piglit reads '#' in a test list as a comment; quick_shader has such names (trixie's
    `spec@arb_uniform_buffer_object@execution@shared-#column_major-...`)."""
    import re

    plain = ["spec@a@b", "spec@a@c"]
    assert piglitrun.selection(plain, "/out/list.txt") == ["--test-list", "/out/list.txt"]
    hashed = ["spec@ubo@shared-#column_major-mat2", "spec@a@b.c"]
    flag, pattern = piglitrun.selection(hashed, "/out/list.txt")
    assert flag == "-t"
    assert [name for name in hashed + ["spec@a@bxc", "spec@a@b.c2"]
            if re.search(pattern, name, re.IGNORECASE)] == hashed


# --- the runtime's profiles read on the host (bad input before any scenario runs) ---------------

PROFILES = FILES / "profiles"  # Debian 12's piglit's sanity.xml.gz, and a meta profile over it


def runtime_with_piglit(root: Path) -> Path:
    """A runtime's tree with piglit's tests/ folder as Debian lays it out."""
    folder = root / "usr" / "lib" / "x86_64-linux-gnu" / "piglit" / "tests"
    shutil.copytree(PROFILES, folder)
    (folder / "dynamic.py").write_text("profile = None  # a Python profile: known by running\n")
    (folder / "__init__.py").write_text("")
    return folder


def test_a_profile_is_found_as_piglit_finds_it_and_read_as_print_cmd_lists_it(tmp_path):
    from harness.workloads import piglitprofiles

    folder = runtime_with_piglit(tmp_path)
    assert piglitprofiles.tests_folder(tmp_path) == folder
    said = (FILES / "sanity-print-cmd.txt").read_text().split()  # `piglit print-cmd` on it
    for name in ("sanity", "tests/sanity", "sanity.py", "mine"):
        assert piglitprofiles.test_names(folder, name) == said, name
    assert piglitprofiles.test_names(folder, "dynamic") is None
    assert piglitprofiles.profiles(folder) == ["dynamic", "mine", "sanity"]
    assert piglitprofiles.tests_folder(tmp_path / "usr") is None


def test_what_the_runtimes_piglit_cannot_run_is_one_line_each(tmp_path):
    from harness.workloads import piglitprofiles

    runtime_with_piglit(tmp_path)
    (tmp_path / "none.txt").write_text("# mine\n\nspec@foo@bar\nspec/x/y\n")
    (tmp_path / "one.txt").write_text("spec@foo@bar\nfast_color_clear/all-colors\n")
    cases = [({"profile": "sanityy"}, "profile", "no profile 'sanityy' (did you mean sanity? "),
             ({"profile": "sanity", "test_list": str(tmp_path / "none.txt")}, "test_list",
              f"{tmp_path / 'none.txt'}:3: 'spec@foo@bar': names no test of profile sanity"),
             ({"profile": "sanity", "include": ["gles"]}, "include",
              "no test of profile sanity is left after include, exclude and fraction (of 30)"),
             ({"profile": "sanity", "test_list": str(tmp_path / "one.txt"), "fraction": "2/2"},
              "fraction", "(of 1)")]
    for settings, key, words in cases:
        ((where, why),) = piglitprofiles.problems(tmp_path, settings)
        assert where == key and words in why, (settings, why)
    for good in ({"profile": "sanity", "test_list": str(tmp_path / "one.txt")},
                 {"profile": "mine", "include": ["spec"], "fraction": "3/3"},
                 {"profile": "dynamic", "include": ["nothing"]}):  # known only by running
        assert piglitprofiles.problems(tmp_path, good) == [], good
    assert piglitprofiles.problems(tmp_path / "usr", {"profile": "sanityy"}) == []  # no piglit
