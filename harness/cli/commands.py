"""The `gpu-harness` command line's entry: parse the arguments, run the command, turn bad input
into one line and exit code 2."""
import sys
from typing import List, Optional

from ..core import log
from ..runtimes import cache
from ..system import process, reaper
from ..core.errors import HarnessError, InternalError
from ..system.interrupts import INTERRUPTS
from .cdi import cmd_cdi
from .codes import EXIT_INTERRUPTED
from .output import TerminalLines
from .parser import build_parser
from .results import cmd_baseline, cmd_diff, cmd_merge, cmd_report
from .security import cmd_security
from .scenarios import cmd_bench, cmd_exec, cmd_goldens_update, cmd_list, cmd_run
from .upkeep import cmd_cache, cmd_doctor, cmd_pins, cmd_runtimes, cmd_vfio

COMMANDS = {"vfio": cmd_vfio, "run": cmd_run, "list": cmd_list, "doctor": cmd_doctor,
            "exec": cmd_exec,
            "report": cmd_report, "bench": cmd_bench, "pins": cmd_pins, "runtimes": cmd_runtimes,
            "diff": cmd_diff, "baseline": cmd_baseline, "cache": cmd_cache, "merge": cmd_merge,
            "cdi": cmd_cdi, "security": cmd_security}


def main(argv: Optional[List[str]] = None) -> int:
    # SIGINT/SIGTERM: a run stops its scenarios and writes what finished; otherwise unwind so
    # services stop. The reaper covers what unwinding cannot; orphans of launched programs are
    # reparented to us (a child subreaper) and reaped before we exit.
    INTERRUPTS.install()
    process.become_subreaper()
    terminal = TerminalLines()
    log.logger().addHandler(terminal)
    log.quiet_third_parties()
    try:
        given = sys.argv[1:] if argv is None else list(argv)
        if given[:1] == ["vfio"]:  # its own parser takes all that follows, --help too
            from ..system import vfio

            return vfio.main(given[1:])
        args = build_parser().parse_args(given)
        if args.command != "cache":
            cache.hold_shared()  # nothing this process uses is pruned while it runs
        handler = cmd_goldens_update if args.command == "goldens" else COMMANDS[args.command]
        return handler(args)
    # the one boundary: input, a missing tool, a component, a fault of ours
    except HarnessError as exc:
        kind = "internal error" if isinstance(exc, InternalError) else "error"
        for problem in exc.problems:
            print(f"gpu-harness: {kind}: {problem}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        reaper.shutdown()
        process.reap_children()
        log.logger().removeHandler(terminal)

