"""Reports of a run: results.json (the contract other tools read), junit.xml, report.html.

results.json is written first, from the run's results; junit.xml and report.html are rendered
from that JSON alone, so `gpu-harness report DIR` can rebuild them later.
"""
import json
from pathlib import Path

from ..outdir import write_atomically
from . import html, junit, results

RESULTS_FILE = results.RESULTS_FILE


def write_all(out_dir: Path, document: dict) -> None:
    # default=str: a fact of an odd type (a path, an enum) must not cost the whole results file
    write_atomically(out_dir / RESULTS_FILE, json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    render_from_json(out_dir)


def render_from_json(out_dir: Path) -> dict:
    document = results.read(out_dir / RESULTS_FILE)
    write_atomically(out_dir / "junit.xml", junit.render(document))
    write_atomically(out_dir / "report.html", html.render(document))
    return document
