"""The `security` commands: a hostile vtest client against a real server, measured; a saved input replayed."""
import json
import sys

from .. import toolsets, vtest, vtestsecurity
from ..errors import InputError
from .codes import EXIT_FAILED, EXIT_OK
from .output import print_table


def cmd_security(args) -> int:
    toolset = toolsets.load(args.toolset)
    if toolset.missing([vtest.SERVICE, "bwrap", "python3", "mesa"]):
        raise InputError(f"security: needs {', '.join(toolset.missing([vtest.SERVICE, 'bwrap', 'python3', 'mesa']))}")
    if args.security_command == "replay":
        if not args.input.is_file():
            raise InputError(f"security replay: {args.input}: no such file (a fuzz run saves its inputs in OUT/fuzz/inputs/)")
        said = vtestsecurity.replay(toolset, args.input, args.out, args.deadline)
        print(f"{args.input}: {said or 'no answer from the fuzzer'} (server log: {args.out / 'replay-server.log'})")
        return EXIT_OK if said and said.startswith("answered") else EXIT_FAILED
    print("recording the gl probe's vtest session ...", file=sys.stderr)
    session = vtestsecurity.record(toolset, args.out / "record")
    print(f"fuzzing from {session} ({session.stat().st_size} bytes), seed {args.seed} ...", file=sys.stderr)
    run = vtestsecurity.fuzz(toolset, session, args.out / "fuzz", args.seed, args.count, args.seconds, args.deadline)
    (args.out / "security.json").write_text(json.dumps({"runs": [run.to_json()]}, indent=1) + "\n")
    from rich.table import Table

    table = Table(title="a hostile vtest client, an honest app beside it")
    for column in ("server", "mode", "inputs", "answered", "dropped", "waiting", "hung", "crashes", "server alive",
                   "peak RSS MB", "honest app"):
        table.add_column(column)
    table.add_row(run.server, run.mode, f"{run.tried} in {run.seconds:g} s", str(run.answered), str(run.dropped),
                  str(run.waiting), str(run.hung), str(run.crashes), "yes" if run.server_alive else "NO",
                  f"{run.peak_rss_kb / 1024:.0f}", run.honest.split(":")[0])
    print_table(table)
    print(f"inputs that dropped or hung: {args.out / 'fuzz' / 'inputs'}; replay one: gpu-harness security replay FILE",
          file=sys.stderr)
    return EXIT_OK if run.server_alive and run.honest.startswith("Pass") and not run.crashes else EXIT_FAILED
