"""One launcher per path family. host and sandbox render a LaunchPlan that base.execute runs;
the vm family drives QEMU over QMP itself."""
from . import base, host, sandbox, vm

PLANNERS = {"host": host.plan, "sandbox": sandbox.plan}


def launch(scenario, toolset, workspace, workload, inherit_stdio=False, on_services_ready=lambda services: None):
    if scenario.spec.family == "vm":
        return vm.launch(scenario, toolset, workspace, workload, inherit_stdio, on_services_ready)
    plan = PLANNERS[scenario.spec.family](scenario, toolset, workspace, workload)
    base.write_config(workspace, scenario.id, plan)
    return base.execute(plan, workspace, scenario.timeout_s, {}, inherit_stdio=inherit_stdio,
                        on_services_ready=on_services_ready)
