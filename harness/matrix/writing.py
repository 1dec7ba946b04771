"""A scenario written back as a matrix declaration that expands to exactly it: what a machine
scenario's rerun.sh runs again (`gpu-harness run --matrix scenario.json`)."""
from typing import Any, Dict, Optional

from ..scenario.probes import PROBES
from ..scenario.model import (DEFAULT_TIMEOUT_S, HOST_RUNTIME, Runtime, RuntimeKind, Scenario,
                              Tolerance)


def runtime_declaration(runtime: Runtime) -> Dict[str, str]:
    if runtime.kind is RuntimeKind.DEBOOTSTRAP:
        return {"kind": runtime.kind.value, "recipe": runtime.recipe}
    if runtime.kind is RuntimeKind.IMAGE:
        return {"kind": runtime.kind.value, **({"recipe": runtime.recipe} if runtime.recipe
                                               else {"archive": runtime.root})}
    return {"kind": runtime.kind.value, "root": runtime.root}


def declaration_of(scenario: Scenario) -> Dict[str, Any]:
    """The matrix of this one scenario: its path, runtime, probe and machine, its settings as the
    defaults, its expectation as an override."""
    runtimes = {r.name: runtime_declaration(r) for r in (scenario.runtime, scenario.gl_extension)
                if r is not None and r.name != HOST_RUNTIME}
    defaults: Dict[str, Any] = ({"timeout_s": scenario.timeout_s}
                                if scenario.timeout_s != DEFAULT_TIMEOUT_S else {})
    if scenario.tolerance != Tolerance():
        defaults["tolerance"] = {"channel": scenario.tolerance.channel,
                                 "fraction": scenario.tolerance.fraction}
    for key, value in (("env", dict(scenario.env)), ("probe_args", list(scenario.probe_args)),
                       ("kernel_args", list(scenario.kernel_args))):
        if value:
            defaults[key] = value
    if scenario.golden != PROBES[scenario.probe_program].golden_name:
        defaults["golden"] = scenario.golden
    extension: Optional[Runtime] = scenario.gl_extension
    if extension is not None:
        defaults["gl_extension"] = extension.name
    declaration: Dict[str, Any] = {"matrix": {"paths": [scenario.path_id],
                                              "runtimes": [scenario.runtime.name],
                                              "probes": [scenario.probe],
                                              "machines": [scenario.machine]}}
    if runtimes:
        declaration["runtimes"] = runtimes
    if scenario.declared:
        declared = scenario.declared
        declaration["probes"] = {declared.name: {"kind": declared.kind, **declared.settings,
                                                 "packages": list(declared.packages)}}
    if defaults:
        declaration["defaults"] = defaults
    if scenario.expect.fails:
        override = {"match": scenario.id, "expect": "fail", "reason": scenario.expect.reason}
        declaration["override"] = [{**override, **({"failure": scenario.expect.failure}
                                                   if scenario.expect.failure
                                                     else {})}]
    return declaration
