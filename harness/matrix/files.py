"""Reading a matrix file by its suffix: TOML, JSON, or Nix (evaluated with nix-instantiate);
every failure one InputError line naming the file."""
import re
import subprocess
from pathlib import Path

from ..core.errors import InputError, cut, decoded, parse_json, parser_message, read_text, shown
from ..system.process import run_tracked

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

NIX_TIMEOUT_S = 120.0


def read_declaration(path: Path):
    """Parse a matrix file by its suffix: .toml, .json, or .nix (evaluated with nix-instantiate)."""
    source = str(path)
    if not path.is_file():
        why = "is a directory" if path.is_dir() else "no such file"
        raise InputError(f"{source}: cannot read matrix file: {why}")
    suffix = path.suffix
    if suffix == ".nix":
        return evaluate_nix(path)
    if suffix == ".json":
        return parse_json(read_text(path, "matrix file"), source)
    if suffix == ".toml":
        return parse_toml(read_text(path, "matrix file"), source)
    raise InputError(f"{source}: unknown matrix format {shown(suffix)} (use .toml, .json or .nix)")


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {cut(exc, 200)}") from None
    except RecursionError:
        raise InputError(f"{source}: not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError(f"{source}: not valid TOML: {parser_message(exc)}") from None


def evaluate_nix(path: Path):
    """`nix-instantiate --eval --strict --json`, killed (with anything it started) after
    NIX_TIMEOUT_S."""
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(path)]
    try:
        done = run_tracked(argv, NIX_TIMEOUT_S)
    except FileNotFoundError:
        raise InputError(f"{path}: evaluating a .nix matrix needs nix-instantiate (apt-get install "
                         "nix-bin)") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: Nix evaluation did not finish within {NIX_TIMEOUT_S:g} s "
                         "(an endless loop?)") from None
    if done.returncode != 0:
        raise InputError(f"{path}: nix-instantiate failed: "
                         f"{nix_error(done.stderr.decode('utf-8', 'replace'))}")
    output = f"{path} (nix-instantiate output)"
    return parse_json(decoded(done.stdout, output), output)



NIX_NOISE = re.compile(r"^(…|at .*:\d+:\d+:$|\d*\s*\||\(use '?--show-trace)")


def meaningful(line: str) -> bool:
    return bool(line.strip()) and not NIX_NOISE.match(line.strip())


def without_prefix(line: str) -> str:
    text = line.strip()
    return text[len("error:"):].strip() if text.startswith("error:") else text


def nix_error(stderr: str) -> str:
    """The message of nix-instantiate's `error:` line (when that line is bare, the first line of
    the message after it), not the source excerpt, caret or trace that nix prints after it."""
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            message = without_prefix(line) or next(
                (without_prefix(later) for later in lines[index + 1:] if meaningful(later)), "")
            return cut(message, 300) or "error (no message)"
    rest = [line.strip() for line in lines if meaningful(line) and not line.startswith("warning:")]
    return cut(rest[-1], 300) if rest else "no output"
