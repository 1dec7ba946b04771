"""The family table: each family's name mapped to the object that launches its paths, and what
the Nix layer needs of each path (nix/paths.json: `python -m harness.launch.families.registry`)."""
import json
import sys
from typing import Dict, List

from ...scenario.pathspec import PathSpec
from ...scenario.paths import PATHS, get
from .base import Family
from .container import FAMILY as CONTAINER
from .flatpak import FAMILY as FLATPAK
from .host import FAMILY as HOST
from .sandbox import FAMILY as SANDBOX
from .vfio import FAMILY as VFIO
from .vm import FAMILY as VM

FAMILIES: Dict[str, Family] = {family.name: family for family in (HOST, SANDBOX, CONTAINER, FLATPAK,
                                                                  VM, VFIO)}


def of(spec: PathSpec) -> Family:
    """The family object that launches this path."""
    return FAMILIES[spec.family]


def of_path(path_id: str) -> Family:
    return of(get(path_id))


def features(spec: PathSpec) -> List[str]:
    """Nix system features a builder needs to run this path's checks."""
    return [*of(spec).system_features, *(["gpu"] if spec.gpu else [])]


def path_json(spec: PathSpec) -> dict:
    family = of(spec)
    return {"family": family.name, "features": features(spec), "probes": spec.probes,
            "runs_in_guest": family.runs_in_guest, "displays": [str(d) for d in family.displays],
            "runtime_kinds": [str(kind) for kind in family.runtime_kinds]
            if family.runtime_kinds is not None else None,
            "systems": list(family.nix_systems) if family.nix_systems is not None else None}


def table_json() -> str:
    """nix/paths.json: what the flake needs of each path (family, system features)."""
    return json.dumps({spec.id: path_json(spec) for spec in PATHS.values()}, indent=2,
                      sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table_json())
