"""Host-family paths (native, software): the workload runs as a plain host process."""
import os
from typing import Dict

from ..matrix import Scenario
from ..toolset import Toolset
from .base import PROBE_FILES, LaunchPlan, Workload, Workspace, probe_command

# Variables that pick a GL driver: the native path must see the host's defaults, not the caller's.
DRIVER_SELECTION = ("LIBGL_ALWAYS_SOFTWARE", "GALLIUM_DRIVER", "MESA_LOADER_DRIVER_OVERRIDE", "VTEST_SOCKET_NAME")


def environment(scenario: Scenario) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DRIVER_SELECTION}
    env.update(dict(scenario.spec.env))
    env.update(dict(scenario.env))
    return env


def plan(scenario: Scenario, toolset: Toolset, workspace: Workspace, workload: Workload) -> LaunchPlan:
    if workload.is_probe:
        argv = probe_command(toolset.path("python3"), str(PROBE_FILES[workload.probe]), str(workspace.probe_out),
                             workspace.host_paths(), workload.probe_args)
    else:
        argv = list(workload.command)
    return LaunchPlan(services=[], argv=argv, env=environment(scenario), env_mode="inherit")
