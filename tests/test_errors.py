"""One error tree: every exception class the harness defines derives from HarnessError, in one of
its four branches; no module raises a bare builtin exception (but SystemExit, an exit on purpose);
the command line's one boundary ends each branch with its exit code and one line."""
import ast
import builtins
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import harness
from harness.core.errors import (ComponentError, HarnessError, InputError, InternalError,
                                 ToolMissing)

HARNESS = Path(harness.__file__).parent
BRANCHES = (InputError, ToolMissing, ComponentError, InternalError)
BUILTIN_EXCEPTIONS = {name for name in dir(builtins)
                      if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins,
                                                                                          name),
                                                                                  BaseException)}


def harness_modules():
    for found in pkgutil.walk_packages(harness.__path__, "harness."):
        if found.name.startswith("harness.probe") or found.name.endswith("__main__"):
            continue  # the probes run inside a runtime, standard library only
        yield importlib.import_module(found.name)


def test_every_exception_class_of_the_harness_is_in_the_tree_on_a_branch():
    defined = {cls for module in harness_modules() for _, cls in inspect.getmembers(module,
                                                                                    inspect.isclass)
               if issubclass(cls, BaseException) and cls.__module__.startswith("harness.")}
    assert len(defined) > 20  # the whole package was read
    outside = sorted(cls.__qualname__ for cls in defined if not issubclass(cls, HarnessError))
    assert outside == []
    off_branch = sorted(cls.__qualname__ for cls in defined if cls is not HarnessError
                        and not any(issubclass(cls, branch) for branch in BRANCHES))
    assert off_branch == []


def test_no_module_raises_a_bare_builtin_exception():
    raised = []
    for path in sorted(HARNESS.rglob("*.py")):
        if {"probe", "data"} & set(path.relative_to(HARNESS).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target,
                              ast.Name) and target.id in BUILTIN_EXCEPTIONS - {"SystemExit"}:
                    raised.append(f"{path.relative_to(HARNESS.parent)}:{node.lineno}: {target.id}")
    assert raised == []


def test_each_branch_has_its_exit_code_and_the_message_is_one_line_per_problem():
    assert [branch.exit_code for branch in BRANCHES] == [2, 2, 1, 70]
    assert InputError(["a\nb", "c"]).problems == ["a\\nb", "c"]
    assert ComponentError("server died\n  last words").problems == ["server died", "  last words"]


@pytest.mark.parametrize("error", [InputError("bad --out"),
                                   ToolMissing("no bwrap: apt-get install bubblewrap"),
                                   ComponentError("podman: exit 125\nError: no such image"),
                                   InternalError("a bug in the grid")],
                         ids=lambda e: type(e).__name__)
def test_the_command_line_ends_each_branch_with_its_code_and_its_lines(error, monkeypatch, capsys):
    """The one boundary (cli.commands.main): whatever a command raises of the tree is its lines on
    stderr, 'internal error' for a fault of ours, and the branch's exit code; never a traceback."""
    from harness.cli import commands

    def failing(args):
        raise error

    monkeypatch.setitem(commands.COMMANDS, "list", failing)
    assert commands.main(["list"]) == error.exit_code
    said = capsys.readouterr().err.splitlines()
    kind = "internal error" if isinstance(error, InternalError) else "error"
    assert said == [f"gpu-harness: {kind}: {line}" for line in error.problems]
