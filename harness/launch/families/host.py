"""The host family (native, software): the workload runs as a plain host process."""
import os
from typing import Dict

from .. import presenting
from ..lifecycle import LaunchContext
from ...scenario.model import HOST_KIND, Display, Scenario
from .base import EnvMode, Plan, ProcessFamily, probe_spec

# Variables that pick a GL driver: the native path must see the host's defaults, not the caller's.
DRIVER_SELECTION = ("LIBGL_ALWAYS_SOFTWARE", "GALLIUM_DRIVER", "MESA_LOADER_DRIVER_OVERRIDE",
                    "VTEST_SOCKET_NAME")
# The caller's own display servers: a presenting scenario's window goes to the harness's one only.
DISPLAY_SELECTION = ("WAYLAND_DISPLAY", "WAYLAND_SOCKET", "DISPLAY", "XAUTHORITY")


def environment(scenario: Scenario) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DRIVER_SELECTION}
    env.update(dict(scenario.spec.env))
    env.update(dict(scenario.env))
    return env


class HostFamily(ProcessFamily):
    name = "host"
    displays = (Display.WAYLAND, Display.X11)
    runtime_kinds = (HOST_KIND,)  # a host process runs in the host's own root

    def plan(self, ctx: LaunchContext) -> Plan:
        workload = ctx.workload
        if workload.command is not None:
            argv = list(workload.command)
        else:
            argv = probe_spec(ctx).host_argv(ctx.toolset.path("python3"),
                                             str(ctx.workspace.probe_out),
                                             ctx.workspace.host_paths(), workload.probe_args)
        env = environment(ctx.scenario)
        if ctx.display is not None:  # a host process reaches the server's socket where it is
            env = {k: v for k, v in env.items() if k not in DISPLAY_SELECTION}
            env.update(presenting.client_env(ctx.display))
        return Plan(argv=argv, env=env, env_mode=EnvMode.INHERIT)


FAMILY = HostFamily()
