"""The `security` commands: a hostile vtest client against a real server, measured; a saved input
replayed."""
import json
import sys
from pathlib import Path
from typing import List, Optional

from ..report import outdir
from ..scenario import paths
from ..runtimes import recipes, builds, chosen_toolset
from ..launch import vtest
from ..studies import vtestsecurity
from ..scenario.model import HOST, Runtime, RuntimeKind
from ..system.services import ServiceError
from ..core.errors import ComponentError, InputError
from .codes import EXIT_FAILED, EXIT_OK
from .output import print_table


# what security writes in its --out
SECURITY_PRODUCTS = ("record", "fuzz-*", "security.json", "replay*")


def cmd_security(args) -> int:
    with outdir.claimed(args.out, "--out", SECURITY_PRODUCTS):  # refused input: nothing left there
        toolset = chosen_toolset.load(args.toolset)
        needed = [vtest.SERVICE, "bwrap", "python3", "mesa"]
        if toolset.missing(needed):
            raise InputError(f"security: needs {', '.join(toolset.missing(needed))}")
        if args.security_command == "replay" and not args.input.is_file():
            raise InputError(f"security replay: {args.input}: no such file (a fuzz run saves its "
                             "inputs in "
                             "OUT/fuzz-MODE/inputs/)")
        fuzzed = None if args.security_command == "replay" else \
            (hostile_runtime(args), venus_client_runtime(args, toolset))
    try:
        if fuzzed is None:
            return replay(args, toolset)
        return fuzz(args, toolset, *fuzzed)
    finally:
        outdir.release(args.out)


def replay(args, toolset) -> int:
    said, crashes = vtestsecurity.replay(toolset, args.input, args.out, args.deadline, args.mode[0],
                                         venus=args.venus)
    crashed = f"; the server's process for it crashed ({crashes} SIGSEGV)" if crashes else ""
    print(f"{args.input}: {said or 'no answer from the fuzzer'}{crashed} "
          f"(server log: {args.out / 'replay-server.log'})")
    return EXIT_OK if said and said.startswith("answered") and not crashes else EXIT_FAILED


def fuzz(args, toolset, runtime: Runtime, venus_runtime: Optional[Runtime]) -> int:
    print(f"recording the {'Vulkan probe through Venus' if venus_runtime else 'gl probe'}'s vtest "
          "session ...",
          file=sys.stderr)
    session = vtestsecurity.record_session(toolset, args.out / "record", venus_runtime)
    runs: List[vtestsecurity.FuzzRun] = []
    unmeasured: List[dict] = []
    for mode in args.modes:
        print(f"fuzzing a {mode} server from {session} ({session.stat().st_size} bytes), seed "
              f"{args.seed} ...",
              file=sys.stderr)
        try:
            runs.append(vtestsecurity.fuzz(toolset, session, args.out / f"fuzz-{mode}", args.seed,
                                           args.count,
                                           args.seconds, args.deadline, mode=mode, path=args.path,
                                           runtime=runtime,
                                           venus=venus_runtime is not None))
        except (vtestsecurity.ModeUnavailable, ServiceError, ComponentError) as exc:
            said = " ".join(str(exc).split())
            print(f"security fuzz: {mode}: not measured: {said}", file=sys.stderr)
            unmeasured.append({"mode": mode, "not_measured": said})
        (args.out / "security.json").write_text(json.dumps({"runs": [run.to_json() for run in runs],
                                                            "not_measured": unmeasured},
                                                           indent=1) + "\n")
    if runs:
        print_table(runs_table(runs))
    folders = sorted({str(Path(saved["file"]).parent) for run in runs for saved in run.inputs})
    print(f"inputs that dropped or hung: {', '.join(folders) or 'none'}; replay one: gpu-harness "
          "security replay "
          "FILE --mode MODE", file=sys.stderr)
    return EXIT_OK if not unmeasured and all(r.server_alive and r.honest.startswith("Pass")
                                             and not r.crashes
                                             and not r.kernel_faults for r in runs) else EXIT_FAILED


def built_runtime(name: str) -> Runtime:
    recipes.load_recipe(name)  # an unknown name is an InputError naming the shipped ones
    built = builds.ensure(name)
    return Runtime(name, RuntimeKind.DEBOOTSTRAP, str(built.root), f"runtime {name}", name)


def venus_client_runtime(args, toolset) -> Optional[Runtime]:
    """With --venus RUNTIME: that runtime (its Mesa's Venus driver records the session), once the
    server is known to take --venus and no --path is asked for."""
    if args.venus is None:
        return None
    if args.path is not None:
        raise InputError("security fuzz: --venus runs the hostile client on the host (--path is "
                         "for the GL paths)")
    if not vtest.has_venus(toolset.path(vtest.SERVICE)):
        raise InputError("security fuzz --venus: virgl_test_server "
                         f"{toolset.version(vtest.SERVICE) or '?'} has no "
                         "Venus (--venus): use --toolset runtime:trixie-host or runtime:sid-host")
    return built_runtime(args.venus)


def hostile_runtime(args) -> Runtime:
    """The runtime the hostile client's path runs over (built if need be); checked before anything
    runs."""
    if args.path is None:
        if args.runtime != HOST.name:
            raise InputError("security fuzz: --runtime goes with --path (the path the hostile "
                             "client runs in)")
        return HOST
    with_socket = [path for path, spec in paths.PATHS.items() if vtest.SERVICE in spec.services
                   and not spec.venus]
    if args.path not in with_socket:
        raise InputError(f"security fuzz: {args.path!r} is not a path that gives its apps a virgl "
                         "vtest socket "
                         f"({', '.join(with_socket)}){vm_hint(args.path)}")
    if args.runtime == HOST.name:
        return HOST
    return built_runtime(args.runtime)


def vm_hint(path: str) -> str:
    """Where a VM path's hostile guest program is run instead (it fuzzes QEMU, not a vtest
    server)."""
    spec = paths.PATHS.get(path)
    if spec is None or not spec.guest_gpu:
        return ""
    return ("; a VM's hostile guest program fuzzes QEMU's virglrenderer through the guest's "
            "device: "
            f"gpu-harness run --matrix harness/data/security.toml --paths {path}")


def runs_table(runs: List[vtestsecurity.FuzzRun]):
    from rich.table import Table

    table = Table(title="a hostile vtest client, an honest app beside it")
    for column in ("server", "mode", "hostile client in", "inputs", "answered", "dropped",
                   "waiting", "hung",
                   "crashes", "server alive", "peak RSS MB", "honest app", "a crash there reaches"):
        table.add_column(column)
    for run in runs:
        table.add_row(run.server, run.mode, run.client_in, f"{run.tried} in {run.seconds:g} s",
                      str(run.answered), str(run.dropped),
                      str(run.waiting), str(run.hung), crashes_text(run),
                      "yes" if run.server_alive
                      else f"NO: {run.server_end.partition('(')[2].rstrip(')') or 'ended'}",
                      f"{run.peak_rss_kb / 1024:.0f}", run.honest.split(":")[0],
                      reach_text(run.reach))
    return table


def crashes_text(run: vtestsecurity.FuzzRun) -> str:
    """The server's own count, and the faults the kernel logged for its programs (or why unread)."""
    kernel = (f" + {len(run.kernel_faults)} in the kernel's log" if run.kernel_faults
              else "" if not run.kernel_log else " (kernel's log not read)")
    return f"{run.crashes}{kernel}"


def reach_text(reach: dict) -> str:
    """`home: yes; writes /, /tmp, ...; network eth0; 212 processes`, from serverconfine.reach."""
    if "error" in reach or not reach:
        return f"not measured ({reach.get('error', 'no probe')})"
    network = ", ".join(reach.get("network") or []) or "none"
    private = (f" (private: {', '.join(reach['writable_private'])})"
               if reach.get("writable_private") else "")
    syscalls = reach.get("syscalls") or {}
    refused = "; ".join(f"{call} {said}" for call,
                        said in syscalls.items()) if syscalls else "not tried"
    return (f"home {'readable' if reach.get('home_readable') else 'not there'}; writes the host's "
            f"{', '.join(reach.get('writable_host') or []) or 'nothing'}{private}; network "
            f"{network}; "
            f"{reach.get('processes')} processes; {refused}" + (f"; {reach['seccomp']}"
                                                                if reach.get("seccomp") else ""))
