"""Kernel modules a guest needs, resolved from the kernel's own modules.dep."""
import fnmatch
from pathlib import Path
from typing import AbstractSet, Dict, Iterable, List
from ...core.errors import ToolMissing

# What each guest feature needs; names as modprobe takes them ('-' and '_' are the same).
BASE_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
GPU_MODULES = ("virtio_gpu",)


def normalize(name: str) -> str:
    return name.replace("-", "_")


def module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return normalize(base)


def parse_modules_dep(text: str) -> Dict[str, List[str]]:
    """module relpath -> its dependencies' relpaths, keyed by normalized module name."""
    table = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        table[module_name(path.strip())] = [path.strip()] + deps.split()
    return table


def builtin_names(text: str) -> set:
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def resolve(wanted: Iterable[str], dep_table: Dict[str, List[str]],
            builtin: AbstractSet[str] = frozenset()) -> List[str]:
    """Relpaths to insmod, dependencies first, each once. Built-in modules need nothing."""
    order: List[str] = []
    visiting = set()

    def visit(name: str) -> None:
        name = normalize(name)
        if name in builtin:
            return
        if name not in dep_table:
            raise ToolMissing(f"module {name} is neither built in nor in modules.dep")
        path, *deps = dep_table[name]
        if path in order or name in visiting:
            return
        visiting.add(name)
        for dep in deps:
            visit(module_name(dep))
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def resolve_for_kernel(modules_dir: str, wanted: Iterable[str]) -> List[str]:
    root = Path(modules_dir)
    table = parse_modules_dep((root / "modules.dep").read_text())
    builtin_file = root / "modules.builtin"
    builtin = builtin_names(builtin_file.read_text()) if builtin_file.exists() else set()
    return resolve(wanted, table, builtin)


def aliases_matching(aliases_text: str, modalias: str) -> List[str]:
    """Modules whose modules.alias patterns match a device's modalias, as modprobe finds them."""
    found: List[str] = []
    for line in aliases_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias" and fnmatch.fnmatchcase(modalias, parts[1]):
            if normalize(parts[2]) not in found:
                found.append(normalize(parts[2]))
    return found


def for_modalias(modules_dir: str, modalias: str) -> List[str]:
    """The driver modules this kernel has for a device (its sysfs modalias); none if no match."""
    aliases = Path(modules_dir) / "modules.alias"
    if not modalias or not aliases.exists():
        return []
    return aliases_matching(aliases.read_text(), modalias)
