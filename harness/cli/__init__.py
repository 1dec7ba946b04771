"""The `gpu-harness` command line: a module per group of commands (cli.commands dispatches),
and the GPU tier's pack and run (gputier_pack, gputier: the standard library only until its wheels
are on the path, so this package imports nothing at its import). Imports every layer below it."""
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from .commands import main as run

    return run(argv)


def build_parser():
    from .parser import build_parser as parser

    return parser()
