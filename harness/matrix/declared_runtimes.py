"""The runtimes a matrix declares ([runtimes.NAME]): kinds, roots, recipes and image archives,
checked; `host` is always there."""
import os
import re
from typing import Dict, Optional

from ..runtimes import imagearchive, recipes, builds as built_runtimes
from ..core.errors import cut, shown
from ..core.errors import shown_key as key_name
from ..scenario.model import HOST, HOST_RUNTIME, Runtime, RuntimeKind
from .checks import Problems, check_keys, expect_text, expect_type, nearest

RUNTIME_KEYS = {"kind", "root", "description", "recipe", "archive"}
KIND_NAMES = [kind.value for kind in RuntimeKind]
# it becomes part of ids and folder names
RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def shipped_runtime(name: str) -> Optional[Runtime]:
    """A shipped runtime used by name without a declaration (as `kind = "debootstrap"`), or None."""
    if name not in recipes.recipe_names():
        return None
    return Runtime(name, RuntimeKind.DEBOOTSTRAP, "", f"shipped runtime {name}", name)


def unknown_runtime(name: object, runtimes: Dict[str, Runtime]) -> str:
    """The problem of a runtime name that is neither declared nor shipped, and how to get one."""
    declared = ", ".join(key_name(declared_name) for declared_name in runtimes)
    return (f"unknown runtime {shown(name)} ({nearest(name, [*runtimes, *recipes.recipe_names()])}"
            f"declared: {cut(declared, 200)}; shipped: "
            f"{', '.join(recipes.recipe_names())}; a tree of your own: [runtimes.NAME] kind = "
            "\"rootfs\", "
            f"root = \"/path\")")


def parse_runtimes(problems: Problems, table) -> Dict[str, Runtime]:
    runtimes = {HOST_RUNTIME: HOST}
    if not expect_type(problems, "runtimes", table, (dict,), "a table"):
        return runtimes
    for name, spec in table.items():
        key = f"runtimes.{key_name(name)}"
        if not (isinstance(name, str) and RUNTIME_NAME.match(name)):
            problems.add(key,
                         "a runtime name is letters, digits, '.', '_' and '-' (it becomes part of "
                         "scenario ids)")
        if not expect_type(problems, key, spec, (dict,), "a table"):
            continue
        check_keys(problems, key, spec, RUNTIME_KEYS)
        # A runtime with a problem stays declared (as a stand-in never expanded) so that its
        # uses in matrix.runtimes do not add "unknown runtime" lines to the real problem.
        runtimes[name] = parse_runtime(problems, key, name, spec) or Runtime(name,
                                                                             RuntimeKind.ROOTFS)
    return runtimes


def parse_runtime(problems: Problems, key: str, name: str, spec: dict) -> Optional[Runtime]:
    kind, root, description = (spec.get("kind", RuntimeKind.ROOTFS.value), spec.get("root", "/"),
                               spec.get("description", ""))
    ok = all([expect_text(problems, f"{key}.kind", kind),
              expect_text(problems, f"{key}.root", root),
              expect_type(problems, f"{key}.description", description, (str,), "a string")])
    if not ok:
        return None
    if kind not in KIND_NAMES:
        problems.add(f"{key}.kind",
                     f"unknown runtime kind {shown(kind)} (known: {', '.join(KIND_NAMES)})")
        return None
    kind = RuntimeKind(kind)
    if kind is RuntimeKind.IMAGE:
        return parse_image_runtime(problems, key, name, spec, description)
    if "archive" in spec:
        problems.add(f"{key}.archive",
                     f"only an image runtime (kind = {RuntimeKind.IMAGE.value!r}) has an archive")
        return None
    why = root_problem(root) if kind is RuntimeKind.ROOTFS else None
    if why:
        problems.add(f"{key}.root", why)
        return None
    if kind is RuntimeKind.DEBOOTSTRAP:
        recipe = spec.get("recipe", name)
        if not known_recipe(problems, f"{key}.recipe", recipe):
            return None
        return Runtime(name, kind, "", description, recipe)
    return Runtime(name, kind, root, description)


def known_recipe(problems: Problems, key: str, recipe) -> bool:
    if not expect_text(problems, key, recipe):
        return False
    if recipe not in recipes.recipe_names():
        problems.add(key,
                     f"no shipped recipe {shown(recipe)} (known: "
                     f"{', '.join(recipes.recipe_names())})")
        return False
    return True


def parse_image_runtime(problems: Problems, key: str, name: str, spec: dict,
                        description: str) -> Optional[Runtime]:
    """An image: its archive file (docker-archive or OCI archive, plain or gzip), or the runtime
    it is made from (recipe; made and cached on first use). The runtime's root is the archive."""
    if "root" in spec:
        problems.add(f"{key}.root",
                     "an image runtime has no root: name its archive (archive = FILE) or the "
                                    "runtime it is made from (recipe = NAME)")
        return None
    if ("archive" in spec) == ("recipe" in spec):
        problems.add(key,
                     "an image runtime needs exactly one of archive (a docker-archive or OCI "
                     "archive file) "
                          "and recipe (a shipped runtime to make the image from)")
        return None
    if "recipe" in spec:
        recipe = spec["recipe"]
        if not known_recipe(problems, f"{key}.recipe", recipe):
            return None
        return Runtime(name, RuntimeKind.IMAGE, str(built_runtimes.image_archive_path(recipe)),
                       description, recipe)
    archive = spec["archive"]
    if not expect_text(problems, f"{key}.archive", archive):
        return None
    why = imagearchive.problem(archive)
    if why:
        problems.add(f"{key}.archive", why)
        return None
    return Runtime(name, RuntimeKind.IMAGE, archive, description)


def root_problem(root: str) -> Optional[str]:
    if not os.path.isabs(root):
        return f"must be an absolute path, not {shown(root)}"
    if not os.path.exists(root):
        return f"{cut(root)} does not exist"
    if not os.path.isdir(root):
        return f"{cut(root)} is not a directory"
    return None
