"""Bad input through the real command line: every case exits 2 with exactly one stderr line
`gpu-harness: error: ...` that names what is wrong, and never a traceback."""
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from harness import cli
from harness.host import toolset
from harness.matrix import files as matrix_files

from .files import write
from .test_cli_output import folded_row, unfolded

# every value quoted in a message is cut; the rest is a path, a key and the known names
MAX_LINE = 700


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, **(env or {})})




def a_file(folder: Path) -> Path:
    return write(folder, "a-file", "x")


def listing(name: str, content) -> Callable[[Path], List[str]]:
    """`gpu-harness list --matrix FILE` with FILE written from content."""
    return lambda folder: ["list", "--matrix", str(write(folder, name, content))]


def toml_defaults(line: str) -> Callable[[Path], List[str]]:
    return listing("m.toml", f'[matrix]\npaths = ["software", "vtest-virgl"]\n[defaults]\n{line}\n')


def toml_runtime(lines: str) -> Callable[[Path], List[str]]:
    return listing("m.toml",
                   f'[matrix]\npaths = ["vtest-virgl"]\nruntimes = ["r"]\n[runtimes.r]\n{lines}\n')


def json_matrix(extra: dict) -> Callable[[Path], List[str]]:
    return listing("m.json", {"matrix": {"paths": ["software", "vtest-virgl"]}, **extra})


def doctor(content) -> Callable[[Path], List[str]]:
    return lambda folder: ["doctor", "--toolset", str(write(folder, "toolset.json", content))]


def manifest_with(bwrap: dict) -> dict:
    return {"schema": toolset.SCHEMA, "tools": {"bwrap": {"path": "/usr/bin/bwrap", **bwrap}}}


def report(content) -> Callable[[Path], List[str]]:
    def argv(folder: Path) -> List[str]:
        write(folder / "out", "results.json", content)
        return ["report", str(folder / "out")]
    return argv


SCENARIO = {"id": "software/host/gl", "path": "software", "outcome": "Pass", "reason": "ok",
            "wall_s": 0.1}
RESULTS = {"schema": "gpu-harness/results/v1", "wall_s": 1.0, "summary": {"Pass": 1},
           "toolset": {"source": "discovery", "tools": {}}, "scenarios": [SCENARIO]}


def results_with(**changes) -> dict:
    return {**RESULTS, **changes}


def scenario_with(**changes) -> dict:
    entry = {key: value for key, value in {**SCENARIO, **changes}.items() if value is not DROP}
    return results_with(scenarios=[entry])


DROP = object()


def pins_dir(content) -> Callable[[Path], List[str]]:
    return lambda folder: ["pins", "check", "--dir", str(write(folder / "pins", "thing.json",
                                                               content).parent)]


SRI = "sha256-" + "A" * 43 + "="
PIN = {"fetcher": "url", "url": "https://x/1.tar", "hash": SRI, "version": "1"}


def nix_matrix(expression: str) -> Callable[[Path], List[str]]:
    return listing("m.nix", expression)


def fixed(*argv: str) -> Callable[[Path], List[str]]:
    return lambda folder: list(argv)


def with_file(build: Callable[[Path], List[str]]) -> Callable[[Path], List[str]]:
    """argv built from the path of a plain file in the folder."""
    return lambda folder: build(a_file(folder))


@dataclass
class Case:
    name: str
    argv: Callable[[Path], List[str]]
    words: Tuple[str, ...]  # each must be in the error line


NOT_UTF8 = b'[matrix]\npaths = ["software"]\n# caf\xe9 \xff\n'
DEEP_JSON = b"[" * 100000
HUGE_INT = "1" * 5000
LONG = "x" * 5000

CASES = [
    # Files that are not UTF-8: each kind names the file.
    Case("matrix-toml-not-utf8", listing("m.toml", NOT_UTF8), ("m.toml: not UTF-8 text",
                                                               "byte 0xe9")),
    Case("matrix-json-not-utf8", listing("m.json", b'{"matrix": "\xff"}'),
         ("m.json: not UTF-8 text",)),
    Case("manifest-not-utf8", doctor(b'{"schema": "\xfe"}'), ("toolset.json: not UTF-8 text",)),
    Case("results-not-utf8", report(b'{"scenarios": ["\xc3\x28"]}'),
         ("results.json: not UTF-8 text",)),
    Case("pin-not-utf8", pins_dir(b'{"url": "\x80"}'), ("thing.json: not UTF-8 text",)),
    # Nested too deeply for the parsers (a RecursionError inside json/tomllib).
    Case("matrix-json-deep", listing("m.json", DEEP_JSON),
         ("m.json: not valid JSON: nested too deeply",)),
    Case("matrix-toml-deep", listing("m.toml", b"a = " + b"[" * 100000),
         ("m.toml: not valid TOML: nested too deeply",)),
    Case("manifest-deep", doctor(DEEP_JSON), ("toolset.json: not valid JSON: nested too deeply",)),
    Case("results-deep", report(b'{"scenarios": ' + DEEP_JSON),
         ("results.json: not valid JSON: nested too deeply",)),
    Case("pin-deep", pins_dir(b'{"url": ' + DEEP_JSON),
         ("thing.json: not valid JSON: nested too deeply",)),
    # An integer with more digits than Python converts (a ValueError, not a JSONDecodeError).
    Case("matrix-json-huge-int",
         listing("m.json",
                 '{"matrix": {"paths": ["software"]}, "defaults": {"timeout_s": %s}}' % HUGE_INT),
         ("m.json: not valid JSON: Exceeds the limit (4300 digits)",)),
    Case("matrix-toml-huge-int", toml_defaults(f"timeout_s = {HUGE_INT}"),
         ("m.toml: not valid TOML: Exceeds the limit (4300 digits)",)),
    # results.json of the wrong shape, given to `report`.
    Case("results-entry-not-object", report(results_with(scenarios=[1])),
         ("scenarios[0]: must be an object, not 1",)),
    Case("results-no-outcome", report(scenario_with(outcome=DROP)),
         ("scenarios[0].outcome: is missing or null",)),
    Case("results-no-path", report(scenario_with(path=DROP)),
         ("scenarios[0].path: is missing or null",)),
    Case("results-id-list", report(scenario_with(id=["a"])),
         ("scenarios[0].id: must be a string, not ['a']",)),
    Case("results-unknown-outcome", report(scenario_with(outcome="Passed")),
         ("'Passed' is not one of Pass, Fail",)),
    Case("results-reason-number", report(scenario_with(reason=3)),
         ("scenarios[0].reason: must be a string",)),
    Case("results-wall-string", report(scenario_with(wall_s="fast")),
         ("scenarios[0].wall_s: must be a number",)),
    Case("results-attempts-string", report(scenario_with(attempts="2")), ("scenarios[0].attempts",
                                                                          )),
    Case("results-checks-int", report(scenario_with(checks=5)),
         ("scenarios[0].checks: must be a list",)),
    Case("results-logs-list", report(scenario_with(logs=["a"])),
         ("scenarios[0].logs: must be an object",)),
    Case("results-phase-string", report(scenario_with(phases_s={"boot": "1s"})),
         ("phases_s.boot: must be a number",)),
    Case("results-no-summary", report({k: v for k, v in RESULTS.items() if k != "summary"}),
         ("summary: is missing or null (must be an object)",)),
    Case("results-tools-list", report(results_with(toolset={"tools": []})),
         ("toolset.tools: must be an object",)),
    Case("results-wall-overflow", report(json.dumps(RESULTS).replace('"wall_s": 1.0',
                                                                     '"wall_s": 1' + "0" * 400)),
         ("wall_s: must be a number",)),
    Case("results-lone-surrogate", report(json.dumps(scenario_with(reason="\ud800"))),
         ("cannot be written as UTF-8",)),
    # Output folders that cannot be written.
    Case("run-out-is-file", with_file(lambda f: ["run", "--out", str(f)]),
         ("--out", "a-file: is a file, not a folder")),
    Case("run-out-under-file", with_file(lambda f: ["run", "--out", str(f / "sub")]),
         ("--out", "a-file is a file, not a folder")),
    Case("run-out-in-proc", fixed("run", "--out", "/proc/gpu-harness-out"),
         ("--out /proc/gpu-harness-out: cannot create it",)),
    Case("bench-out-is-file", with_file(lambda f: ["bench", "--out", str(f)]),
         ("--out", "is a file, not a folder")),
    Case("bench-out-proc", fixed("bench", "--out", "/proc"),
         ("--out /proc: cannot write files in it",)),
    Case("goldens-into-file", with_file(lambda f: ["goldens", "update", "--goldens", str(f / "g")]),
         ("--goldens", "is a file, not a folder")),
    Case("exec-keep-file", with_file(lambda f: ["exec", "--path", "software", "--keep", str(f),
                                                "--", "true"]),
         ("--keep", "is a file, not a folder")),
    # Numbers: nan/inf/0/negative/huge timeouts and tolerances; counts on the command line.
    Case("timeout-nan", toml_defaults("timeout_s = nan"),
         ("defaults.timeout_s: must be positive, not nan",)),
    Case("timeout-inf", toml_defaults("timeout_s = inf"),
         ("defaults.timeout_s: must be at most 604800",)),
    Case("timeout-zero", toml_defaults("timeout_s = 0"),
         ("defaults.timeout_s: must be positive, not 0",)),
    Case("timeout-negative", toml_defaults("timeout_s = -5"),
         ("defaults.timeout_s: must be positive, not -5",)),
    Case("timeout-huge-override",
         listing("m.toml",
                 '[matrix]\npaths = ["software"]\n[[override]]\nmatch = "*"\ntimeout_s = 1e300\n'),
         ("override[0].timeout_s: must be at most",)),
    Case("fraction-nan", toml_defaults("tolerance = { fraction = nan }"),
         ("tolerance.fraction: must be within 0..1",)),
    Case("channel-huge", toml_defaults("tolerance = { channel = 99999999999999999999 }"),
         ("tolerance.channel: must be within 0..255",)),
    Case("run-jobs-0", fixed("run", "-j", "0"),
         ("run: argument -j/--jobs: must be at least 1, not 0",)),
    Case("bench-jobs-0", fixed("bench", "-j", "0"),
         ("bench: argument -j/--jobs: must be at least 1",)),
    Case("bench-repeat-0", fixed("bench", "--repeat", "0"),
         ("bench: argument --repeat: must be at least 1",)),
    Case("run-retries-negative", fixed("run", "--retries", "-1"),
         ("argument --retries: must be at least 0",)),
    Case("exec-timeout-0", fixed("exec", "--path", "software", "--timeout", "0", "--", "true"),
         ("--timeout", "'0'")),
    Case("exec-timeout-negative", fixed("exec", "--path", "software", "--timeout=-5", "--", "true"),
         ("--timeout", "'-5'")),
    Case("exec-timeout-nan", fixed("exec", "--path", "software", "--timeout", "nan", "--", "true"),
         ("--timeout: must be more than 0", "'nan'")),
    Case("exec-timeout-inf", fixed("exec", "--path", "software", "--timeout", "inf", "--", "true"),
         ("--timeout", "'inf'")),
    Case("exec-timeout-huge", fixed("exec", "--path", "software", "--timeout", "1e9", "--", "true"),
         ("--timeout", "at most 604800")),
    Case("exec-timeout-word", fixed("exec", "--path", "software", "--timeout", "soon", "--",
                                    "true"),
         ("--timeout: not a number: 'soon'",)),
    # A list or table where a string is expected, in every string field of a runtime.
    Case("description-list", toml_runtime('root = "/"\ndescription = ["a", "b"]'),
         ("runtimes.r.description: must be a string, not list ['a', 'b']",)),
    Case("description-table", toml_runtime('root = "/"\ndescription = { a = 1 }'),
         ("runtimes.r.description: must be a string, not table",)),
    Case("kind-list", toml_runtime('kind = ["rootfs"]\nroot = "/"'),
         ("runtimes.r.kind: must be a string, not list",)),
    Case("root-table", toml_runtime('root = { path = "/" }'),
         ("runtimes.r.root: must be a string, not table",)),
    # A rootfs runtime's root must be a directory that exists.
    Case("root-missing", toml_runtime('root = "/nonexistent/rootfs"'),
         ("runtimes.r.root: /nonexistent/rootfs does not exist",)),
    Case("root-is-file", lambda folder: toml_runtime(f'root = "{a_file(folder)}"')(folder),
         ("runtimes.r.root:", "a-file is not a directory")),
    Case("root-newline", toml_runtime('root = "/usr\\n--bind / /"'), ("runtimes.r.root:",
                                                                      "control character (\\n)")),
    Case("runtime-name-slash",
         listing("m.toml",
                 '[matrix]\npaths = ["vtest-virgl"]\nruntimes = ["a/b"]\n[runtimes."a/b"]\nroot = '
                 '"/"\n'),
         ("runtimes.'a/b': a runtime name is",)),
    # Environment names and values; arguments; golden names.
    Case("env-name-digit", toml_defaults('env = { 1X = "1" }'),
         ("defaults.env.1X: an environment variable name",)),
    Case("env-name-dash", toml_defaults('env = { "A-B" = "1" }'),
         ("defaults.env.A-B: an environment variable name",)),
    Case("env-name-space", toml_defaults('env = { "A B" = "1" }'),
         ("defaults.env.'A B': an environment variable",)),
    Case("env-value-newline", toml_defaults('env = { A = "1\\nB=2" }'),
         ("defaults.env.A:", "control character (\\n)")),
    Case("env-value-nul", json_matrix({"defaults": {"env": {"A": "x\u0000y"}}}), ("defaults.env.A:",
                                                                                  "NUL character")),
    Case("env-value-list", toml_defaults('env = { A = ["1"] }'),
         ("defaults.env.A: must be a string, not list",)),
    Case("probe-args-newline", toml_defaults('probe_args = ["--frames\\n2"]'),
         ("defaults.probe_args[0]:", "(\\n)")),
    Case("kernel-args-newline", toml_defaults('kernel_args = ["quiet\\ninit=/bin/sh"]'),
         ("defaults.kernel_args[0]:", "(\\n)")),
    Case("kernel-args-space", toml_defaults('kernel_args = ["quiet init=/bin/sh"]'),
         ("defaults.kernel_args[0]:", "whitespace outside double quotes")),
    Case("golden-newline", toml_defaults('golden = "gl\\n"'), ("defaults.golden:",
                                                               "control character")),
    Case("golden-path", toml_defaults('golden = "../../etc/passwd"'),
         ("defaults.golden: must be a plain name",)),
    Case("golden-dotdot", toml_defaults('golden = ".."'), ("defaults.golden: must be a plain name",
                                                           )),
    Case("reason-list", listing("m.toml",
                                '[matrix]\npaths = ["software"]\n[[override]]\nmatch = "*"\nexpect '
                                '= "fail"\n'
                                          'reason = ["x"]\n'),
         ("override[0].reason: must be a string",)),
    Case("key-with-newline", listing("m.toml", '[matrix]\npaths = ["software"]\n"a\\nb" = 1\n'),
         ("matrix.'a\\nb': unknown key",)),
    # Long values are cut in the message, with their full length.
    Case("long-path-cut", listing("m.json", {"matrix": {"paths": [LONG]}}),
         ("matrix.paths[0]: unknown path 'xxx",
                                                                             "…' (5000 chars)")),
    Case("long-env-cut", json_matrix({"defaults": {"env": {"A": LONG + "\n"}}}), ("defaults.env.A:",
                                                                                  "(5001 chars)")),
    Case("long-cli-paths-cut", fixed("list", "--paths", LONG), ("--paths: unknown path 'xxx",
                                                                "(5000 chars)")),
    # A misspelt name: the nearest known names first.
    Case("paths-misspelt", fixed("list", "--paths", "vtest-virgil"),
         ("--paths: unknown path 'vtest-virgil' (did you mean vtest-virgl, vtest-virgl-syncfd or "
          "vm-virgl? known: ",)),
    Case("exec-path-misspelt", fixed("exec", "--path", "vtest-virgil", "--", "true"),
         ("exec: unknown path 'vtest-virgil' (did you mean vtest-virgl,",)),
    Case("exec-runtime-misspelt", fixed("exec", "--path", "vtest-virgl", "--runtime", "trixi", "--",
                                        "true"),
         ("exec: unknown runtime 'trixi' (did you mean trixie",)),
    Case("machine-misspelt", fixed("list", "--machine", "virgl-gest"),
         ("--machine: unknown machine 'virgl-gest' (did you mean virgl-guest? known: local,",)),
    Case("matrix-path-misspelt", listing("m.toml", '[matrix]\npaths = ["flatpack-vtest"]\n'),
         ("matrix.paths[0]: unknown path 'flatpack-vtest' (did you mean flatpak-vtest,",)),
    Case("matrix-runtime-misspelt", listing("m.toml",
                                            '[matrix]\npaths = ["vtest-virgl"]\nruntimes = '
                                            '["bookwrm"]\n'),
         ("matrix.runtimes[0]: unknown runtime 'bookwrm' (did you mean bookworm",)),
    Case("matrix-probe-misspelt", listing("m.toml",
                                          '[matrix]\npaths = ["vtest-virgl"]\nprobes = '
                                          '["vulkn"]\n'),
         ("matrix.probes[0]: unknown probe 'vulkn' (did you mean vulkan? known: ",)),
    # exec's --file and --env.
    Case("exec-file-missing", fixed("exec", "--path", "vtest-virgl", "--file", "/nonexistent/x",
                                    "--", "true"),
         ("exec --file: '/nonexistent/x' is no file on this host",)),
    Case("exec-file-folder", lambda folder: ["exec", "--path", "vtest-virgl", "--file", str(folder),
                                             "--", "true"],
         ("exec --file: ", "is a folder (--file takes files)")),
    Case("exec-file-on-host", with_file(lambda f: ["exec", "--path", "software", "--file", str(f),
                                                   "--", "true"]),
         ("exec --file: software runs the command on this host, where it sees", "a-file as it is")),
    Case("exec-file-twice", with_file(lambda f: ["exec", "--path", "vtest-virgl", "--file", str(f),
                                                 "--file",
                                                 f"{f}:/run/gpu-harness/files/a-file", "--",
                                                 "true"]),
         ("would both be /run/gpu-harness/files/a-file (give one another: --file "
          "HOST_PATH:INSIDE_PATH)",)),
    Case("exec-file-inside-root", with_file(lambda f: ["exec", "--path", "vtest-virgl", "--file",
                                                       f"{f}:/", "--",
                                                       "true"]), ("INSIDE_PATH must name a file",)),
    Case("exec-file-comma", lambda folder: ["exec", "--path", "vtest-virgl", "--file",
                                            str(write(folder, "a,b", "x")), "--", "true"],
         ("exec --file: ", "has a ','",)),
    Case("exec-env-no-value", fixed("exec", "--path", "vtest-virgl", "--env", "GREETING", "--",
                                    "true"),
         ("exec --env: 'GREETING' must be NAME=VALUE",)),
    Case("exec-env-bad-name", fixed("exec", "--path", "vtest-virgl", "--env", "1X=2", "--", "true"),
         ("exec --env: '1X=2' must be NAME=VALUE",)),
    Case("exec-env-newline", fixed("exec", "--path", "vtest-virgl", "--env", "A=1\nB=2", "--",
                                   "true"),
         ("exec --env: the value of A contains a control character (\\n)",)),
    # Manifest entries of the wrong type.
    Case("manifest-version-int", doctor(manifest_with({"version": 8})),
         ("tools.bwrap: version: must be a string",)),
    Case("manifest-modules-dir-int", doctor(manifest_with({"extra": {"modules_dir": 1}})),
         ("tools.bwrap: extra.modules_dir: must be a string or null",)),
    Case("manifest-tool-name", doctor({"schema": toolset.SCHEMA,
                                       "tools": {"../x": {"path": "/bin/sh"}}}),
         ("tools.'../x': a tool name is",)),
    # Pins: values that become git/nix arguments; a url template with a field of its own.
    Case("pin-url-newline", pins_dir({**PIN, "url": "https://x\n--upload-pack=touch /tmp/p"}),
         ("thing.json: url:", "control character (\\n)")),
    Case("pin-template-field", pins_dir({**PIN, "url_template": "https://x/{version}/{arch}"}),
         ("url_template:", "{version} as its only field")),
    # The hostile client's path: a vtest path; a VM's hostile guest program is the matrix's.
    Case("security-path-no-socket", fixed("security", "fuzz", "--path", "software"),
         ("'software' is not a path that gives its apps a virgl vtest socket",)),
    Case("security-path-vm", fixed("security", "fuzz", "--path", "vm-virgl"),
         ("'vm-virgl' is not a path", "--matrix harness/data/security.toml --paths vm-virgl")),
]
NIX_CASES = [
    Case("nix-undefined", nix_matrix("x"), ("m.nix: nix-instantiate failed: undefined variable 'x'",
                                            )),
    Case("nix-syntax", nix_matrix("{ a = 1 +; }"),
         ("nix-instantiate failed: syntax error, unexpected ';'",)),
    Case("nix-throw", nix_matrix('let f = x: throw "no matrix here"; in f 1'),
         ("nix-instantiate failed: no matrix here",)),
]


def assert_one_error_line(done: subprocess.CompletedProcess, words) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("gpu-harness: error: "), line
    assert len(line) < MAX_LINE, line
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    assert_one_error_line(run_cli(*case.argv(tmp_path)), case.words)


@pytest.mark.skipif(not shutil.which("nix-instantiate"),
                    reason="needs nix-instantiate (apt-get install nix-bin)")
@pytest.mark.parametrize("case", NIX_CASES, ids=[case.name for case in NIX_CASES])
def test_nix_error_is_the_error_line(case, tmp_path):
    line = assert_one_error_line(run_cli(*case.argv(tmp_path)), case.words)
    assert " at /" not in line and "|" not in line and "show-trace" not in line


ENDLESS = ("let loop = n: f: builtins.foldl' (a: b: f a) 0 (builtins.genList (x: x) n); "
           "in loop 10000 (a: loop 10000 (b: loop 10000 (c: c + 1)))")


def evaluators_of(path: Path) -> List[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not shutil.which("nix-instantiate"),
                    reason="needs nix-instantiate (apt-get install nix-bin)")
def test_an_endless_nix_evaluation_is_killed_and_one_line(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "endless.nix", ENDLESS)
    monkeypatch.setattr(matrix_files, "NIX_TIMEOUT_S", 1.5)
    started = time.monotonic()
    assert cli.main(["list", "--matrix", str(path)]) == 2
    assert time.monotonic() - started < 30
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"gpu-harness: error: {path}: Nix evaluation did not finish within 1.5 s (an "
                     "endless loop?)"]
    # nix-instantiate ignores SIGTERM: it was SIGKILLed, and reaped
    assert evaluators_of(path) == []


def broken_manifest(tmp_path: Path) -> Path:
    not_executable = write(tmp_path, "bin/bwrap", "#!/bin/sh\n")
    not_executable.chmod(0o644)
    discovered = toolset.discover().to_dict()
    discovered["tools"]["python3"] = {"path": str(tmp_path / "missing" / "python3"),
                                      "version": "3.11", "extra": {}}
    discovered["tools"]["bwrap"] = {"path": str(not_executable), "version": "0.8.0", "extra": {}}
    discovered["tools"]["podman"] = {"path": None, "version": None, "extra": {}}
    return write(tmp_path, "toolset.json", discovered)


def test_a_manifest_binary_that_is_missing_or_not_executable_counts_as_not_found(tmp_path):
    loaded = toolset.load_manifest(broken_manifest(tmp_path))
    assert not loaded.found("python3") and not loaded.found("bwrap")
    assert loaded.missing(["python3", "bwrap"]) == ["python3", "bwrap"]
    assert loaded.why_missing("python3") == (f"python3 (manifest path {tmp_path}/missing/python3 "
                                             "does not exist)")
    assert loaded.why_missing("bwrap") == (f"bwrap (manifest path {tmp_path}/bin/bwrap is not "
                                           "executable)")
    # path null: the install hint as before
    assert loaded.why_missing("podman") == "podman (install podman)"
    assert loaded.to_dict()["tools"]["python3"]["problem"].endswith("does not exist")
    assert "problem" not in toolset.discover().to_dict()["tools"]["python3"]


def test_doctor_shows_a_broken_manifest_binary_as_not_found(tmp_path):
    manifest = broken_manifest(tmp_path)
    done = run_cli("doctor", "--toolset", str(manifest), "--json")
    assert done.returncode == 0, done.stderr
    tools = json.loads(done.stdout)["tools"]
    assert tools["python3"]["problem"] == f"manifest path {tmp_path}/missing/python3 does not exist"
    assert tools["bwrap"]["problem"] == f"manifest path {tmp_path}/bin/bwrap is not executable"
    table = run_cli("doctor", "--toolset", str(manifest), env={"COLUMNS": "400"})
    assert table.returncode == 0, table.stderr
    why = f"missing bwrap (manifest path {tmp_path}/bin/bwrap is not executable)"
    # folded in its column
    assert unfolded(why) in unfolded(folded_row(table.stdout, "vtest-virgl")[3]), table.stdout
