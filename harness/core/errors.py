"""The harness's one error tree, and the helpers that keep every message of it one bounded line.

Everything the harness raises is a HarnessError, in one of four branches that say whose the fault
is and how the command line ends: InputError (bad input from the user: exit 2), ToolMissing (a
program, library or feature this machine lacks: exit 2, the message says what to install),
ComponentError (a launched component failed: a server, QEMU, podman, flatpak, a builder: exit 1)
and InternalError (a fault of the harness itself: exit 70). Values are shown cut, files are read
and parsed so that any failure (unreadable, not UTF-8, not JSON, nested too deeply) is an
InputError."""
import json
import re
import reprlib
import unicodedata
from pathlib import Path
from typing import List, Optional, Tuple

SHOWN_LIMIT = 80
PATH_LIMIT = 240
LINE_LIMIT = 1000


class HarnessError(Exception):
    """Everything the harness raises: a caller that must not stop catches this one base. Its
    message is one line per problem (`problems`); its branch sets the command line's exit code."""

    exit_code = 1

    @property
    def problems(self) -> List[str]:
        return [one_line(line) for line in str(self).splitlines()
                if line.strip()] or [type(self).__name__]


class InputError(HarnessError):
    """Bad input from the user (matrix file, CLI arguments, manifest). Exit code 2.

    Holds one line per problem so that every problem is reported at once.
    """

    exit_code = 2

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self._problems = [one_line(str(problem)) for problem in problems]
        super().__init__("\n".join(self._problems))

    @property
    def problems(self) -> List[str]:
        return self._problems


class ToolMissing(HarnessError):
    """A program, library or kernel feature this machine lacks; the message says what to install.
    Exit code 2: nothing ran that could have failed."""

    exit_code = 2


class ComponentError(HarnessError):
    """A component the harness launched or drove failed (a server, QEMU, podman, flatpak, a
    builder, tar); the message has its own words. Exit code 1."""


class InternalError(HarnessError):
    """A fault of the harness itself (a bug); the message says where. Exit code 70 (EX_SOFTWARE)."""

    exit_code = 70


class DefinitionError(InternalError, TypeError):
    """A class of the harness defined wrongly (a family that names no family): a TypeError, as
    Python's own for an abstract method left out."""


def escaped(char: str) -> str:
    return repr(char)[1:-1]


def visible(char: str) -> bool:
    return char == " " or unicodedata.category(char)[0] not in "CZ"


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """`text` with line breaks and other control characters escaped, cut at `limit` characters."""
    if not all(visible(char) for char in text):
        text = "".join(char if visible(char) else escaped(char) for char in text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def joined_lines(text: str, empty: str = "") -> str:
    """A tool's few last lines as one: its non-blank lines, stripped, joined by ' | ' (`empty`
    where it said nothing)."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or empty


def cut(text: object, limit: int = SHOWN_LIMIT) -> str:
    """A path or name as it goes into a message: one line, at most about `limit` characters."""
    return one_line(str(text), limit)


_repr = reprlib.Repr()
(_repr.maxlevel, _repr.maxstring, _repr.maxother,
 _repr.maxlong) = 3, SHOWN_LIMIT, SHOWN_LIMIT, SHOWN_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """repr(value) for a message: one line, cut to about `limit` characters with the full length."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit - 1]}…' ({len(value)} chars)"
    try:
        text = _repr.repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return one_line(text)
    size = f"{len(value)} items" if isinstance(value, (list, tuple, dict, set)) else "cut"
    return f"{one_line(text[:limit - 1])}… ({size})"


PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def shown_key(name: object) -> str:
    """A table key as it goes into a problem line: as is when plain, else quoted and cut."""
    return name if isinstance(name, str) and PLAIN_KEY.match(name) else shown(name, 40)


def decoded(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start})") from None


def read_text(path: Path, what: str) -> str:
    """A file's text, or an InputError naming the file: `what` says what the file was meant to
    be."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{cut(path, PATH_LIMIT)}: cannot read {what}: "
                         f"{exc.strerror or exc}") from None
    return decoded(data, cut(path, PATH_LIMIT))


def listed_lines(path: Path, what: str) -> List[Tuple[int, str]]:
    """A list file's entries: its lines that are neither blank nor `#` comments, stripped and
    numbered from 1 (read as read_text reads)."""
    return [(number, line.strip()) for number, line in
            enumerate(read_text(path, what).splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def parse_json(text: str, source: str):
    """json.loads with every failure as a one-line InputError naming `source`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                         f"{exc.colno})") from None
    except RecursionError:
        raise InputError(f"{source}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError(f"{source}: not valid JSON: {parser_message(exc)}") from None


def parser_message(exc: ValueError) -> str:
    """A parser's ValueError as one short line, without Python's advice on how to raise its
    limits."""
    return cut(str(exc).split(";")[0], 200)


def bad_character(text: str) -> Optional[str]:
    """Why `text` cannot be one argument or value: a NUL, a line break or another control
    character (tab allowed), or a lone surrogate (an escape in JSON that is no character); else
    None."""
    for index, char in enumerate(text):
        if char == "\0":
            return f"contains a NUL character at offset {index}"
        if char != "\t" and (unicodedata.category(char) == "Cc" or char in "\x85\u2028\u2029"):
            return f"contains a control character ({escaped(char)}) at offset {index}"
        if unicodedata.category(char) == "Cs":
            return f"contains a lone surrogate ({escaped(char)}) at offset {index}"
    return None


def unencodable(texts: List[str]) -> Optional[str]:
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{shown(text)} cannot be written as UTF-8 (lone surrogate at offset "
                    f"{exc.start})")
    return None
