"""The pytest plugin: a project's own tests run its program through the harness's paths as real
scenarios.

Installed with the package (entry point pytest11: gpu_harness). The fixture ``gpu_harness`` runs a
command (``gpu_harness.run(argv, path=P, runtime="host", **command_keys)``: a declared ``command``
probe, checked by the matrix parser) and returns a HarnessResult; ``result.check()`` makes the
verdict the test's. The marker ``gpu_harness_matrix(FILE)`` and the fixture ``gpu_harness_scenario``
run a test once per scenario of a matrix file, the verdict being the test's. Harness modules
beyond the nouns are imported when a test first needs them: a session that does not use the
plugin pays nothing for it."""
import datetime
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import pytest

from .core.errors import InputError
from .run.plugin_requests import (MARKER, MatrixRequest, command_declaration, load_matrix,
                                  matrix_request, probe_name)
from .scenario.model import HOST_RUNTIME, LOCAL
from .scenario.outcomes import Outcome, Subtest

if TYPE_CHECKING:
    from .judging.baseline import Baseline
    from .launch.lifecycle import Prepared
    from .scenario.model import Scenario
    from .run.runner import RunOptions
    from .judging.scenario_result import ScenarioResult
    from .host.toolset import Toolset

SCENARIO_FIXTURE = "gpu_harness_scenario"
LOG = logging.getLogger("gpu_harness")


# --- what a test gets back -----------------------------------------------------------------------

@dataclass(frozen=True)
class HarnessResult:
    """One scenario as the harness judged it, and where its files are."""

    scenario_id: str
    path: str
    runtime: str
    outcome: Outcome
    reason: str
    failure_kind: Optional[str] = None
    # what the gl scene before the command rendered with ("" where nothing reported)
    renderer: str = ""
    subtests: Tuple[Subtest, ...] = ()
    # each step's output tail, by step (subtest) name
    outputs: Mapping[str, str] = field(default_factory=dict)
    logs: Mapping[str, Path] = field(default_factory=dict)  # each step's whole output, by step name
    probe_log: Optional[Path] = None  # the probe's own log (what ran before and around the steps)
    picture: Optional[Path] = None  # the picture the command declared, where it wrote one
    result_dir: Path = Path()  # the scenario's folder (as `gpu-harness run` writes it)
    run_dir: Path = Path()  # the run's folder: results.json, report.html, junit.xml, scenarios/
    required: bool = False  # its path is required here (--gpu-harness-require): a Skip fails

    @property
    def passed(self) -> bool:
        """It rendered and every check passed (a Flake: on a retry). Never true for a Skip."""
        return self.outcome in (Outcome.PASS, Outcome.FLAKE)

    @property
    def output(self) -> str:  # the command's output tail (the first step's)
        return next(iter(self.outputs.values()), "")

    @property
    def log(self) -> Optional[Path]:  # the command's whole output (the first step's log file)
        return next(iter(self.logs.values()), None)

    def __str__(self) -> str:
        return f"{self.scenario_id}: {self.outcome}: {self.reason}"

    def skip_if_skipped(self) -> "HarnessResult":
        """A Skip skips the test (fails it where the path is required); else the result."""
        if self.outcome is Outcome.SKIP:
            if self.required:
                pytest.fail(f"{self.scenario_id} is required here but skipped: {self.reason}",
                            pytrace=False)
            pytest.skip(f"{self.scenario_id}: {self.reason}")
        return self

    def check(self) -> "HarnessResult":
        """The verdict as the test's: Pass and Flake return the result; Skip skips; ExpectedFail
        xfails; Fail and UnexpectedPass fail the test with the harness's reason."""
        self.skip_if_skipped()
        if self.outcome is Outcome.EXPECTED_FAIL:
            pytest.xfail(f"{self.scenario_id}: {self.reason}")
        if not self.passed:
            kind = f" [{self.failure_kind}]" if self.failure_kind else ""
            pytest.fail(f"{self.scenario_id}: {self.outcome}{kind}: {self.reason}\n  files: "
                        f"{self.result_dir}",
                        pytrace=False)
        return self


def probe_out(result: "ScenarioResult") -> Path:
    """The probe's output folder on the host: the steps' logs, the pictures they made."""
    from .launch.lifecycle import Workspace

    given = result.launch.artifacts.get("probe_out")
    return Path(given) if given else Workspace(result.result_dir, Path()).probe_out


def step_files(result: "ScenarioResult") -> Tuple[Dict[str, str], Dict[str, Path]]:
    """Each step's output tail and log file, from the workload probe's report."""
    folder, reported = probe_out(result), result.report.raw.get("steps") if result.report else None
    steps = [step for step in reported if isinstance(step, dict)] if isinstance(reported,
                                                                                list) else []
    outputs = {str(step.get("name", "?")): str(step.get("output", "")) for step in steps}
    logs = {str(step.get("name", "?")): folder / step["log"] for step in steps
            if isinstance(step.get("log"), str) and (folder / step["log"]).is_file()}
    return outputs, logs


def picture_of(result: "ScenarioResult") -> Optional[Path]:
    """The picture a command declared (its `picture` key), where it wrote one."""
    from .workloads.command import KIND as COMMAND, picture_on_host

    declared = result.scenario.declared
    named = declared.settings.get("picture") if declared and declared.kind == COMMAND.name else None
    picture = picture_on_host(named, probe_out(result)) if isinstance(named, str) else None
    return picture if picture is not None and picture.is_file() else None


def harness_result(result: "ScenarioResult", run_dir: Path,
                   required: FrozenSet[str]) -> HarnessResult:
    scenario, verdict = result.scenario, result.verdict
    outputs, logs = step_files(result)
    probe_log = result.launch.logs.get("probe")
    return HarnessResult(
        scenario_id=scenario.id, path=scenario.path_id, runtime=scenario.runtime.name,
                         outcome=verdict.outcome,
        reason=verdict.reason, failure_kind=str(verdict.failure_kind) if verdict.failure_kind
                         else None,
        renderer=result.report.renderer if result.report else "", subtests=tuple(verdict.subtests),
        outputs=outputs, logs=logs, probe_log=Path(probe_log) if probe_log
                         and os.path.isfile(probe_log) else None,
        picture=picture_of(result), result_dir=result.result_dir, run_dir=run_dir,
        required=(scenario.path_id in required
                  or (scenario.machine != LOCAL
                      and f"{scenario.path_id}@{scenario.machine}" in required)))


def required_paths(value: Optional[str]) -> FrozenSet[str]:
    """--gpu-harness-require (else $GPU_HARNESS_REQUIRE): comma-separated paths (path@machine
    too)."""
    text = os.environ.get("GPU_HARNESS_REQUIRE", "") if value is None else value
    return frozenset(part.strip() for part in text.split(",") if part.strip())


# --- running --------------------------------------------------------------------------------------

@dataclass
class Run:
    """One run folder: its scenarios' results so far, written as results.json and report.html."""

    folder: Path
    source: str
    started: datetime.datetime
    baseline: Optional["Baseline"] = None
    results: Dict[str, "ScenarioResult"] = field(default_factory=dict)
    # what its runs did before their scenarios
    prepared: List["Prepared"] = field(default_factory=list)


class Plugin:
    """The session's state: options, the toolset, matrices read at collection, results, runs."""

    def __init__(self, config: pytest.Config) -> None:
        self.out_option: Optional[str] = config.getoption("gpu_harness_out")
        self.toolset_option: Optional[str] = config.getoption("gpu_harness_toolset")
        self.retries: int = config.getoption("gpu_harness_retries")
        self.required = required_paths(config.getoption("gpu_harness_require"))
        # pytest-xdist: a folder per worker
        worker = getattr(config, "workerinput", {}).get("workerid")
        self.worker: Optional[str] = str(worker) if worker else None
        # usage problems found while collecting: one pytest usage error
        self.problems: List[str] = []
        self.matrices: Dict[MatrixRequest, Tuple[List["Scenario"], Optional["Baseline"]]] = {}
        self.runs: Dict[Path, Run] = {}
        self.out: Optional[Path] = None
        self._toolset: Optional["Toolset"] = None
        self._counts: Dict[str, int] = {}

    def out_dir(self, factory: pytest.TempPathFactory) -> Path:
        if self.out is None:
            base = (Path(self.out_option).absolute() if self.out_option
                    else factory.mktemp("gpu-harness"))
            self.out = base / self.worker if self.worker and self.out_option else base
        return self.out

    @property
    def toolset(self) -> "Toolset":
        from .runtimes import chosen_toolset

        if self._toolset is None:
            self._toolset = chosen_toolset.load()
        return self._toolset

    def matrix(self, request: MatrixRequest) -> Tuple[List["Scenario"], Optional["Baseline"]]:
        if request not in self.matrices:
            self.matrices[request] = load_matrix(request)
        return self.matrices[request]

    def folder_for(self, base: Path, test: str) -> Path:
        """A fresh run folder for one gpu_harness.run call of a test."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", test).strip("_")[-120:] or "test"
        self._counts[slug] = self._counts.get(slug, 0) + 1
        return base / slug / str(self._counts[slug])

    def run(self, scenario: "Scenario", folder: Path, source: str,
            baseline: Optional["Baseline"] = None) -> HarnessResult:
        """The scenario through the runner into the run folder; its results.json and report.html
        anew."""
        from .run import runner

        run = self.runs.setdefault(folder, Run(folder, source,
                                               datetime.datetime.now(datetime.timezone.utc),
                                               baseline))
        options = runner.RunOptions(out_dir=folder, retries=self.retries, baseline=baseline)
        result = runner.run([scenario], self.toolset, options)[0]
        run.results[scenario.id] = result
        self.write(run, options)
        return harness_result(result, folder, self.required)

    def write(self, run: Run, options: "RunOptions") -> None:
        from . import report
        from .report import document as report_document

        run.prepared += [step for step in options.prepared
                         if step.step not in {s.step for s in run.prepared}]
        doc = report_document.document(list(run.results.values()), run.folder, self.toolset,
                                       run.started, run.source,
                                       run.baseline.source if run.baseline else None, run.prepared)
        report.write_all(run.folder, doc)


class GpuHarness:
    """The gpu_harness fixture: runs a program of the test's through a path as a scenario."""

    def __init__(self, plugin: Plugin, out: Path, test: str, module: Path) -> None:
        self._plugin, self._out, self._test, self._module = plugin, out, test, module

    def run(self, argv: Sequence[str], *, path: str, runtime: str = HOST_RUNTIME,
            name: Optional[str] = None,
            settings: Optional[Mapping[str, Any]] = None,
            runtimes: Optional[Mapping[str, Any]] = None,
            **command_keys: Any) -> HarnessResult:
        """`argv` through `path` in `runtime` (host, a shipped one, or one of `runtimes`:
        [runtimes.NAME]
        tables) as a command probe named `name` (default: the program's) with `command_keys`
        (pass_pattern, env, timeout_s, packages, files, picture, golden, ...; a relative file name
        is read beside the test's module, as a matrix's beside the matrix); `settings` are the
        matrix's [defaults]. A declaration the harness rejects fails the test with its lines."""
        from .matrix import expand

        declaration = command_declaration(argv, path, runtime, name or probe_name(argv),
                                          command_keys, settings, runtimes)
        try:
            scenarios, problem = expand(declaration, str(self._module)).scenarios, ""
        except InputError as exc:
            scenarios, problem = [], str(exc)
        # outside the except: the test's failure is the harness's lines, with nothing chained
        if problem:
            pytest.fail(f"gpu_harness.run: {problem}", pytrace=False)
        return self._plugin.run(scenarios[0], self._plugin.folder_for(self._out, self._test),
                                str(self._module))


# --- pytest's hooks and fixtures ------------------------------------------------------------------

PLUGIN = pytest.StashKey[Plugin]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpu_harness", "gpu-harness: programs through GPU paths as scenarios")
    group.addoption("--gpu-harness-out", metavar="DIR", default=None,
                    help="where runs go (scenarios/, results.json, report.html); default: a pytest "
                         "temp folder")
    group.addoption("--gpu-harness-toolset", metavar="FILE", default=None,
                    help="the toolset manifest (default: $GPU_HARNESS_TOOLSET, else what is "
                         "installed)")
    group.addoption("--gpu-harness-retries", metavar="N", type=int, default=0,
                    help="attempts after a failed one; a Fail then a Pass is a Flake (default 0)")
    group.addoption("--gpu-harness-require", metavar="PATHS", default=None,
                    help="comma-separated paths whose Skip is a failure (default: "
                         "$GPU_HARNESS_REQUIRE)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(file, paths=None, filter=None, baseline=None): "
                                       "run the test once per scenario of the matrix file "
                                       f"(fixture {SCENARIO_FIXTURE})")
    plugin = config.stash[PLUGIN] = Plugin(config)
    from .core import log

    log.quiet_third_parties()  # qemu.qmp's records go to a run's log, not between a session's lines
    if plugin.retries < 0:
        raise pytest.UsageError("--gpu-harness-retries: must be 0 or more")
    try:  # a bad option is a usage error now, not each test's failure later
        if plugin.out_option:
            from .report import outdir
            outdir.prepare(Path(plugin.out_option), "--gpu-harness-out")
        if plugin.toolset_option:
            from .runtimes import chosen_toolset
            plugin._toolset = chosen_toolset.load(Path(plugin.toolset_option))
    except InputError as exc:
        raise pytest.UsageError(*exc.problems) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if SCENARIO_FIXTURE not in metafunc.fixturenames:
        return
    plugin = metafunc.config.stash[PLUGIN]
    marker = metafunc.definition.get_closest_marker(MARKER)
    try:
        if marker is None:
            raise InputError(f"{metafunc.definition.nodeid}: uses {SCENARIO_FIXTURE} but has no "
                             f"@pytest.mark.{MARKER}(\"matrix.toml\")")
        request = matrix_request(marker.args, marker.kwargs, metafunc.definition.path.parent)
        chosen, _ = plugin.matrix(request)
    except InputError as exc:  # said once, as a usage error, when collection ends
        plugin.problems += [line for line in exc.problems if line not in plugin.problems]
        metafunc.parametrize(SCENARIO_FIXTURE, [], indirect=True)
        return
    metafunc.parametrize(SCENARIO_FIXTURE, [(request, s.id) for s in chosen], ids=[s.id
                                                                                   for s in chosen],
                         indirect=True)


def pytest_collection_modifyitems(config: pytest.Config) -> None:
    problems = config.stash[PLUGIN].problems
    if problems:
        raise pytest.UsageError(*problems)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A matrix scenario's verdict is its test's, before the test's own body runs."""
    result = getattr(item, "funcargs", {}).get(SCENARIO_FIXTURE)
    if isinstance(result, HarnessResult):
        result.check()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN, None)
    if plugin is not None and plugin.runs:
        count = sum(len(run.results) for run in plugin.runs.values())
        terminalreporter.write_line(f"gpu-harness: {count} scenario(s) in {len(plugin.runs)} "
                                    f"run(s) under {plugin.out} "
                                    "(each run: results.json, report.html)")


@pytest.fixture(scope="session")
def gpu_harness_out(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the session's runs go to (--gpu-harness-out, else a pytest temp folder)."""
    return request.config.stash[PLUGIN].out_dir(tmp_path_factory)


@pytest.fixture
def gpu_harness(request: pytest.FixtureRequest, gpu_harness_out: Path) -> GpuHarness:
    """Runs the test's program through a path: gpu_harness.run(argv, path=P, ...) ->
    HarnessResult."""
    return GpuHarness(request.config.stash[PLUGIN], gpu_harness_out, request.node.nodeid,
                      request.node.path)


@pytest.fixture
def gpu_harness_scenario(request: pytest.FixtureRequest, gpu_harness_out: Path) -> HarnessResult:
    """The scenario of @pytest.mark.gpu_harness_matrix this test instance stands for, run (once a
    session, however many tests ask): a Skip skips the test; its verdict is checked before the
    body."""
    plugin, param = request.config.stash[PLUGIN], getattr(request, "param", None)
    if param is None:
        pytest.fail(f"{SCENARIO_FIXTURE} is given by @pytest.mark.{MARKER}(FILE) through test "
                    "parametrization",
                    pytrace=False)
    matrix_req, scenario_id = param
    (chosen,
     known), folder = plugin.matrix(matrix_req), gpu_harness_out / f"matrix-{matrix_req.slug}"
    done = plugin.runs[folder].results.get(scenario_id) if folder in plugin.runs else None
    result = harness_result(done, folder, plugin.required) if done is not None else \
        plugin.run(next(s for s in chosen if s.id == scenario_id), folder, str(matrix_req.file),
                   known)
    return result.skip_if_skipped()
