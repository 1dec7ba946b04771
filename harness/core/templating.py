"""Renders the package's jinja2 templates: the scripts a run writes (rerun.sh, the guest's init and
workload) and the HTML report. Command lines are built as lists, never rendered as text."""
import shlex
from functools import lru_cache

import jinja2


@lru_cache(maxsize=2)
def environment(strict: bool = True) -> jinja2.Environment:
    """Strict for everything launched (a missing value is a bug); lenient for the report,
    which also renders results.json files written by older versions with fewer fields."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(["html.j2"]),
    )
    env.filters["shquote"] = shlex.quote
    env.filters["shquote_in"] = shquote_in
    return env


def shquote_in(arg: str, folder: str, variable: str = "OUT") -> str:
    """One shell word for `arg`, where `folder` (wherever it appears in it) is "$variable"
    instead: rerun.sh sends the probe's output to a folder of its own that way."""
    if not folder or folder not in arg:
        return shlex.quote(arg)
    return f'"${variable}"'.join(shlex.quote(part) if part else "" for part in arg.split(folder))


def render(name: str, strict: bool = True, **context) -> str:
    return environment(strict).get_template(name).render(**context)

