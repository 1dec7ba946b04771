"""Fixtures for tests that launch real scenarios.

A test gets real launches: real bwrap, real virgl_test_server, real QEMU. When a path cannot
run on this machine the harness says Skip with the reason, and so does the test -- unless the
path is listed in GPU_HARNESS_REQUIRE (CI sets it for the paths it installs), where a Skip is
a failure: a CI that silently skipped its real paths would prove nothing.
"""
import os
from pathlib import Path

import pytest

from harness import matrix as matrix_mod, runner, toolset as toolset_mod, verdict

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}


@pytest.fixture(scope="session")
def toolset():
    return toolset_mod.load()


def scenarios_from(declaration: dict):
    return matrix_mod.expand(declaration, "<test>").scenarios


@pytest.fixture
def run_scenarios(toolset, tmp_path):
    """Run scenarios for real; returns their ScenarioResults."""

    def run(scenarios, hooks=None, retries=0, **options):
        opts = runner.RunOptions(out_dir=tmp_path / "out", retries=retries, **options)
        return runner.run(scenarios, toolset, opts, hooks=hooks)

    return run


def outcome_or_skip(result):
    """Turn a harness Skip into a pytest skip (or a failure where the path is required)."""
    if result.verdict.outcome == verdict.SKIP:
        if result.scenario.path in REQUIRED:
            pytest.fail(f"{result.scenario.id} is required here but skipped: {result.verdict.reason}")
        pytest.skip(f"{result.scenario.id}: {result.verdict.reason}")
    return result.verdict.outcome


def describe(result) -> str:
    lines = [f"{result.scenario.id}: {result.verdict.outcome}: {result.verdict.reason}"]
    for path in [result.probe.log_path, *result.probe.service_logs.values()]:
        if path and Path(path).exists():
            lines.append(f"--- {path}\n{Path(path).read_text(errors='replace')[-2000:]}")
    return "\n".join(lines)
