"""The quick tier (./scripts/test) holds a real launch of every family in the family table, so a
family added later cannot be left out of it; every test outside it says why (tests.suiteplugin)."""
import json
import subprocess
import sys
from pathlib import Path

from harness.launch.families import registry

from .suiteplugin import FULL_REASONS

ROOT = Path(__file__).resolve().parent.parent
# Collects the launching tests as a tier selects them and prints each one's marks as JSON.
COLLECT = r"""
import json, sys
import pytest

class Marks:
    def pytest_collection_finish(self, session):
        print(json.dumps({item.nodeid: [[m.name, *map(str, m.args)] for m in item.iter_markers()]
                          for item in session.items}))

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                      *sys.argv[1:]],
                     plugins=[Marks()]))
"""


def collected(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", COLLECT, *args], capture_output=True, text=True,
                          cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    return json.loads(line)


def test_the_quick_tier_launches_every_family_of_the_table():
    quick = collected("-m", "not full", "vmtests")
    launched = {args[0] for marks in quick.values() for name, *args in marks
                if name == "launches" and args}
    assert set(registry.FAMILIES) <= launched, ("no quick test launches "
                                                f"{sorted(set(registry.FAMILIES) - launched)}")


def test_every_test_outside_the_quick_tier_says_why_and_the_whole_tier_has_them_all():
    everything = collected("vmtests")
    quick = collected("-m", "not full", "vmtests")
    full = {node: [args[0] for name, *args in marks if name == "full"] for node,
            marks in everything.items()}
    outside = {node for node in everything if node not in quick}
    assert outside and all(full[node] and set(full[node]) <= set(FULL_REASONS) for node in outside)
    assert set(quick) < set(everything)
