"""The `cdi` commands: write a CDI spec for this host's driver, judge specs against the live
driver."""
import sys
from pathlib import Path
from typing import List

from ..host import cdi, cdicheck
from ..runtimes import chosen_toolset
from ..core.errors import InputError, ToolMissing
from ..scenario.pathspec import DriverMode
from .codes import EXIT_FAILED, EXIT_OK


def cmd_cdi(args) -> int:
    return cdi_generate(args) if args.cdi_command == "generate" else cdi_check(args)


def cdi_generate(args) -> int:
    toolset = chosen_toolset.load(args.toolset)
    live = cdicheck.live_driver(toolset)
    out = Path(args.out)
    if out.suffix != ".json":
        raise InputError(f"--out {out}: a CDI spec file's name ends in .json (CDI readers skip "
                         "other files)")
    try:
        generated = cdi.generate(live.driver, DriverMode(args.mode), out, toolset.path("bwrap"))
    except (InputError, ToolMissing) as exc:
        raise InputError(f"cdi generate: {exc}") from None
    try:
        generated.write(out)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write it: {exc.strerror or exc}") from None
    devices = [d["name"] for d in generated.spec["devices"]]
    mounts = len(generated.spec["devices"][0]["containerEdits"].get("mounts", []))
    print(f"wrote {out} ({cdi.KIND}: {', '.join(devices)}; {mounts} mounts, {len(generated.files)} "
          "files in "
          f"{cdi.files_folder(out)}); use: podman run --device {cdi.KIND}={cdi.ALL} with the spec "
          "in "
          f"{' or '.join(cdi.SPEC_DIRS)}", file=sys.stderr)
    return EXIT_OK


def cdi_check(args) -> int:
    specs: List[str] = [str(p) for p in args.specs] or cdi.system_specs()
    if not specs:
        raise InputError(f"no CDI spec to check: none in {' or '.join(cdi.SPEC_DIRS)}; name one "
                         "(cdi check SPEC)")
    # every input judged good before any is checked
    loaded = [(path, cdicheck.load(path)) for path in specs]
    live = cdicheck.live_driver(chosen_toolset.load(args.toolset))
    stale = 0
    for path, spec in loaded:
        findings = cdicheck.check(spec, live)
        problems = [f for f in findings if f.stale]
        stale += bool(problems)
        for finding in findings:
            print(f"{path}: {'stale: ' if finding.stale else ''}{finding.text}")
        verdict = f"stale ({len(problems)} problems)" if problems else "current"
        print(f"{path}: {verdict} for the live driver ({live.version or 'version unknown'})")
    return EXIT_FAILED if stale else EXIT_OK
