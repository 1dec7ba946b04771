"""A runtime's piglit profiles read on the host: so that a profile its piglit lacks, or a test list
or a selection that leaves no test of it, is bad input said before any scenario runs (exit 2).

piglit finds a profile NAME as `tests/NAME.meta.xml` (other profiles by name), then
`tests/NAME.xml.gz` (its tests), then the Python module `tests/NAME.py`; an absolute path to a
.meta.xml or .xml file is taken as it is (framework/profile.py, load_test_profile). The tests of a
Python profile are known only by running it: such a profile is checked to be there, no more. The
tests are chosen by the functions the runner inside the path uses (harness/probe/piglitrun.py)."""
import difflib
import gzip
import os
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import listed_lines
from ..probe import piglitrun

TESTS_FOLDERS = ("usr/lib/*/piglit/tests", "usr/lib/piglit/tests", "usr/local/lib/piglit/tests")
SUFFIXES = (".meta.xml", ".xml.gz", ".py")
NOT_PROFILES = ("__init__", "find_static_tests")  # Python modules of tests/ that are no profile
LISTED = 12  # profiles named where one is unknown


def tests_folder(root: Path) -> Optional[Path]:
    """The runtime's piglit tests/ folder (its profiles), or None: no piglit there."""
    for pattern in TESTS_FOLDERS:
        for folder in sorted(root.glob(pattern)):
            if folder.is_dir():
                return folder
    return None


def profile_file(folder: Path, name: str) -> Optional[Path]:
    """The file piglit loads for profile `name`, as it looks for it ('tests/quick_gl',
    'quick_gl.py' and 'quick_gl' alike)."""
    stem, extension = os.path.splitext(os.path.basename(name))
    if extension == ".no_isolation":
        stem = name
    for suffix in SUFFIXES:
        found = folder / f"{stem}{suffix}"
        if found.is_file():
            return found
    return None


def profiles(folder: Path) -> List[str]:
    """The profiles a tests/ folder ships, by the name piglit takes."""
    names = set()
    for entry in folder.iterdir():
        for suffix in SUFFIXES:
            if entry.name.endswith(suffix) and entry.is_file():
                names.add(entry.name[:-len(suffix)])
    return sorted(names - set(NOT_PROFILES))


def xml_tests(path: Path) -> List[str]:
    """The test names of an XML profile (`<Test name=...>`)."""
    opened = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    names = []
    with opened as handle:
        for _, element in ElementTree.iterparse(handle, events=("end",)):
            if element.tag == "Test" and element.get("name"):
                names.append(element.get("name", ""))  # as `piglit print-cmd` says it
            element.clear()
    return names


def test_names(folder: Path, name: str, depth: int = 0) -> Optional[List[str]]:
    """The tests of profile `name`, or None where only running it tells (a Python profile)."""
    found = profile_file(folder, name)
    if found is None or found.suffix == ".py" or depth > 4:
        return None
    if found.name.endswith(".meta.xml"):
        names: List[str] = []
        for element in ElementTree.parse(found).getroot().iter("Profile"):
            part = test_names(folder, (element.text or "").strip(), depth + 1)
            if part is None:
                return None
            names += part
        return names
    return xml_tests(found)


def problems(root: Path, settings: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(key, why) for what the runtime at `root` cannot run of the profile form's settings; none
    where the runtime has no piglit at all (the scenario's Skip names the package)."""
    folder = tests_folder(root)
    name = settings.get("profile")
    if folder is None or not isinstance(name, str) or Path(name).is_absolute():
        return []
    shown_folder = "/" + str(folder.relative_to(root))  # found under root by tests_folder
    if profile_file(folder, name) is None:
        shipped = profiles(folder)
        near = difflib.get_close_matches(name, shipped, n=3)
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        return [("profile", f"the runtime's piglit has no profile {name!r} ({hint}{shown_folder} "
                 f"has {', '.join(shipped[:LISTED])}{', ...' if len(shipped) > LISTED else ''})")]
    names = test_names(folder, name)
    if names is None:
        return []
    listed = settings.get("test_list")
    if listed:
        names, _ = piglitrun.listed(listed, names)
        if not names:
            return [("test_list", f"{first_line(Path(listed))}: names no test of profile {name} "
                     "(nor does any other line)")]
    chosen = piglitrun.chosen(names, types.SimpleNamespace(
        include=settings.get("include", []), exclude=settings.get("exclude", []),
        fraction=piglitrun.fraction(settings.get("fraction", "1/1"))))
    if not chosen:
        key = "fraction" if "fraction" in settings else "include"
        return [(key, f"no test of profile {name} is left after include, exclude and fraction "
                 f"(of {len(names)})")]
    return []


def first_line(path: Path) -> str:
    """`FILE:LINE: 'name'`: a test list's first name, where it is."""
    for number, line in listed_lines(path, "a piglit test list")[:1]:
        return f"{path}:{number}: {piglitrun.piglit_name(line)!r}"
    return str(path)
