"""Which toolset a run uses: a manifest (`--toolset FILE`, or GPU_HARNESS_TOOLSET), a built
runtime's programs (`runtime:NAME`), or what is discovered on this host."""
import os
from pathlib import Path
from typing import Optional

from . import pinned_toolset
from ..host.toolset import Toolset, discover, load_manifest


def load(chosen: Optional[Path] = None) -> Toolset:
    name = str(chosen) if chosen else os.environ.get("GPU_HARNESS_TOOLSET", "")
    if name.startswith(pinned_toolset.PREFIX):
        return pinned_toolset.load(name)
    return load_manifest(Path(name)) if name else discover()
