"""The `gpu-harness` command line."""
import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from . import __version__, bench, matrix as matrix_mod, paths as path_registry, reaper, report, runner
from . import outdir, pins as pins_mod, process, runtimes as runtimes_mod, serverbench, toolset as toolset_mod
from . import baseline as baseline_mod
from .errors import InputError, shown
from .lifecycle import LaunchContext, Workload, Workspace
from .interrupts import INTERRUPTS
from .outcomes import Outcome

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_STARTED = 127  # as a shell says of a command it cannot run


class Parser(argparse.ArgumentParser):
    def error(self, message):
        command = self.prog.replace("gpu-harness", "", 1).strip()
        raise InputError(f"{command}: {message}" if command else message)


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def seconds(text: str) -> float:
    """A timeout: a finite number of seconds, more than 0 and at most a week."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 0 < value <= matrix_mod.MAX_TIMEOUT_S:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {matrix_mod.MAX_TIMEOUT_S:g} "
                                         f"seconds (a week), not {shown(text)}")
    return value


def days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 0 <= value <= 36500:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number of days from 0 to 36500, not {shown(text)}")
    return value


def add_selection(parser) -> None:
    parser.add_argument("--matrix", type=Path, help="matrix file (.toml, .json, .nix); default: the shipped one")
    parser.add_argument("--paths", help="only these paths (comma-separated)")
    parser.add_argument("--filter", help="only scenario ids matching this glob, e.g. 'vtest-*'")
    parser.add_argument("--toolset", type=Path,
                        help="toolset.json manifest, or runtime:NAME (host-side programs from a built runtime); "
                             "default: discover on this host")


def build_parser() -> Parser:
    parser = Parser(prog="gpu-harness", description="Does GPU rendering really work through this path?")
    parser.add_argument("--version", action="version", version=f"gpu-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run the matrix and write reports")
    add_selection(run)
    run.add_argument("--out", type=Path, default=Path("gpu-harness-out"), help="output folder")
    run.add_argument("-j", "--jobs", type=positive_int, default=2, help="scenarios run in parallel")
    run.add_argument("--retries", type=non_negative_int, default=0,
                     help="re-run a failed scenario up to N times (Flake)")
    run.add_argument("--goldens", type=Path, default=runner.GOLDENS_DIR)
    run.add_argument("--runtime-root", action="append", default=[], metavar="NAME=PATH",
                     help="use this already built root for runtime NAME (the Nix checks pass their store paths)")
    run.add_argument("--strict-runtimes", action="store_true",
                     help="a runtime whose lock has drifted from the archive is an error (exit 2)")
    run.add_argument("--fail-on-skip", action="store_true",
                     help="a Skip fails the run too (for CI and Nix checks, where every chosen path must run)")
    run.add_argument("--baseline", type=Path, help="known failures and flakes (TOML; `baseline update` writes one)")
    run.add_argument("--fail-on-unexpected-pass", action="store_true",
                     help="a baseline's known failure that passes fails the run too")

    listing = sub.add_parser("list", help="print the expanded scenarios")
    add_selection(listing)
    listing.add_argument("--json", action="store_true")

    doctor = sub.add_parser("doctor", help="what was found, its version, and which paths can run")
    doctor.add_argument("--toolset", type=Path)
    doctor.add_argument("--json", action="store_true")

    execute = sub.add_parser("exec", help="run your own command through a path")
    execute.add_argument("--path", required=True, help="path id, e.g. vtest-virgl")
    execute.add_argument("--runtime", default="host", help="runtime name from --matrix (default: host)")
    execute.add_argument("--matrix", type=Path)
    execute.add_argument("--toolset", type=Path)
    execute.add_argument("--timeout", type=seconds, default=3600.0)
    execute.add_argument("--keep", type=Path, help="keep the rendered configs and logs in this folder")
    execute.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")

    goldens = sub.add_parser("goldens", help="manage golden images")
    goldens_sub = goldens.add_subparsers(dest="goldens_command", required=True, parser_class=Parser)
    update = goldens_sub.add_parser("update", help="render goldens with a real run of the software path")
    update.add_argument("--matrix", type=Path)
    update.add_argument("--toolset", type=Path)
    update.add_argument("--goldens", type=Path, default=runner.GOLDENS_DIR)

    runtimes_cmd = sub.add_parser("runtimes", help="the shipped runtimes: pinned Debian root filesystems")
    runtimes_sub = runtimes_cmd.add_subparsers(dest="runtimes_command", required=True, parser_class=Parser)
    runtimes_sub.add_parser("list", help="each runtime: lock, Mesa/libc/python, size, built or not")
    for name, text in (("build", "build (or find in the cache) runtimes from their locks"),
                       ("lock", "build from the archive as it is now and rewrite the lock")):
        one = runtimes_sub.add_parser(name, help=text)
        one.add_argument("names", nargs="+", help="runtime names (see `runtimes list`)")
        if name == "build":
            one.add_argument("--strict", action="store_true", help="a drifted lock is an error (exit 2)")
    image = runtimes_sub.add_parser("image", help="write a runtime (built if need be) as a container image: a "
                                                  "docker-archive, gzip-compressed if FILE ends in .gz")
    image.add_argument("name", help="runtime name (see `runtimes list`)")
    image.add_argument("--out", type=Path, required=True, metavar="FILE", help="e.g. trixie.tar.gz")

    pins_cmd = sub.add_parser("pins", help="the Nix layer's source pins (nix/pins/*.json)")
    pins_sub = pins_cmd.add_subparsers(dest="pins_command", required=True, parser_class=Parser)
    for name, text in (("list", "print the pins"), ("check", "validate every pin file (exit 2 on a bad one)")):
        one = pins_sub.add_parser(name, help=text)
        one.add_argument("--dir", type=Path, default=pins_mod.PINS_DIR, help="pins folder (default: nix/pins)")
    pin_update = pins_sub.add_parser("update", help="re-fetch pins and rewrite their hashes; prints what changed")
    pin_update.add_argument("names", nargs="*", help="pins to update (default: all)")
    pin_update.add_argument("--rev", help="git pins: move to this tag/commit (default: newest tag_prefix tag)")
    pin_update.add_argument("--version", dest="pin_version", help="url pins: move to this version")
    pin_update.add_argument("--dir", type=Path, default=pins_mod.PINS_DIR, help="pins folder (default: nix/pins)")

    rebuild = sub.add_parser("report", help="rebuild junit.xml and report.html from DIR/results.json")
    rebuild.add_argument("dir", type=Path)

    diff = sub.add_parser("diff", help="what changed between two runs; exit 1 on a regression")
    diff.add_argument("old", type=Path, help="result folder or results.json")
    diff.add_argument("new", type=Path, help="result folder or results.json")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.add_argument("--html", type=Path, metavar="FILE", help="also write the changes as an HTML page")
    diff.add_argument("--fps-factor", type=factor, metavar="X",
                      help="an fps change counts when fps moved by more than this factor, either way "
                           "(default: 10, beyond the noise of a busy machine)")

    baseline = sub.add_parser("baseline", help="known failures and flakes for run --baseline")
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True, parser_class=Parser)
    baseline_update = baseline_sub.add_parser("update", help="write a baseline from a run's failures and flakes")
    baseline_update.add_argument("--from", dest="source", type=Path, required=True,
                                 help="result folder or results.json")
    baseline_update.add_argument("--out", type=Path, required=True,
                                 help="baseline file: rewritten; its entries still needed keep their reasons")

    bench_cmd = sub.add_parser("bench", help="time every phase of the matrix, several runs, as a table")
    add_selection(bench_cmd)
    bench_cmd.add_argument("--repeat", type=positive_int, default=5)
    bench_cmd.add_argument("--out", type=Path, default=Path("gpu-harness-bench"))
    bench_cmd.add_argument("-j", "--jobs", type=positive_int, default=1)
    bench_cmd.add_argument("--servers", type=int, default=4, metavar="N",
                           help="also N apps on one shared virgl_test_server vs one each (0: not measured)")

    cache_cmd = sub.add_parser("cache", help="what runs keep in ~/.cache/gpu-harness: list it, prune what no run uses")
    cache_sub = cache_cmd.add_subparsers(dest="cache_command", required=True, parser_class=Parser)
    cache_list = cache_sub.add_parser("list", help="each entry: kind, what it holds, size, days since a run used it")
    cache_list.add_argument("--json", action="store_true")
    cache_prune = cache_sub.add_parser("prune", help="remove the entries no run has used for DAYS days, or that "
                                       "no run of this checkout can use (--stale)")
    cache_prune.add_argument("--older-than", type=days, metavar="DAYS",
                             help="days since a run last used an entry (0: everything)")
    cache_prune.add_argument("--stale", action="store_true",
                             help="entries of recipes, locks or a GL split that are not the shipped ones any more")
    cache_prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")

    vfio_cmd = sub.add_parser("vfio", add_help=False, help="check, bind and restore a PCI device for passthrough "
                              "(gpu-harness vfio --help)")
    vfio_cmd.add_argument("vfio_args", nargs=argparse.REMAINDER)
    return parser


def select(args) -> Tuple[matrix_mod.Matrix, List[matrix_mod.Scenario]]:
    loaded = matrix_mod.load(args.matrix)
    wanted = None
    if getattr(args, "paths", None):
        wanted = [p.strip() for p in args.paths.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in path_registry.PATHS]
        if unknown:
            raise InputError(f"--paths: unknown path {shown(unknown[0])} (known: {', '.join(path_registry.PATHS)})")
    chosen = loaded.select(wanted, getattr(args, "filter", None))
    if not chosen:
        raise InputError(f"{loaded.source}: no scenario matches --paths/--filter")
    return loaded, chosen


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def run_matrix(scenarios, toolset, options, title: str):
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = console()
    with Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("", total=len(scenarios))

        def on_result(result):
            outcome = result.verdict.outcome
            out.print(f"[{outcome.style}]{outcome.value:<14}[/] {escape(result.scenario.id):<28} "
                      f"{result.wall_s:6.2f}s  {escape(result.verdict.reason)}", soft_wrap=True)
            progress.advance(task)

        return runner.run(scenarios, toolset, options, on_result=on_result)


def runtime_roots(values: List[str]) -> dict:
    roots = {}
    for value in values:
        name, _, root = value.partition("=")
        if not name or not os.path.isabs(root) or not os.path.isdir(root):
            raise InputError(f"--runtime-root: {shown(value)} must be NAME=/path/of/a/built/root")
        roots[name] = root
    return roots


def cmd_run(args) -> int:
    with outdir.claimed(args.out, "--out"):
        loaded, scenarios = select(args)
        known = baseline_mod.load(args.baseline) if args.baseline else None
        toolset = toolset_mod.load(args.toolset)
        options = runner.RunOptions(out_dir=args.out, jobs=args.jobs, retries=args.retries, goldens_dir=args.goldens,
                                    strict_runtimes=args.strict_runtimes, say=say,
                                    runtime_roots=runtime_roots(args.runtime_root), baseline=known)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = run_matrix(scenarios, toolset, options, "running")
    document = report.results.document(results, args.out, toolset, started, loaded.source,
                                       str(args.baseline) if args.baseline else None)
    report.write_all(args.out, document)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(document["summary"].items()))
    print(f"{len(results)} scenarios: {summary}. Report: {args.out / 'report.html'}")
    if INTERRUPTS.requested:
        print(f"gpu-harness: {INTERRUPTS.reason()}: reports written for what finished", file=sys.stderr)
        return INTERRUPTS.exit_code
    failing = (Outcome.FAIL, *([Outcome.SKIP] if args.fail_on_skip else []),
               *([Outcome.UNEXPECTED_PASS] if args.fail_on_unexpected_pass else []))
    return EXIT_FAILED if any(r.verdict.outcome in failing for r in results) else EXIT_OK


def cmd_list(args) -> int:
    _, scenarios = select(args)
    if args.json:
        print(json.dumps([s.to_dict() for s in scenarios], indent=2))
        return EXIT_OK
    for scenario in scenarios:
        expect = "pass" if scenario.expect.outcome == "pass" else f"fail ({scenario.expect.reason})"
        print(f"{scenario.id:<32} family={scenario.spec.family.name:<8} timeout={scenario.timeout_s:g}s expect={expect}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    toolset = toolset_mod.load(args.toolset)
    if args.json:
        print(json.dumps(toolset.to_dict(), indent=2))
        return EXIT_OK
    tools = Table(title=f"toolset ({toolset.source})")
    for column in ("tool", "found", "version", "path", "needed by", "install"):
        tools.add_column(column)
    for name, tool in sorted(toolset.tools.items()):
        spec = toolset_mod.TOOL_SPECS.get(name)
        needed = ", ".join(path_registry.needing(name)) or "-"
        tools.add_row(name, "yes" if tool.found else "[red]no[/]", escape(tool.version or "-"),
                      escape(tool.path or "-"), needed, "-" if tool.found else (spec.debian if spec else "-"))
    path_table = Table(title="paths on this machine")
    for column in ("path", "family", "runs here", "why not"):
        path_table.add_column(column)
    for path in path_registry.PATHS.values():
        reason = path.family.available(path, toolset)
        path_table.add_row(path.id, path.family.name, "[red]no[/]" if reason else "yes", escape(reason or ""))
    out = console()
    out.print(tools)
    out.print(f"render nodes: {escape(', '.join(toolset.render_nodes) or 'none')}")
    out.print(path_table)
    return EXIT_OK


def cmd_exec(args) -> int:
    if args.keep:
        outdir.prepare(args.keep, "--keep")
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise InputError("exec: no command given (usage: gpu-harness exec --path P -- CMD ARGS)")
    if args.path not in path_registry.PATHS:
        raise InputError(f"exec: unknown path {shown(args.path)} (known: {', '.join(path_registry.PATHS)})")
    runtimes = {HOST: matrix_mod.Runtime(HOST, matrix_mod.HOST_KIND)}
    declared = matrix_mod.load(args.matrix).scenarios if args.matrix else []
    runtimes.update({s.runtime.name: s.runtime for s in declared})
    if args.runtime not in runtimes:
        raise InputError(f"exec: unknown runtime {shown(args.runtime)} (known: {', '.join(runtimes)})")
    runtime = runtimes[args.runtime]
    scenario = matrix_mod.Scenario(id=f"{args.path}/{runtime.name}/exec", path_id=args.path, runtime=runtime,
                                   probe="exec", timeout_s=args.timeout)
    # The matrix's settings for this path and runtime (env, gl_extension, kernel_args) hold for the command too.
    same = next((s for s in declared if s.path_id == args.path and s.runtime.name == runtime.name), None)
    if same is not None:
        scenario = dataclasses.replace(same, id=scenario.id, probe="exec", timeout_s=args.timeout)
    if not path_registry.get(args.path).family.accepts(runtime):
        raise InputError(f"exec: path {args.path} cannot run in runtime {runtime.name} ({runtime.kind})")
    # A runtime built from a recipe has no root until it is built (or found in the cache): without
    # this the command would run over the host's root under the runtime's name.
    ready = runner.prepare_runtimes([scenario], runner.RunOptions(out_dir=Path("."), say=say))
    prepared = ready.get(runtime.name)
    if prepared is not None and not prepared.root:
        print(f"gpu-harness: runtime {runtime.name} cannot be built: {prepared.skip or prepared.failure}",
              file=sys.stderr)
        return EXIT_USAGE if prepared.skip else EXIT_FAILED
    scenario = runner.with_runtime(scenario, ready)
    toolset = toolset_mod.load(args.toolset)
    temp = runner.TempRoot()
    result_dir = args.keep or (temp.path / "result")
    try:
        workspace = Workspace(Path(result_dir), temp.scenario_dir())
        result = runner.launch(LaunchContext(scenario, toolset, workspace, Workload(command=command),
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
        return 124
    return result.exit.code if result.exit.code is not None else 128 + (result.exit.signal or 0)


HOST = matrix_mod.HOST_RUNTIME


def cmd_pins(args) -> int:
    pins = pins_mod.load_all(args.dir)
    if not pins:
        raise InputError(f"{args.dir}: no pin files (*.json)")
    if args.pins_command in ("list", "check"):
        for pin in pins.values():
            if pin.follows:
                print(f"{pin.name:<16} follows the flake input {pin.follows} (its own package, unmodified)")
            else:
                print(f"{pin.name:<16} {pin.version:<10} {pin.fetcher:<4} {pin.rev or '-':<22} {pin.hash}")
        return EXIT_OK
    unknown = [n for n in args.names if n not in pins]
    if unknown:
        raise InputError(f"pins update: no pin {shown(unknown[0])} in {args.dir} (known: {', '.join(pins)})")
    if (args.rev or args.pin_version) and len(args.names) != 1:
        raise InputError("pins update: --rev/--version need exactly one pin name")
    failed = 0
    for name in args.names or list(pins):
        try:
            print(pins_mod.update(args.dir / f"{name}.json", args.rev, args.pin_version).describe())
        except pins_mod.PinError as exc:
            print(f"{name}: not updated: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def cmd_goldens_update(args) -> int:
    """Render each probe's golden with a real run of its reference path (llvmpipe where it renders)."""
    outdir.prepare(args.goldens, "--goldens")
    loaded = matrix_mod.load(args.matrix)
    probes = sorted({s.probe for s in loaded.scenarios})
    toolset = toolset_mod.load(args.toolset)
    reference = [matrix_mod.Scenario(id=f"{path_id}/{HOST}/{probe}", path_id=path_id,
                                     runtime=matrix_mod.Runtime(HOST, matrix_mod.HOST_KIND), probe=probe)
                 for probe in probes for path_id in (path_registry.reference_for(probe).id,)]
    with reaper.temp_dir("gh-goldens-") as out:
        options = runner.RunOptions(out_dir=Path(out), compare_images=False)
        results = run_matrix(reference, toolset, options, "rendering goldens")
        bad = [r for r in results if r.verdict.outcome is not Outcome.PASS]
        for result in bad:
            print(f"gpu-harness: golden {result.scenario.probe} not updated: {result.verdict.reason}", file=sys.stderr)
        for result in results:
            if result in bad:
                continue
            target = args.goldens / f"{result.scenario.probe}.png"
            assert result.launch.image_path and result.report
            shutil.copyfile(result.launch.image_path, target)
            data = result.report.raw
            print(f"{target}: {data['size'][0]}x{data['size'][1]} md5 {data['pixels_md5']} ({data['renderer']})")
    return EXIT_FAILED if bad else EXIT_OK


def factor(text: str) -> float:
    """A factor of change: more than 1, at most 1000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 1 < value <= 1000:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be more than 1 and at most 1000, not {shown(text)}")
    return value


def write_output(path: Path, text: str, option: str) -> None:
    try:
        outdir.write_atomically(path, text)
    except OSError as exc:
        raise InputError(f"{option} {shown(str(path))}: cannot write it: {exc.strerror or exc}") from None


def cmd_diff(args) -> int:
    from .report import diff as diff_mod

    old, new = diff_mod.load(args.old), diff_mod.load(args.new)
    found = diff_mod.compare(old, new, args.fps_factor or diff_mod.FPS_FACTOR)
    if args.html:
        write_output(args.html, diff_mod.html(found, args.html), "--html")
    print(json.dumps(found.to_json(), indent=2) if args.json else diff_mod.text(found), end="\n" if args.json else "")
    return EXIT_FAILED if found.regressions else EXIT_OK


def cmd_baseline(args) -> int:
    document = report.results.read(report.results.locate(args.source))
    current = baseline_mod.load(args.out) if args.out.exists() else None
    done = baseline_mod.update(document["scenarios"], current, str(args.out))
    write_output(args.out, baseline_mod.dumps(done.baseline, f"written from {args.source} "
                                              f"(matrix {document.get('matrix')}, {document.get('started')})"), "--out")
    print(f"{args.out}: {len(done.baseline.entries)} entries: {len(done.added)} added, {len(done.kept)} kept, "
          f"{len(done.dropped)} dropped (now pass)")
    for scenario_id in done.not_known:
        print(f"  not known: {scenario_id} (interrupted, or a matrix expectation that passed: fix the matrix)")
    return EXIT_OK


def cmd_report(args) -> int:
    document = report.render_from_json(args.dir)
    print(f"{args.dir / 'report.html'}: {len(document['scenarios'])} scenarios")
    return EXIT_OK


def cmd_bench(args) -> int:
    with outdir.claimed(args.out, "--out"):
        loaded, scenarios = select(args)
        toolset = toolset_mod.load(args.toolset)
    rounds = []
    for number in range(1, args.repeat + 1):
        options = runner.RunOptions(out_dir=args.out / f"round-{number}", jobs=args.jobs)
        started = datetime.datetime.now(datetime.timezone.utc)
        rounds.append(run_matrix(scenarios, toolset, options, f"round {number}/{args.repeat}"))
        rounds[-1] = (rounds[-1], (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds())
    rows = bench.summarize([results for results, _ in rounds])
    matrix_wall = bench.median(wall for _, wall in rounds)
    from rich.console import Console

    Console(width=200).print(bench.table(rows, f"gpu-harness bench: {len(scenarios)} scenarios x {len(rounds)} runs, "
                                               f"median; matrix wall {matrix_wall:.2f} s (-j {args.jobs})"))
    runtime_rows = bench.runtime_rows(sorted({s.runtime.recipe for s in scenarios if s.runtime.needs_build}))
    if runtime_rows:
        Console(width=200).print(bench.runtime_table(runtime_rows))
    servers, servers_json = serverbench.section(toolset, args.servers, args.out / "servers", args.repeat) \
        if args.servers > 0 else (None, None)
    if servers is not None:
        Console(width=200).print(servers)
    (args.out / "bench.json").write_text(json.dumps(
        {"rounds": len(rounds), "jobs": args.jobs, "matrix_wall_s": [w for _, w in rounds],
         "rows": [dataclasses.asdict(r) for r in rows],
         "runtimes": [dataclasses.asdict(r) for r in runtime_rows], "servers": servers_json}, indent=2) + "\n")
    return EXIT_OK


def say(text: str) -> None:
    from rich.markup import escape

    console().print(f"[dim]{escape(text)}[/]", soft_wrap=True)


def cmd_runtimes(args) -> int:
    if args.runtimes_command == "list":
        return runtimes_list()
    if args.runtimes_command == "image":
        return runtimes_image(args.name, args.out)
    failed = 0
    for name in args.names:
        recipe = runtimes_mod.load_recipe(name)
        try:
            if args.runtimes_command == "lock":
                locked = runtimes_mod.lock(recipe, say=say)
                print(f"{name}: locked {len(locked.packages)} packages ({locked.archive_date}) "
                      f"in {runtimes_mod.lock_file(recipe)}")
            else:
                built = runtimes_mod.build(recipe, runtimes_mod.load_lock(recipe), strict=args.strict, say=say)
                print(f"{name}: {built.root} (Mesa {built.facts.get('mesa')}, {built.facts.get('size_mb')} MB"
                      f"{f', {len(built.drift)} packages drifted from the lock' if built.drift else ''})")
                for line in built.drift:
                    print(f"  drift: {line}")
        except runtimes_mod.RuntimeBuildError as exc:
            print(f"gpu-harness: runtime {name}: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def runtimes_image(name: str, out: Path) -> int:
    try:
        image = runtimes_mod.write_image(name, out, say=say)
    except runtimes_mod.RuntimeBuildError as exc:
        print(f"gpu-harness: runtime {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{out}: image sha256:{image.id} ({image.format}, {image.compression}, {out.stat().st_size >> 20} MB; "
          f"Mesa {runtimes_mod.component_versions(image.packages)['mesa']})")
    return EXIT_OK


def runtimes_list() -> int:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="runtimes")
    for column in ("runtime", "suite/arch", "lock", "Mesa", "libc", "python", "size MB", "built", "drift"):
        table.add_column(column)
    for name in runtimes_mod.recipe_names():
        recipe = runtimes_mod.load_recipe(name)
        lock = runtimes_mod.load_lock(recipe)
        built = runtimes_mod.cached(name)
        facts = built.facts if built else {}
        table.add_row(name, f"{recipe.suite}/{recipe.architecture}",
                      f"{len(lock.packages)} packages, {lock.archive_date}" if lock else "[red]none[/]",
                      *(escape(str(facts.get(k) or "-")) for k in ("mesa", "libc", "python", "size_mb")),
                      "yes" if built else "no", str(len(built.drift)) if built else "-")
    from rich.console import Console

    Console(stderr=True, width=160).print(table)
    return EXIT_OK


def cmd_cache(args) -> int:
    from . import cache

    now, current = time.time(), cache.shipped()
    if args.cache_command == "list":
        return cache_list(sorted(cache.entries(current=current), key=lambda e: (e.kind, -e.last_used)), now, args.json)
    if args.older_than is None and not args.stale:
        raise InputError("cache prune: say what to remove: --older-than DAYS, --stale, or both")
    try:
        done = cache.prune(args.older_than, stale=args.stale, dry_run=args.dry_run, now=now, current=current)
    except cache.CacheBusy as exc:
        print(f"gpu-harness: cache prune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    verb = "would remove" if args.dry_run else "removed"
    for entry in done.removed:
        why = "stale" if entry.current is False else f"unused {entry.age_days(now):.1f} days"
        print(f"{verb} {entry.kind} {entry.name} ({entry.size / 2**20:.0f} MiB, {why}): {entry.path}")
    for why in done.failed:
        print(f"gpu-harness: kept {why}", file=sys.stderr)
    print(f"{verb} {len(done.removed)} entries, {sum(e.size for e in done.removed) / 2**20:.0f} MiB; "
          f"kept {len(done.kept)}, {sum(e.size for e in done.kept) / 2**20:.0f} MiB")
    return EXIT_FAILED if done.failed else EXIT_OK


def cache_list(found, now: float, as_json: bool) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from . import cache

    if as_json:
        print(json.dumps({"root": str(cache.ROOT), "entries": [e.to_dict(now) for e in found]}, indent=2))
        return EXIT_OK
    table = Table(title=f"{cache.ROOT}: {len(found)} entries, {sum(e.size for e in found) / 2**30:.2f} GiB")
    for column in ("kind", "holds", "size MiB", "days unused", "current", "entry"):
        table.add_column(column, justify="right" if column in ("size MiB", "days unused") else "left",
                         no_wrap=column != "holds")
    for entry in found:
        table.add_row(str(entry.kind), escape(entry.name), f"{entry.size / 2**20:.0f}", f"{entry.age_days(now):.1f}",
                      {True: "yes", False: "[yellow]stale[/]", None: "-"}[entry.current], escape(entry.path.name[:16]))
    Console(width=max(120, shutil.get_terminal_size().columns)).print(table)
    return EXIT_OK


def cmd_vfio(args) -> int:
    from . import vfio

    return vfio.main(args.vfio_args)


COMMANDS = {"vfio": cmd_vfio, "run": cmd_run, "list": cmd_list, "doctor": cmd_doctor, "exec": cmd_exec,
            "report": cmd_report, "bench": cmd_bench, "pins": cmd_pins, "runtimes": cmd_runtimes,
            "diff": cmd_diff, "baseline": cmd_baseline, "cache": cmd_cache}


def main(argv: Optional[List[str]] = None) -> int:
    # SIGINT/SIGTERM: a run stops its scenarios and writes what finished; otherwise unwind so
    # services stop. The reaper covers what unwinding cannot; orphans of launched programs are
    # reparented to us (a child subreaper) and reaped before we exit.
    INTERRUPTS.install()
    process.become_subreaper()
    try:
        args = build_parser().parse_args(argv)
        if args.command != "cache":
            from . import cache

            cache.hold_shared()  # nothing this process uses is pruned while it runs
        handler = cmd_goldens_update if args.command == "goldens" else COMMANDS[args.command]
        return handler(args)
    except InputError as exc:
        for problem in exc.problems:
            print(f"gpu-harness: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    finally:
        reaper.shutdown()
        process.reap_children()


if __name__ == "__main__":
    sys.exit(main())
