"""Text made to fit the report: lines of a grid cell cut at word boundaries (never inside a word),
the short cause of a Skip, and a Python-quoted value shown as written.

A cell's width is known in em, not in characters: a text's width is estimated from the widths of
DejaVu Sans (the widest of the common sans fonts, Debian's default), so that it fits in the
others."""
import ast
import re
import warnings
from typing import Dict, List

# em per character, the largest of each group in DejaVu Sans; anything else (wide or not Latin): 1.
WIDTH_GROUPS = {0.28: "ijlIJ'", 0.32: " .,:;|", 0.34: "/", 0.37: "f-", 0.39: "()[]t", 0.41: "r!",
                0.5: "_",
                0.55: "szc", 0.61: "kvxyLFPTY", 0.64: "abdeghnopquES0123456789", 0.7: "KAVXZBRC",
                0.79: "UNHDGOQ", 0.84: "w+=#≠<>~", 0.87: "M", 0.98: "m", 0.99: "W"}
WIDTHS: Dict[str, float] = {char: width for width, chars in WIDTH_GROUPS.items() for char in chars}
ELLIPSIS = "…"
# a line may end after these; after a dot too where a letter follows (libglapi.so)
BREAK_AFTER = " -/_,"


def text_width(text: str) -> float:
    """The text's width in em (of the font it is set in), as DejaVu Sans sets it, or a little
    more."""
    return sum(WIDTHS.get(char, 1.0) for char in text)


def word_parts(text: str) -> List[str]:
    """The text in pieces a line may end between, joined back by "".join: after a space, a
    hyphen, a slash, an underscore, a comma, a dot before a letter, and between the humps of a
    camelCase name (vk|Enumerate|Physical|Devices). A word is never cut inside."""
    parts, current = [], ""
    for index, char in enumerate(text):
        before = text[index - 1] if index else ""
        if current and char.isupper() and before.islower():
            parts.append(current)
            current = ""
        current += char
        after = text[index + 1] if index + 1 < len(text) else ""
        if char in BREAK_AFTER or (char == "." and after.isalpha()):
            parts.append(current)
            current = ""
    return parts + [current] if current else parts


def wrap(text: str, lines: int, width: float) -> List[str]:
    """At most `lines` lines of at most `width` em, broken between word parts; what does not fit
    (or a word wider than a line) is left out, and the last line shown ends in an ellipsis."""
    found: List[List[str]] = []
    if lines <= 0:
        return []
    for part in word_parts(" ".join(text.split())):
        if found and text_width("".join(found[-1] + [part]).rstrip()) <= width:
            found[-1].append(part)
        elif len(found) < lines and text_width(part.rstrip()) <= width:
            found.append([part])
        else:
            return ellipsized(found, width) if found else [ELLIPSIS]
    return ["".join(line).strip() for line in found]


def ellipsized(found: List[List[str]], width: float) -> List[str]:
    """The lines, the last one ending in an ellipsis (word parts taken off it until it fits)."""
    last = found[-1]
    while last and text_width("".join(last).rstrip() + ELLIPSIS) > width:
        last.pop()
    if not last and len(found) > 1 and text_width("".join(found[-2]).rstrip() + ELLIPSIS) <= width:
        found.pop()  # the ellipsis at the end of the line before, rather than on a line of its own
        last = found[-1]
    shown = ["".join(line).strip() for line in found[:-1]]
    return shown + [("".join(last).rstrip() + ELLIPSIS).lstrip()]


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut between word parts (then an ellipsis), never inside a
    word."""
    if len(text) <= limit:
        return text
    parts, kept = word_parts(text), ""
    for part in parts:
        if len((kept + part).rstrip()) > limit - 1:
            break
        kept += part
    return (kept or parts[0]).rstrip() + ELLIPSIS  # a first word longer than the limit: whole


# --- the cause of a Skip --------------------------------------------------------------------------

# A context the cell already gives (its row is the runtime; its colour says it did not run).
CONTEXT = re.compile(r"^(?:runtime \S+|not run): ")
HAS_NO = re.compile(r"^(?P<who>.+?) (?:has|have) no (?P<what>.+?)(?: (?:on|for|at) .+)?$")
NEEDS = re.compile(r"^.*? needs? (?P<what>.+)$")
SHORTER = ((re.compile(r"\bDRM render node"), "render node"),
           (re.compile(r" on this (?:host|machine)\b"), ""),
           (re.compile(r"^the "), ""), (re.compile(r"\b(\d+\.\d+)\.\d+\b"), r"\1"),
           (re.compile(r"(?:^| )/\S+"), ""))


def without_parentheses(text: str) -> str:
    """The text without its parenthesised parts (nested ones included)."""
    kept, depth = "", 0
    for char in text:
        depth += char == "("
        if depth == 0:
            kept += char
        depth -= char == ")" and depth > 0
    return " ".join(kept.split())


def short_cause(reason: str) -> str:
    """What a Skip's reason says in a few words: its first clause, without the parts that say
    how (parentheses), the context the cell gives, the host, a path; 'X has no Y' as 'no Y in X',
    'doing Z needs Y' as 'needs Y'. 'QEMU 7.2.22 has no venus on virtio-gpu-gl-pci (QEMU >= 9.2:
    ...)' -> 'no venus in QEMU 7.2'."""
    text = CONTEXT.sub("", without_parentheses(reason))
    text = re.split(r"; |: | - | — |, ", text, maxsplit=1)[0].strip().rstrip(".")
    for pattern, replacement in SHORTER:
        text = pattern.sub(replacement, text).strip() or text
    has_no, needs = HAS_NO.match(text), NEEDS.match(text)
    if has_no:
        who = has_no["who"]
        text = f"no {has_no['what']}" + ("" if CONTEXT.match(who + ": ") else f" in {who}")
    elif needs:
        text = f"needs {needs['what']}"
    return text or "skip"


# --- a value as written ---------------------------------------------------------------------------

# A Python string literal (a check's detail writes its values with !r): it opens after a space or a
# bracket, not inside a word (the host's), and closes before one.
QUOTED = re.compile(r"""(?<![\w'"])(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")(?![\w])""")


def as_written(text: object) -> str:
    """The text with each quoted Python literal that has escapes shown as its value: a renderer
    rule '^virgl( \\\\(.+\\\\))?$' (repr's doubled backslashes) as '^virgl( \\(.+\\))?$', as the
    path table writes it."""
    def plain(match: "re.Match[str]") -> str:
        literal = match.group(0)
        # only repr's doubled backslashes are undone; a rule as written stays
        if "\\\\" not in literal:
            return literal
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an escape Python does not know is kept as it is
                value = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            return literal
        return (f"{literal[0]}{value}{literal[0]}"
                if isinstance(value, str) and "\n" not in value else literal)

    return QUOTED.sub(plain, str(text)) if text is not None else ""
