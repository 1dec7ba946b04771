"""Where the package's own files are, wherever a module of it lies: its data (matrices, runtime
recipes, the CDI schema), templates, goldens and probes, and the checkout around it."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # harness/
DATA = PACKAGE / "data"
GOLDENS = PACKAGE / "goldens"
PROBES = PACKAGE / "probe"
# a source checkout's root (nix/, scripts/), where the package runs from one
CHECKOUT = PACKAGE.parent
