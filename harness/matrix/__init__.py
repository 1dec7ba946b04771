"""The scenario matrix: declared once (TOML, JSON or Nix), validated, expanded to Scenarios.

Validation reports every problem as one line `SOURCE: KEY: what is wrong`; any problem is an
InputError (exit code 2). Unknown keys are errors so that typos never pass silently. Imports the
layers below it (core to launch)."""
from .checks import MAX_TIMEOUT_S
from .declared_runtimes import shipped_runtime
from .expansion import (DEFAULT_MATRIX, Matrix, expand, load, on_displays, on_machine, pairing_rule,
                        shipped_with)
from .files import parse_toml, read_declaration
from .writing import declaration_of

__all__ = ["DEFAULT_MATRIX", "MAX_TIMEOUT_S", "Matrix", "declaration_of", "expand", "load",
           "on_displays", "on_machine", "pairing_rule", "parse_toml",
           "read_declaration", "shipped_runtime", "shipped_with"]
