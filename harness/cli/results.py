"""The commands over a run's results: report, diff, merge, baseline update, import and export."""
import json
import re
from pathlib import Path

from ..judging import baseline as baseline_mod, deqprunner
from ..report import merge as merge_mod, outdir, records
from .. import report
from ..core.errors import InputError, shown
from ..core.words import counted
from .codes import EXIT_FAILED, EXIT_OK


def write_output(path: Path, text: str, option: str) -> None:
    try:
        outdir.write_atomically(path, text)
    except OSError as exc:
        raise InputError(f"{option} {shown(str(path))}: cannot write it: "
                         f"{exc.strerror or exc}") from None


# what merge writes in its --out
MERGE_PRODUCTS = ("results.json", "junit.xml", "report.html", "results.csv", "failures.csv")


def cmd_merge(args) -> int:
    # refused input: nothing left there
    with outdir.claimed(args.out, "--out", MERGE_PRODUCTS) as out:
        document = merge_mod.merge(args.runs, out.absolute())
    try:
        report.write_all(out, document)
    finally:
        outdir.release(out)
    hosts = len(document["hosts"])
    print(f"{out / 'report.html'}: {counted(len(document['scenarios']), 'scenario')} from "
          f"{counted(len(args.runs), 'run')} on {counted(hosts, 'host')}")
    return EXIT_OK


def cmd_report(args) -> int:
    run = report.render_from_json(args.dir)
    print(f"{args.dir / 'report.html'}: {counted(len(run.scenarios), 'scenario')}")
    return EXIT_OK


def cmd_diff(args) -> int:
    from ..report import diff as diff_mod

    old, new = diff_mod.load(args.old), diff_mod.load(args.new)
    found = diff_mod.compare(old, new, args.fps_factor)
    if args.html:
        write_output(args.html, diff_mod.html(found, args.html), "--html")
    print(json.dumps(found.to_json(), indent=2) if args.json else diff_mod.text(found),
          end="\n" if args.json else "")
    return EXIT_FAILED if found.regressions or found.subtest_regressions else EXIT_OK


def cmd_baseline(args) -> int:
    if args.baseline_command == "import":
        return cmd_baseline_import(args)
    if args.baseline_command == "export":
        return cmd_baseline_export(args)
    run = records.read_file(args.source)
    current = baseline_mod.load(args.out) if args.out.exists() else None
    done = baseline_mod.update(run.scenarios, current, str(args.out))
    write_output(args.out, baseline_mod.dumps(done.baseline, f"written from {args.source} "
                                              f"(matrix {run.matrix}, {run.started})"), "--out")
    print(f"{args.out}: {counted(len(done.baseline.entries), 'entry')}: {len(done.added)} added, "
          f"{len(done.kept)} kept, "
          f"{len(done.dropped)} dropped (now pass)")
    for scenario_id in done.not_known:
        print(f"  not known: {scenario_id} (interrupted, or a matrix expectation that passed: fix "
              "the matrix)")
    return EXIT_OK


def cmd_baseline_import(args) -> int:
    known = deqprunner.to_baseline(args.fails, args.flakes, args.skips, args.match)
    sources = ", ".join(str(p) for p in (args.fails, args.flakes, args.skips) if p)
    write_output(args.out, baseline_mod.dumps(known, f"imported from {sources}"), "--out")
    kinds = {kind: sum(1 for e in known.entries if e.kind is kind) for kind in baseline_mod.Kind}
    print(f"{args.out}: {counted(len(known.entries), 'entry')}: "
          + ", ".join(f"{count} {kind}" for kind, count in kinds.items()))
    return EXIT_OK


def cmd_baseline_export(args) -> int:
    run = records.read_file(args.source)
    outdir.prepare(args.out, "--out")
    written = 0
    for scenario in run.scenarios:
        if not scenario.subtests:
            continue
        rows = deqprunner.csv_rows(scenario.subtests, ())
        stem = re.sub(r"[^A-Za-z0-9._+-]", "_", scenario.id)
        write_output(args.out / f"{stem}-fails.txt", deqprunner.fails_text(rows), "--out")
        write_output(args.out / f"{stem}-results.csv", deqprunner.csv_text(rows), "--out")
        written += 1
    print(f"{args.out}: {counted(written, 'scenario')} with subtests, as NAME-fails.txt and "
          "NAME-results.csv")
    return EXIT_OK
