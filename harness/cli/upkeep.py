"""The commands that look after this machine and the project: doctor, runtimes, pins, cache,
vfio."""
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..scenario import paths as path_registry
from ..runtimes import pins as pins_mod, recipes, builds as runtimes_mod, chosen_toolset
from ..host import toolset as toolset_mod
from ..core.errors import InputError, shown
from ..launch.families import registry
from .codes import EXIT_FAILED, EXIT_OK
from .output import print_table


ACCEL_TOOLS = ("qemu-system-x86_64", "kernel", "busybox")  # what trying a KVM guest takes
# Columns of long cells: at most this wide, each cell folded there (at words, a long word or path
# split where it must), so that a table fits a hundred-odd columns whatever it holds.
FOLDED = {"version": 14, "path": 28, "needed by": 24, "install": 24, "why not": 60, "holds": 36,
          "entry": 30}


def add_columns(table, names, right=()) -> None:
    for name in names:
        table.add_column(name, justify="right" if name in right else "left",
                         max_width=FOLDED.get(name),
                         overflow="fold", no_wrap=name not in FOLDED)


def needed_by(tool: str) -> str:
    """The paths that need a tool, by family: `sandbox 9, vm 4`; a family's only path by its id."""
    families: Dict[str, List[str]] = {}
    for path_id in path_registry.needing(tool):
        families.setdefault(path_registry.get(path_id).family, []).append(path_id)
    return ", ".join(ids[0] if len(ids) == 1 else f"{family} {len(ids)}" for family,
                     ids in families.items()) or "-"


def cmd_doctor(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    toolset = chosen_toolset.load(args.toolset)
    found = [(path, registry.of(path).available(path, toolset))
             for path in path_registry.PATHS.values()]
    accel, accel_reason = vm_acceleration(toolset)
    if args.json:
        # and what it says of the machine: each key in toolset.DOCTOR_KEYS, which a
        data = toolset.to_dict()
        # manifest ignores, so that this output loads as --toolset (a test loads every key this
        # prints)
        data["paths"] = [{"id": path.id, "family": path.family, "runs_here": reason is None,
                          "why_not": reason}
                         for path, reason in found]
        data["vm_acceleration"] = {"name": accel, "reason": accel_reason}
        data["architectures"] = architectures()
        print(json.dumps(data, indent=2))
        return EXIT_OK
    tools = Table(title=f"toolset ({escape(toolset.source)})")
    add_columns(tools, ("tool", "found", "version", "path", "needed by", "install"))
    for name, tool in sorted(toolset.tools.items()):
        spec = toolset_mod.TOOL_SPECS.get(name)
        tools.add_row(escape(name), "yes" if tool.found else "[red]no[/]", escape(tool.version
                                                                                  or "-"),
                      escape(tool.path or "-"), needed_by(name),
                      "-" if tool.found else escape(spec.debian if spec else "-"))
    path_table = Table(title="paths on this machine")
    add_columns(path_table, ("path", "family", "runs here", "why not"))
    for path, reason in found:
        path_table.add_row(path.id, path.family, "[red]no[/]" if reason else "yes",
                           escape(reason or ""))
    print_table(tools)
    print(f"render nodes: {', '.join(toolset.render_nodes) or 'none'}")
    print(f"VM acceleration: {accel or 'not tried'} ({accel_reason})")
    print("architectures:")  # one a line: an emulator's version is long
    for one in architectures():
        print(f"  {one['architecture']} {one['runs']}" + (f" ({one['version']})"
                                                          if one.get("version") else ""))
    print_table(path_table)
    return EXIT_OK


def architectures() -> List[dict]:
    """The architectures this host runs a runtime of: natively, or emulated by which qemu-user."""
    from ..host import emulation

    return [execution.to_dict() for execution in emulation.runnable().values()]


def vm_acceleration(toolset) -> Tuple[Optional[str], str]:
    """The acceleration a VM would get here (kvm or tcg, a tiny KVM guest tried once per host
    boot) and why; no name when the tools to try it are missing."""
    missing = toolset.missing(ACCEL_TOOLS)
    if missing:
        return None, f"missing {', '.join(missing)}"
    from ..system import reaper
    from ..launch.families.vm_launch import acceleration

    try:
        with reaper.temp_dir("gpu-harness-doctor-") as workdir:
            accel = acceleration(toolset, Path(workdir))
    except OSError as exc:
        return None, f"cannot try a KVM guest: {exc}"
    return accel.name, accel.reason


def cmd_runtimes(args) -> int:
    if args.runtimes_command == "list":
        return runtimes_list(args.json)
    if args.runtimes_command == "image":
        return runtimes_image(args.name, args.out)
    failed = 0
    for name in args.names:
        recipe = recipes.load_recipe(name)
        try:
            if args.runtimes_command == "lock":
                locked = runtimes_mod.lock(recipe)
                print(f"{name}: locked {len(locked.packages)} packages ({locked.archive_date}) "
                      f"in {recipes.lock_file(recipe)}")
            else:
                built = runtimes_mod.build(recipe, recipes.load_lock(recipe), strict=args.strict)
                drift = (f", {len(built.drift)} packages drifted from the lock" if built.drift
                         else "")
                print(f"{name}: {built.root} (Mesa {built.facts.get('mesa')}, "
                      f"{built.facts.get('size_mb')} MB{drift})")
                for line in built.drift:
                    print(f"  drift: {line}")
        except runtimes_mod.RuntimeBuildError as exc:
            print(f"gpu-harness: runtime {name}: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def runtimes_image(name: str, out: Path) -> int:
    try:
        image = runtimes_mod.write_image(name, out)
    except runtimes_mod.RuntimeBuildError as exc:
        print(f"gpu-harness: runtime {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{out}: image sha256:{image.id} ({image.format}, {image.compression}, "
          f"{out.stat().st_size >> 20} MB; "
          f"Mesa {recipes.component_versions(image.packages)['mesa']})")
    return EXIT_OK


def runtimes_list(as_json: bool) -> int:
    from rich.markup import escape
    from rich.table import Table

    found = [runtime_facts(name) for name in recipes.recipe_names()]
    if as_json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    table = Table(title="runtimes")
    for column in ("runtime", "suite/arch", "lock", "Mesa", "libc", "python", "size MB", "built",
                   "drift"):
        table.add_column(column)
    for one in found:
        lock = one["lock"]
        table.add_row(escape(one["name"]), escape(f"{one['suite']}/{one['architecture']}"),
                      escape(f"{lock['packages']} packages, {lock['archive_date']}") if lock
                      else "[red]none[/]",
                      *(escape(str(one[k] or "-")) for k in ("mesa", "libc", "python", "size_mb")),
                      "yes" if one["built"] else "no", str(len(one["drift"])) if one["built"]
                      else "-")
    print_table(table)
    return EXIT_OK


def runtime_facts(name: str) -> dict:
    """One runtime as `runtimes list --json` gives it: its recipe, lock and build (null when not
    built)."""
    recipe = recipes.load_recipe(name)
    lock = recipes.load_lock(recipe)
    built = runtimes_mod.cached(name)
    facts = built.facts if built else {}
    return {"name": name, "description": recipe.description, "suite": recipe.suite,
            "architecture": recipe.architecture,
            "recipe": recipe.source,
            "lock": {"file": str(recipes.lock_file(recipe)), "packages": len(lock.packages),
                     "archive_date": lock.archive_date} if lock else None,
            "built": built is not None, "root": str(built.root) if built else None,
            **{key: facts.get(key) for key in ("mesa", "libc", "python", "size_mb")},
            "drift": built.drift if built else None}


def cmd_pins(args) -> int:
    pins = pins_mod.load_all(args.dir)
    if not pins:
        raise InputError(f"{args.dir}: no pin files (*.json)")
    if args.pins_command in ("list", "check"):
        for pin in pins.values():
            if pin.follows:
                print(f"{pin.name:<16} follows the flake input {pin.follows} (its own package, "
                      "unmodified)")
            else:
                print(f"{pin.name:<16} {pin.version:<10} {pin.fetcher:<4} {pin.rev or '-':<22} "
                      f"{pin.hash}")
        return EXIT_OK
    unknown = [n for n in args.names if n not in pins]
    if unknown:
        raise InputError(f"pins update: no pin {shown(unknown[0])} in {args.dir} (known: "
                         f"{', '.join(pins)})")
    if (args.rev or args.pin_version) and len(args.names) != 1:
        raise InputError("pins update: --rev/--version need exactly one pin name")
    failed = 0
    for name in args.names or list(pins):
        try:
            print(pins_mod.update(args.dir / f"{name}.json", args.rev, args.pin_version).describe())
        except pins_mod.PinError as exc:
            print(f"{name}: not updated: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def cmd_cache(args) -> int:
    from ..runtimes import cache

    now, current = time.time(), runtimes_mod.current()
    if args.cache_command == "list":
        return cache_list(sorted(cache.entries(current=current), key=lambda e: (e.kind,
                                                                                -e.last_used)), now,
                          args.json)
    if args.older_than is None and not args.stale:
        raise InputError("cache prune: say what to remove: --older-than DAYS, --stale, or both")
    try:
        done = cache.prune(args.older_than, stale=args.stale, dry_run=args.dry_run, now=now,
                           current=current)
    except cache.CacheBusy as exc:
        print(f"gpu-harness: cache prune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    verb = "would remove" if args.dry_run else "removed"
    for entry in done.removed:
        why = "stale" if entry.current is False else f"unused {entry.age_days(now):.1f} days"
        print(f"{verb} {entry.kind} {entry.name} ({entry.size / 2**20:.0f} MiB, {why}): "
              f"{entry.path}")
    for why in done.failed:
        print(f"gpu-harness: kept {why}", file=sys.stderr)
    print(f"{verb} {len(done.removed)} entries, {sum(e.size for e in done.removed) / 2**20:.0f} "
          "MiB; "
          f"kept {len(done.kept)}, {sum(e.size for e in done.kept) / 2**20:.0f} MiB")
    return EXIT_FAILED if done.failed else EXIT_OK


def cache_list(found, now: float, as_json: bool) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..runtimes import cache

    if as_json:
        print(json.dumps({"root": str(cache.ROOT), "entries": [e.to_dict(now) for e in found]},
                         indent=2))
        return EXIT_OK
    table = Table(title=f"{cache.ROOT}: {len(found)} entries, "
                        f"{sum(e.size for e in found) / 2**30:.2f} GiB")
    add_columns(table, ("kind", "holds", "size MiB", "days unused", "current", "entry"),
                right=("size MiB", "days unused"))
    for entry in found:
        table.add_row(str(entry.kind), escape(entry.name), f"{entry.size / 2**20:.0f}",
                      f"{entry.age_days(now):.1f}",
                      {True: "yes", False: "[yellow]stale[/]", None: "-"}[entry.current]
                      if entry.made
                      else "not a run's: kept", escape(entry.path.name))
    print_table(table)
    return EXIT_OK


def cmd_vfio(args) -> int:
    from ..system import vfio

    return vfio.main(args.vfio_args)
