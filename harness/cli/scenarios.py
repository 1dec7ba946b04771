"""The commands that run scenarios: run, list, exec, goldens update, bench."""
import dataclasses
import functools
import datetime
import json
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..studies import bench, serverbench, testrate
from .. import matrix as matrix_mod, report
from ..matrix import declared_probes, expansion
from ..matrix.checks import nearest
from ..report import outdir
from ..scenario import paths as path_registry
from ..system import reaper
from ..run import preparation, runner
from ..judging import baseline as baseline_mod, deqprunner
from ..runtimes import recipes, chosen_toolset
from ..run import shards
from ..core import log
from ..core.errors import InputError, shown
from ..launch.families import registry
from ..system.interrupts import INTERRUPTS
from ..report import document as report_document
from ..launch.families.exec_files import CommandWorkload
from ..launch.lifecycle import LaunchContext, Workspace
from ..scenario.model import HOST, HOST_RUNTIME, LOCAL, Runtime, Scenario
from ..scenario.outcomes import Outcome
from ..scenario.probes import PROBES
from ..core.words import counted
from .codes import EXIT_FAILED, EXIT_NOT_STARTED, EXIT_OK, EXIT_TIMED_OUT, EXIT_USAGE
from .output import print_table, run_matrix
from . import exec_inputs


def listed(args, option: str) -> Optional[List[str]]:
    """A comma-separated option's names (None where it was not given)."""
    value = getattr(args, option, None)
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def in_matrix(loaded: matrix_mod.Matrix, option: str, names: Optional[List[str]],
              has: List[str]) -> None:
    """--runtimes/--probes name what the matrix has: one that it lacks is an error naming the
    nearest."""
    for name in names or []:
        if name not in has:
            noun = option.rstrip("s")
            raise InputError(f"--{option}: {loaded.source} has no {noun} {shown(name)} "
                             f"({nearest(name, has)}its "
                             f"{option}: {', '.join(has)}; --matrix FILE for another)")


def select(args) -> Tuple[matrix_mod.Matrix, List[Scenario]]:
    loaded = matrix_mod.load(args.matrix)
    wanted = listed(args, "paths")
    unknown = [p for p in wanted or [] if p not in path_registry.PATHS]
    if unknown:
        raise InputError(f"--paths: {expansion.unknown_path(unknown[0])}")
    runtimes, probes = listed(args, "runtimes"), listed(args, "probes")
    in_matrix(loaded, "runtimes", runtimes, list(dict.fromkeys(s.runtime.name
                                                               for s in loaded.scenarios)))
    in_matrix(loaded, "probes", probes, list(dict.fromkeys(s.probe for s in loaded.scenarios)))
    if getattr(args, "machine", None) is not None:
        loaded = matrix_mod.on_machine(loaded, args.machine)
    offscreen = loaded
    if listed(args, "displays"):
        loaded = matrix_mod.on_displays(loaded, listed(args, "displays") or [])
    chosen = loaded.select(wanted, getattr(args, "filter", None), runtimes, probes)
    if not chosen and loaded is not offscreen and offscreen.select(
            wanted, getattr(args, "filter", None), runtimes, probes):
        raise InputError(f"{loaded.source}: --displays {','.join(listed(args, 'displays') or [])}"
                         ": the scenarios asked for cannot present on a display (the host, "
                         "sandbox, container and flatpak paths' gl and vulkan probes can)")
    if not chosen:
        asked = " ".join(f"--{option} {shown(getattr(args, option))}" for option in
                         ("paths", "runtimes", "probes", "displays", "filter", "machine")
                         if getattr(args, option, None))
        raise InputError(f"{loaded.source}: no scenario matches {asked}"
                         f"{on_machine_ids(loaded, args, wanted, runtimes, probes)}"
                         f"{elsewhere(loaded, wanted)}")
    if getattr(args, "durations", None) is not None and getattr(args, "shard", None) is None:
        raise InputError("--durations: only with --shard K/N (it balances the parts)")
    if getattr(args, "shard", None) is not None:
        chosen = shards.select(chosen, shards.parse(args.shard), shards.durations(args.durations))
    return loaded, chosen


def on_machine_ids(loaded: matrix_mod.Matrix, args, paths, runtimes, probes) -> str:
    """A --filter without the @MACHINE that ids on a virtual GPU machine end in: the one that
    matches."""
    pattern, machine = getattr(args, "filter", None), getattr(args, "machine", None)
    if not pattern or not machine or machine == LOCAL or "@" in pattern:
        return ""
    suffixed = f"{pattern}@{machine}"
    if not loaded.select(paths, suffixed, runtimes, probes):
        return ""
    return f"; on --machine {machine} the ids end in @{machine}: --filter {shown(suffixed)}"


def elsewhere(loaded: matrix_mod.Matrix, wanted: Optional[List[str]]) -> str:
    """Where the paths asked for are, when this matrix has none of them: the shipped matrices that
    do."""
    absent = [path for path in wanted or [] if not any(s.path_id == path for s in loaded.scenarios)]
    if not absent:
        return ""
    found = [(shown_path(Path(m.source)), len(m.scenarios))
             for m in matrix_mod.shipped_with(absent)]
    if not found:
        return (f"; no shipped matrix has {', '.join(absent)}: write one ([matrix] paths = [...]) "
                "and pass --matrix")
    listed = ", ".join(f"{source} ({counted(count, 'scenario')})" for source, count in found)
    return (f"; it has no {' or '.join(absent)} scenario, the shipped {listed} "
            f"{'has' if len(found) == 1 else 'have'}: --matrix {found[0][0]}")


def shown_path(path: Path) -> str:
    """A path as a person would type it here: relative to the working folder where it is below
    it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def runtime_roots(values: List[str]) -> dict:
    roots = {}
    for value in values:
        name, _, root = value.partition("=")
        if not name or not os.path.isabs(root) or not os.path.isdir(root):
            raise InputError(f"--runtime-root: {shown(value)} must be NAME=/path/of/a/built/root")
        roots[name] = root
    return roots


# what a run writes in its --out
RUN_PRODUCTS = ("scenarios", "results.json", "junit.xml", "report.html", "harness.log",
                "results.csv", "failures.csv")
BENCH_PRODUCTS = ("round-*", "servers", "bench.json")


def cmd_run(args) -> int:
    with outdir.claimed(args.out, "--out", RUN_PRODUCTS):
        loaded, scenarios = select(args)
        known = deqprunner.load_any(args.baseline) if args.baseline else None
        if known is not None:
            baseline_mod.check_matches(known, [s.id for s in loaded.scenarios], loaded.source)
        toolset = chosen_toolset.load(args.toolset)
        options = runner.RunOptions(out_dir=args.out, jobs=args.jobs, retries=args.retries,
                                    goldens_dir=args.goldens,
                                    strict_runtimes=args.strict_runtimes,
                                    runtime_roots=runtime_roots(args.runtime_root), baseline=known,
                                    host_class=args.host_class,
                                    check_runtimes=functools.partial(
                                        declared_probes.check_built, loaded.source, scenarios))
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        with log.to_file(Path(args.out) / runner.LOG_FILE, also=log.THIRD_PARTIES):
            results = run_matrix(scenarios, toolset, options, "running")
            document = report_document.document(results, args.out, toolset, started, loaded.source,
                                                str(args.baseline) if args.baseline else None,
                                                options.prepared,
                                                options.machines, args.host_class, args.shard,
                                                args.host_name)
            report.write_all(args.out, document)
    finally:
        outdir.release(args.out)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(document["summary"].items()))
    print(f"{counted(len(results), 'scenario')}: {summary}. Report: {args.out / 'report.html'}")
    if INTERRUPTS.requested:
        print(f"gpu-harness: {INTERRUPTS.reason()}: reports written for what finished",
              file=sys.stderr)
        return INTERRUPTS.exit_code
    failed = [r for r in results if r.verdict.outcome.fails_run(r.scenario.expect.fails,
                                                                args.fail_on_unexpected_pass,
                                                                 args.fail_on_skip)]
    return EXIT_FAILED if failed else EXIT_OK


def cmd_list(args) -> int:
    _, scenarios = select(args)
    if args.json:
        print(json.dumps([s.to_dict() for s in scenarios], indent=2))
        return EXIT_OK
    for scenario in scenarios:
        expect = "pass" if scenario.expect.outcome == "pass" else f"fail ({scenario.expect.reason})"
        print(f"{scenario.id:<32} family={scenario.spec.family:<8} timeout={scenario.timeout_s:g}s "
              f"expect={expect}")
    return EXIT_OK


def exec_runtime(name: str, declared: List[Scenario], matrix: Optional[Path]) -> Runtime:
    """The runtime `exec --runtime` names: host, one the --matrix declares, or a shipped one."""
    runtimes = {HOST_RUNTIME: HOST, **{s.runtime.name: s.runtime for s in declared}}
    found = runtimes.get(name) or matrix_mod.shipped_runtime(name)
    if found is None:
        where = f"declared in {matrix}: {', '.join(runtimes)}" if matrix else HOST_RUNTIME
        near = nearest(name, [*runtimes, *recipes.recipe_names()])
        raise InputError(f"exec: unknown runtime {shown(name)} ({near}known: {where}; shipped: "
                         f"{', '.join(recipes.recipe_names())}; a tree of your own: declare it in "
                         "a matrix as "
                         f"[runtimes.NAME] kind = \"rootfs\", root = \"/path\" and pass --matrix)")
    return found


KEEP_PRODUCTS = ("*",)  # exec --keep's folder is the command's scenario folder, all of it


def cmd_exec(args) -> int:
    if not args.keep:
        return exec_command(args, *exec_scenario(args))
    with outdir.claimed(args.keep, "--keep", KEEP_PRODUCTS):  # refused input: nothing left there
        scenario, workload = exec_scenario(args)
    try:
        return exec_command(args, scenario, workload)
    finally:
        outdir.release(args.keep)


def exec_scenario(args) -> Tuple[Scenario, CommandWorkload]:
    """The scenario `exec` runs its command as, and the command with its files; bad input raises
    InputError."""
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise InputError("exec: no command given (usage: gpu-harness exec --path P -- CMD ARGS)")
    if args.path not in path_registry.PATHS:
        raise InputError(f"exec: {expansion.unknown_path(args.path)}")
    declared = matrix_mod.load(args.matrix).scenarios if args.matrix else []
    runtime = exec_runtime(args.runtime, declared, args.matrix)
    scenario = Scenario(id=f"{args.path}/{runtime.name}/exec", path_id=args.path, runtime=runtime,
                        probe="exec", timeout_s=args.timeout)
    # The matrix's settings for this path and runtime (env, gl_extension, kernel_args) hold for the
    # command too.
    same = next((s for s in declared if s.path_id == args.path and s.runtime.name == runtime.name),
                None)
    if same is not None:
        scenario = dataclasses.replace(same, id=scenario.id, probe="exec", timeout_s=args.timeout)
    family = registry.of_path(args.path)
    if not family.accepts(runtime):
        raise InputError(f"exec: path {args.path} cannot run in runtime {runtime.name} "
                         f"({runtime.kind}): "
                         f"{matrix_mod.pairing_rule(args.path)}")
    env = exec_inputs.environment(args.env)  # over the path's and the matrix's
    scenario = dataclasses.replace(scenario, env=tuple(sorted({**dict(scenario.env),
                                                               **env}.items())))
    return scenario, CommandWorkload(command=command, files=exec_inputs.inside_files(args.file,
                                                                                     args.path))


def exec_command(args, scenario: Scenario, workload: CommandWorkload) -> int:
    runtime = scenario.runtime
    # A runtime built from a recipe has no root until it is built (or found in the cache): without
    # this the command would run over the host's root under the runtime's name.
    ready = preparation.prepare_runtimes([scenario], runner.RunOptions(out_dir=Path(".")))
    prepared = ready.get(runtime.name)
    if prepared is not None and not prepared.root:
        print(f"gpu-harness: runtime {runtime.name} cannot be built: "
              f"{prepared.skip or prepared.failure}",
              file=sys.stderr)
        return EXIT_USAGE if prepared.skip else EXIT_FAILED
    scenario = preparation.with_runtime(scenario, ready)
    toolset = chosen_toolset.load(args.toolset)
    temp = runner.TempRoot()
    result_dir = args.keep or (temp.path / "result")
    try:
        workspace = Workspace(Path(result_dir), temp.scenario_dir())
        # Every family's workload reads the harness's own stdin as it comes (a guest's through a
        # stream).
        result = runner.launch(LaunchContext(scenario, toolset, workspace, workload,
                                             inherit_stdio=True))
    finally:
        temp.remove()
    if result.skipped:
        print(f"gpu-harness: path {args.path} cannot run here: {result.skipped}", file=sys.stderr)
        return EXIT_USAGE
    if result.fault:
        print(f"gpu-harness: {result.fault.describe()}", file=sys.stderr)
        return EXIT_FAILED
    if result.problem:
        print(f"gpu-harness: {result.problem}", file=sys.stderr)
    if result.exit is None:
        return EXIT_NOT_STARTED
    if result.exit.timed_out:
        print(f"gpu-harness: command timed out after {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMED_OUT
    code = result.exit.code if result.exit.code is not None else 128 + (result.exit.signal or 0)
    if code != 0:
        for hint in exec_inputs.failure_hints(scenario, workload.command or [], workload.files):
            print(f"gpu-harness: {hint}", file=sys.stderr)
    return code


def cmd_goldens_update(args) -> int:
    """Render each golden the matrix uses with a real run of its probe's reference path (llvmpipe
    where it renders); a probe checked against another's golden (kms: gl's) renders none of its
    own."""
    outdir.prepare(args.goldens, "--goldens")
    loaded = matrix_mod.load(args.matrix)
    probes = sorted({PROBES[s.probe_program].golden_name for s in loaded.scenarios})
    toolset = chosen_toolset.load(args.toolset)
    reference = [Scenario(id=f"{path_id}/{HOST_RUNTIME}/{probe}", path_id=path_id, runtime=HOST,
                          probe=probe)
                 for probe in probes for path_id in (path_registry.golden_renderer_for(probe).id,)]
    with reaper.temp_dir("gh-goldens-") as out:
        options = runner.RunOptions(out_dir=Path(out), compare_images=False)
        results = run_matrix(reference, toolset, options, "rendering goldens")
        bad = [r for r in results if r.verdict.outcome is not Outcome.PASS]
        for result in bad:
            print(f"gpu-harness: golden {result.scenario.probe} not updated: "
                  f"{result.verdict.reason}", file=sys.stderr)
        for result in results:
            if result in bad:
                continue
            target = args.goldens / f"{result.scenario.probe}.png"
            assert result.launch.image_path and result.report
            shutil.copyfile(result.launch.image_path, target)
            data = result.report.raw
            print(f"{target}: {data['size'][0]}x{data['size'][1]} md5 {data['pixels_md5']} "
                  f"({data['renderer']})")
    return EXIT_FAILED if bad else EXIT_OK


def cmd_bench(args) -> int:
    with outdir.claimed(args.out, "--out", BENCH_PRODUCTS):
        loaded, scenarios = select(args)
        toolset = chosen_toolset.load(args.toolset)
    try:
        return bench_rounds(args, scenarios, toolset)
    finally:
        outdir.release(args.out)


def bench_rounds(args, scenarios: List[Scenario], toolset) -> int:
    rounds = []
    machines = []
    for number in range(1, args.repeat + 1):
        options = runner.RunOptions(out_dir=args.out / f"round-{number}", jobs=args.jobs)
        started = datetime.datetime.now(datetime.timezone.utc)
        rounds.append(run_matrix(scenarios, toolset, options, f"round {number}/{args.repeat}"))
        rounds[-1] = (rounds[-1],
                      (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds())
        machines.append(options.machines)
    rows = bench.summarize([results for results, _ in rounds])
    matrix_wall = bench.median(wall for _, wall in rounds)
    title = (f"gpu-harness bench: {counted(len(scenarios), 'scenario')} x "
             f"{counted(len(rounds), 'run')}, median; "
             f"matrix wall {matrix_wall:.2f} s (-j {args.jobs})")
    print_table(bench.table(rows, title))
    emulation_costs = bench.emulation_costs([results for results, _ in rounds], rows)
    if emulation_costs:
        print_table(bench.emulation_table(emulation_costs))
    rates = testrate.rows([results for results, _ in rounds])
    if rates:
        print_table(testrate.table(rates))
    machine_rows = bench.machine_rows(machines, rows)
    if machine_rows:
        print_table(bench.machine_table(machine_rows))
    runtime_rows = bench.runtime_rows(sorted({s.runtime.recipe for s in scenarios
                                              if s.runtime.needs_build}))
    if runtime_rows:
        print_table(bench.runtime_table(runtime_rows))
    servers, servers_json = serverbench.section(toolset, args.servers, args.out / "servers",
                                                args.repeat) \
        if args.servers > 0 else (None, None)
    if isinstance(servers, str):
        print(servers)
    elif servers is not None:
        print_table(servers)
    (args.out / "bench.json").write_text(json.dumps(
        {"rounds": len(rounds), "jobs": args.jobs, "matrix_wall_s": [w for _, w in rounds],
         "rows": [dataclasses.asdict(r) for r in rows],
         "runtimes": [dataclasses.asdict(r) for r in runtime_rows], "servers": servers_json,
         "machines": [dataclasses.asdict(r) for r in machine_rows],
         "conformance": [dataclasses.asdict(r) for r in rates]}, indent=2) + "\n")
    return EXIT_OK
