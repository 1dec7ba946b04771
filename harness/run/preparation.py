"""A run's preparation, before any scenario runs: the runtimes its scenarios need built (or found
in the cache, or given), each family's run-level steps and the host's files counted, each step
noted in the run's options; and a scenario placed on the runtimes as built."""
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Protocol

from ..runtimes import recipes, builds
from ..launch.families import registry
from ..launch.lifecycle import Prepared
from ..scenario.model import Runtime, RuntimeKind, Scenario
from ..host import emulation
from ..judging import exposure as exposure_mod
from . import machine_run
from ..host.toolset import Toolset
from ..core import log


LOG = log.get(__name__)


class Options(Protocol):
    """What preparation reads of the run's options (the runner's RunOptions), and where it notes
    each step it took."""

    strict_runtimes: bool
    runtime_roots: Dict[str, str]  # runtimes built elsewhere (Nix): name -> root
    prepared: List[Prepared]


@dataclass
class RuntimeReady:
    """A scenario's runtime: built (facts and root), or why it is not."""

    facts: Dict[str, object] = field(default_factory=dict)
    root: str = ""
    skip: str = ""
    failure: str = ""


def prepare_runtimes(scenarios: List[Scenario], options: Options) -> Dict[str, RuntimeReady]:
    """Build (or find in the cache) each runtime the scenarios need, once. A bad recipe or, with
    strict_runtimes, a drifted lock is an InputError; a build that fails is its scenarios' Fail."""
    ready: Dict[str, RuntimeReady] = {}
    for runtime in runtimes_to_prepare(scenarios).values():
        started = time.monotonic()
        name = runtime.build_name
        if name in options.runtime_roots and runtime.needs_build:
            root = options.runtime_roots[name]
            ready[name] = RuntimeReady(facts=recipes.facts_from_lock(runtime.recipe, root),
                                       root=root)
            note_prepared(options, Prepared(f"runtime {name}", time.monotonic() - started,
                                            f"given: {root}"))
            continue
        cached = builds.is_cached(runtime)
        try:
            ready[name] = prepared_runtime(runtime, options)
            detail = f"{'from the cache' if cached else 'built'}: {ready[name].root}"
        except builds.BuilderMissing as exc:
            ready[name] = RuntimeReady(skip=str(exc))
            detail = f"not built: {exc}"
        except builds.RuntimeBuildError as exc:
            ready[name] = RuntimeReady(failure=f"runtime {name}: {exc}")
            detail = f"failed: {exc}"
        note_prepared(options, Prepared(f"runtime {name}", time.monotonic() - started, detail))
        with_execution(ready[name])
    return ready


def with_execution(ready: RuntimeReady) -> None:
    """The runtime's facts gain how this host runs it: natively, or emulated (by which
    qemu-user)."""
    architecture = (emulation.tree_architecture(ready.root) if ready.root
                    and os.path.isdir(ready.root) else None)
    if architecture:
        execution = emulation.how_runs(architecture)
        ready.facts = {**ready.facts, "execution": execution.to_dict() if execution else
                       {"architecture": architecture, "runs": "no",
                        "why": emulation.why_not(architecture)}}


def note_prepared(options: Options, step: Prepared) -> None:
    options.prepared.append(step)
    LOG.info("prepared %s in %.1f s (%s)", step.step, step.seconds, step.detail)


def prepare_audit(scenarios: List[Scenario], options: Options) -> None:
    """A sandbox over the host's own root sees its /usr and /etc: the audit of what it sees counts
    their files, once, here (else the first such scenario would)."""
    if not any(s.runtime.kind is RuntimeKind.HOST and s.spec.hides_host for s in scenarios):
        return
    started = time.monotonic()
    counts = [f"{folder} {exposure_mod.file_count(folder)}"
              for folder in exposure_mod.HOST_ROOT_FOLDERS]
    note_prepared(options, Prepared("host files counted", time.monotonic() - started,
                                    ", ".join(counts)))


def prepare_families(scenarios: List[Scenario], toolset: Toolset, options: Options,
                     scratch: Path) -> None:
    """Each family's run-level steps, for its scenarios that can run here; a step that fails is
    said, and its scenarios then do it (and fail in it) themselves."""
    chosen: Dict[str, List[Scenario]] = {}
    for scenario in scenarios:
        # a machine's scenarios run in its guest: here, the guest's boot is what is prepared
        spec = (scenario.spec if machine_run.runs_here(scenario)
                else machine_run.boot_spec(scenario.machine))
        family = registry.of(spec)
        if family.available(spec, toolset) is None:
            chosen.setdefault(family.name, []).append(scenario)
    for name, own in chosen.items():
        started = time.monotonic()
        try:
            steps = registry.FAMILIES[name].prepare_run(own, toolset, scratch)
        # the failure boundary: a scenario meets it again and fails with it
        except Exception as exc:
            steps = [Prepared(f"{name} family", time.monotonic() - started,
                              f"failed: {type(exc).__name__}: {exc}")]
        for step in steps:  # a step two families share (a guest's kernel) is said once
            if not any(done.step == step.step for done in options.prepared):
                note_prepared(options, step)


def runtimes_to_prepare(scenarios: List[Scenario]) -> Dict[str, Runtime]:
    """Every runtime a scenario needs built: its own, and the one its GL extension comes from;
    an image made from a runtime too. Built here, once, before any scenario runs."""
    wanted: Dict[str, Runtime] = {}
    for scenario in scenarios:
        for runtime in (scenario.runtime, scenario.gl_extension):
            if runtime is not None and (runtime.needs_build or runtime.image_from_recipe):
                wanted.setdefault(runtime.build_name, runtime)
    return wanted


def prepared_runtime(runtime: Runtime, options: Options) -> RuntimeReady:
    if runtime.image_from_recipe:
        archive = builds.image_archive(runtime.recipe, extra_packages=runtime.extra_packages)
        made_from = builds.cached(runtime.recipe, extra_packages=runtime.extra_packages)
        return RuntimeReady(facts={**(made_from.facts if made_from else {}), "image": str(archive)},
                            root=str(archive))
    built = builds.ensure(runtime.recipe, strict=options.strict_runtimes,
                            extra_packages=runtime.extra_packages)
    return RuntimeReady(facts=built.facts, root=str(built.root))


def with_runtime(scenario: Scenario, ready: Dict[str, RuntimeReady]) -> Scenario:
    """The scenario with the roots of its runtime and of its GL extension's runtime, as built."""
    def built(runtime: Optional[Runtime]) -> Optional[Runtime]:
        prepared = ready.get(runtime.build_name) if runtime is not None else None
        if runtime is None or prepared is None or not prepared.root:
            return runtime
        return dataclasses.replace(runtime, root=prepared.root)

    return dataclasses.replace(scenario, runtime=built(scenario.runtime) or scenario.runtime,
                               gl_extension=built(scenario.gl_extension))


def unbuilt_runtime(scenario: Scenario, ready: Dict[str, RuntimeReady]) -> Optional[str]:
    """The name of a runtime the scenario needs (its own, its GL extension's) that is not built."""
    for runtime in (scenario.runtime, scenario.gl_extension):
        needed = ready.get(runtime.build_name) if runtime is not None else None
        if runtime is not None and needed is not None and not needed.root:
            return runtime.build_name
    return None
