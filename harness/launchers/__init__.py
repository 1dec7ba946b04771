"""One launcher per path family; each turns a scenario into a LaunchPlan."""
from . import host, sandbox

FAMILIES = {"host": host.plan, "sandbox": sandbox.plan}


def plan_for(family: str):
    return FAMILIES[family]
