"""Reports of a run: results.json (the contract other tools read), junit.xml, report.html.

results.json is written first, from the run's results; junit.xml and report.html are rendered
from that JSON alone, read into typed records once (records.py), so `gpu-harness report DIR` can
rebuild them later; merge, diff and `baseline update` work on those records too, and the output
folders are claimed here. How outcomes look (CSS classes, colours, terminal styles) is display.py's.
Imports the layers below it (core to judging).
"""
import json
from pathlib import Path

from ..core.errors import PATH_LIMIT, InputError, cut
from .outdir import write_atomically
from . import csvresults, html, junit, records, results

RESULTS_FILE = results.RESULTS_FILE


def write_all(out_dir: Path, document: dict) -> None:
    # default=str: a fact of an odd type (a path, an enum) must not cost the whole results file
    write_file(out_dir / RESULTS_FILE, json.dumps(document, indent=2, sort_keys=True,
                                                  default=str) + "\n")
    render_from_json(out_dir)


def render_from_json(out_dir: Path) -> records.Run:
    """junit.xml and report.html from the folder's results.json, read once into records."""
    run = records.read_file(out_dir / RESULTS_FILE)
    write_file(out_dir / "junit.xml", junit.render(run))
    write_file(out_dir / "report.html", html.render(run))
    if any(scenario.subtests for scenario in run.scenarios):
        every, failed = csvresults.texts(run)
        write_file(out_dir / "results.csv", every)
        write_file(out_dir / "failures.csv", failed)
    return run


def write_file(target: Path, text: str) -> None:
    """One report file, written atomically; a target that cannot be written (a folder in its
    place, a read-only folder) is an InputError naming it."""
    where = cut(target, PATH_LIMIT)
    # checked first: the rename would leave its partial file
    if target.is_dir() and not target.is_symlink():
        raise InputError(f"{where}: is a folder, cannot write the report file there (remove it, or "
                         "choose another folder)")
    try:
        write_atomically(target, text)
    except OSError as exc:
        raise InputError(f"{where}: cannot write the report file: {exc.strerror or exc}") from None
