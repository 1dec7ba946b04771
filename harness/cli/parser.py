"""The command line's grammar: every command, its options and their help, and the argument
types that turn a bad value into one line (exit 2)."""
import argparse
from pathlib import Path

from .. import __version__
from ..runtimes import pins as pins_mod
from ..core.errors import InputError, shown
from ..matrix import MAX_TIMEOUT_S
from ..scenario.probes import GOLDENS_DIR


class Parser(argparse.ArgumentParser):
    def error(self, message):
        command = self.prog.replace("gpu-harness", "", 1).strip()
        raise InputError(f"{command}: {message}" if command else message)


def whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def seconds(text: str) -> float:
    """A timeout: a finite number of seconds, more than 0 and at most a week."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 0 < value <= MAX_TIMEOUT_S:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT_S:g} "
                                         f"seconds (a week), not {shown(text)}")
    return value


def security_modes(text: str) -> list:
    """`forking,confined`: server modes (harness.studies.vtestsecurity.MODES), each once."""
    from ..studies.vtestsecurity import MODES

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{shown(text)}: modes are {', '.join(MODES)} "
                                         "(comma-separated)")
    return list(dict.fromkeys(chosen))


def days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 0 <= value <= 36500:  # also false for nan
        raise argparse.ArgumentTypeError("must be a number of days from 0 to 36500, not "
                                         f"{shown(text)}")
    return value


def factor(text: str) -> float:
    """A factor of change: more than 1, at most 1000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not 1 < value <= 1000:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be more than 1 and at most 1000, not {shown(text)}")
    return value


MATRIX_HELP = "matrix file (.toml, .json, .nix); default: the shipped one"
TOOLSET_HELP = ("toolset.json manifest, or runtime:NAME (host-side programs from a built runtime); "
                "default: discover on this host")
GOLDENS_HELP = "golden images folder (default: %(default)s)"


MACHINE_HELP = ("run the chosen scenarios on this machine instead of where the matrix puts them: "
                "local, or a "
                "virtual GPU machine (virgl-guest, venus-guest: a QEMU guest whose virtio-gpu is "
                "the GPU the "
                "paths inside use; one boot runs all of its scenarios)")


EXEC_EPILOG = """\
what the command finds inside a path (native and software run it on this host, as it is):
  no display: no X11 or Wayland socket and no DISPLAY; render with surfaceless EGL
    (EGL_PLATFORM=surfaceless), and give piglit's programs --env PIGLIT_PLATFORM=surfaceless_egl
  not the host's files: /home, /root, /tmp, ... are hidden; --file HOST_PATH puts one at
    /run/gpu-harness/files/NAME (--file HOST_PATH:INSIDE_PATH elsewhere)
  a plain environment: the path's, the matrix's (--matrix) and --env NAME=VALUE

examples:
  gpu-harness exec --path vtest-virgl --runtime trixie -- python3 - < docs/examples/gl-renderer.py
  gpu-harness exec --path vtest-virgl --env PIGLIT_PLATFORM=surfaceless_egl \\
      -- /usr/lib/x86_64-linux-gnu/piglit/bin/glinfo
  gpu-harness exec --path podman-vtest --runtime trixie --file ~/scene.py \\
      -- python3 /run/gpu-harness/files/scene.py
"""


def add_selection(parser) -> None:
    parser.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    parser.add_argument("--paths", help="only these paths (comma-separated ids, see `doctor`)")
    parser.add_argument("--runtimes",
                        help="only these runtimes of the matrix (comma-separated names: host, "
                             "trixie, ...)")
    parser.add_argument("--probes",
                        help="only these probes of the matrix (comma-separated names: gl, vulkan, "
                             "or a "
                                         "workload the matrix declares)")
    parser.add_argument("--displays",
                        help="present on these displays too (comma-separated: offscreen, wayland, "
                             "x11): each scenario whose path can hand a display server's socket "
                             "to its workload also runs as ID+DISPLAY, its window captured")
    parser.add_argument("--filter",
                        help="only scenario ids matching this glob, e.g. 'vtest-*' "
                             "(PATH/RUNTIME/PROBE, "
                                         "and @MACHINE on a virtual GPU machine)")
    parser.add_argument("--toolset", type=Path, help=TOOLSET_HELP)
    parser.add_argument("--machine", help=MACHINE_HELP)
    parser.add_argument("--shard", metavar="K/N",
                        help="only the K-th of N parts of the chosen scenarios, balanced by "
                        "cost (every scenario is in exactly one part; a machine's scenarios stay "
                        "together)")
    parser.add_argument("--durations", type=Path, metavar="RESULTS",
                        help="balance --shard by the walls of this earlier run (a results.json or "
                             "its folder); "
                             "default: each family's typical cost")


def build_parser() -> Parser:
    parser = Parser(prog="gpu-harness",
                    description="Does GPU rendering really work through this path?")
    parser.add_argument("--version", action="version", version=f"gpu-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run the matrix and write reports")
    add_selection(run)
    run.add_argument("--out", type=Path, default=Path("gpu-harness-out"),
                     help="output folder for results.json, junit.xml, report.html (default: "
                          "%(default)s)")
    run.add_argument("-j", "--jobs", type=positive_int, default=2,
                     help="scenarios run in parallel (default: %(default)s)")
    run.add_argument("--retries", type=non_negative_int, default=0, metavar="N",
                     help="re-run a failed scenario up to N times; one that then passes is a Flake "
                          "(default: %(default)s)")
    run.add_argument("--goldens", type=Path, default=GOLDENS_DIR,
                     help="folder of golden images the probes' images are compared with (default: "
                          "%(default)s)")
    run.add_argument("--runtime-root", action="append", default=[], metavar="NAME=PATH",
                     help="use this already built root for runtime NAME (the Nix checks pass their "
                          "store paths)")
    run.add_argument("--strict-runtimes", action="store_true",
                     help="a runtime whose lock has drifted from the archive is an error (exit 2)")
    run.add_argument("--fail-on-skip", action="store_true",
                     help="a Skip fails the run too (for CI and Nix checks, where every chosen "
                          "path must run)")
    run.add_argument("--baseline", type=Path,
                     help="known failures and flakes (TOML; `baseline update` writes one), or "
                          "Mesa CI's NAME-fails.txt (its -flakes.txt and -skips.txt beside it)")
    run.add_argument("--fail-on-unexpected-pass", action="store_true",
                     help="a baseline's known failure that passes fails the run too")
    run.add_argument("--host-name", metavar="NAME",
                     help="this host's name in results.json (default: its hostname): "
                     "runs of hosts of other names merge as rows of a host axis")
    run.add_argument("--host-class", default="", metavar="NAME",
                     help="the class of host this is (a CI runner's tag: nvidia, amd, no-gpu): "
                          "results.json records "
                          "it, merged runs and baselines name it")

    listing = sub.add_parser("list", help="print the expanded scenarios")
    add_selection(listing)
    listing.add_argument("--json", action="store_true", help="print the scenarios as JSON")

    doctor = sub.add_parser("doctor", help="what was found, its version, and which paths can run")
    doctor.add_argument("--toolset", type=Path, help=TOOLSET_HELP)
    doctor.add_argument("--json", action="store_true",
                        help="print it as JSON: the toolset (its manifest's keys), paths, "
                             "vm_acceleration")

    execute = sub.add_parser("exec", help="run your own command through a path", epilog=EXEC_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    execute.add_argument("--path", required=True, help="path id, e.g. vtest-virgl")
    execute.add_argument("--runtime", default="host",
                         help="runtime name from --matrix (default: host)")
    execute.add_argument("--matrix", type=Path,
                         help="matrix file that declares --runtime (.toml, .json, .nix); "
                                                     "default: the shipped one")
    execute.add_argument("--toolset", type=Path, help=TOOLSET_HELP)
    execute.add_argument("--timeout", type=seconds, default=3600.0, metavar="SECONDS",
                         help="stop the command after this many seconds (default: %(default)g, at "
                              "most a week)")
    execute.add_argument("--keep", type=Path,
                         help="keep the rendered configs and logs in this folder")
    execute.add_argument("--file", action="append", default=[], metavar="HOST_PATH[:INSIDE_PATH]",
                         help="put this host file where the command sees it: at INSIDE_PATH, else "
                              "at "
                              "/run/gpu-harness/files/NAME (read-only; a path hides the host's "
                              "/home, /tmp, ...); "
                              "repeatable")
    execute.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                         help="set this variable in the command's environment, over the path's and "
                              "the matrix's; "
                              "repeatable")
    execute.add_argument("cmd", nargs=argparse.REMAINDER,
                         help="-- COMMAND ARGS...: the command to run through the path")

    goldens = sub.add_parser("goldens", help="manage golden images")
    goldens_sub = goldens.add_subparsers(dest="goldens_command", required=True, parser_class=Parser)
    update = goldens_sub.add_parser("update",
                                    help="render goldens with a real run of the software path")
    update.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    update.add_argument("--toolset", type=Path, help=TOOLSET_HELP)
    update.add_argument("--goldens", type=Path, default=GOLDENS_DIR,
                        help="folder of golden images to write (default: %(default)s)")

    runtimes_cmd = sub.add_parser("runtimes",
                                  help="the shipped runtimes: pinned Debian root filesystems")
    runtimes_sub = runtimes_cmd.add_subparsers(dest="runtimes_command", required=True,
                                               parser_class=Parser)
    runtimes_list = runtimes_sub.add_parser("list",
                                            help="each runtime: lock, Mesa/libc/python, size, "
                                                 "built or not")
    runtimes_list.add_argument("--json", action="store_true", help="print the runtimes as JSON")
    for name, text in (("build", "build (or find in the cache) runtimes from their locks"),
                       ("lock", "build from the archive as it is now and rewrite the lock")):
        one = runtimes_sub.add_parser(name, help=text)
        one.add_argument("names", nargs="+", help="runtime names (see `runtimes list`)")
        if name == "build":
            one.add_argument("--strict", action="store_true",
                             help="a drifted lock is an error (exit 2)")
    image = runtimes_sub.add_parser("image",
                                    help="write a runtime (built if need be) as a container image: "
                                         "a "
                                                  "docker-archive, gzip-compressed if FILE ends in "
                                                  ".gz")
    image.add_argument("name", help="runtime name (see `runtimes list`)")
    image.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="image file to write, e.g. trixie.tar.gz")

    pins_cmd = sub.add_parser("pins", help="the Nix layer's source pins (nix/pins/*.json)")
    pins_sub = pins_cmd.add_subparsers(dest="pins_command", required=True, parser_class=Parser)
    for name, text in (("list", "print the pins"),
                       ("check", "validate every pin file (exit 2 on a bad one)")):
        one = pins_sub.add_parser(name, help=text)
        one.add_argument("--dir", type=Path, default=pins_mod.PINS_DIR,
                         help="pins folder (default: nix/pins)")
    pin_update = pins_sub.add_parser("update",
                                     help="re-fetch pins and rewrite their hashes; prints what "
                                          "changed")
    pin_update.add_argument("names", nargs="*", help="pins to update (default: all)")
    pin_update.add_argument("--rev",
                            help="git pins: move to this tag/commit (default: newest tag_prefix "
                                 "tag)")
    pin_update.add_argument("--version", dest="pin_version", help="url pins: move to this version")
    pin_update.add_argument("--dir", type=Path, default=pins_mod.PINS_DIR,
                            help="pins folder (default: nix/pins)")

    rebuild = sub.add_parser("report",
                             help="rebuild junit.xml and report.html from DIR/results.json")
    rebuild.add_argument("dir", type=Path,
                         help="result folder holding results.json (written by `run`)")

    merge = sub.add_parser("merge",
                           help="one report of several runs: the shards of a matrix, runs of "
                                "several hosts")
    merge.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                       help="result folders or results.json files")
    merge.add_argument("--out", type=Path, required=True,
                       help="the merged run's folder: results.json, junit.xml, "
                       "report.html (the scenarios' folders stay where their runs are)")

    diff = sub.add_parser("diff", help="what changed between two runs; exit 1 on a regression")
    diff.add_argument("old", type=Path, help="result folder or results.json")
    diff.add_argument("new", type=Path, help="result folder or results.json")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.add_argument("--html", type=Path, metavar="FILE",
                      help="also write the changes as an HTML page")
    diff.add_argument("--fps-factor", type=factor, metavar="X",
                      help="an fps change counts when fps moved by more than this factor, either "
                           "way "
                           "(default: when the two runs' timed rounds stay apart beyond their "
                           "spread; "
                           "x10 for a run without one)")

    baseline = sub.add_parser("baseline", help="known failures and flakes for run --baseline")
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True,
                                           parser_class=Parser)
    baseline_update = baseline_sub.add_parser("update",
                                              help="write a baseline from a run's failures and "
                                                   "flakes")
    baseline_update.add_argument("--from", dest="source", type=Path, required=True,
                                 help="result folder or results.json")
    baseline_update.add_argument("--out", type=Path, required=True,
                                 help="baseline file: rewritten; its entries still needed keep "
                                      "their reasons")
    imported = baseline_sub.add_parser("import", help="a baseline from Mesa CI's expectation "
                                                      "files (deqp-runner's, piglit-runner's)")
    imported.add_argument("fails", type=Path, metavar="FAILS", help="NAME-fails.txt: test,Status")
    for kind in ("flakes", "skips"):
        imported.add_argument(f"--{kind}", type=Path, help=f"NAME-{kind}.txt: regular expressions")
    imported.add_argument("--match", default="*", help="the scenarios they hold for (a glob)")
    imported.add_argument("--out", type=Path, required=True, help="baseline file to write")
    exported = baseline_sub.add_parser("export", help="a run's subtests in Mesa CI's files")
    for command in (imported, exported):
        command.add_argument("--format", choices=["deqp-runner"], required=True,
                             help="the files' format: deqp-runner's (and piglit-runner's)")
    exported.add_argument("--from", dest="source", type=Path, required=True,
                          help="result folder or results.json")
    exported.add_argument("--out", type=Path, required=True,
                          help="folder for SCENARIO-fails.txt and SCENARIO-results.csv")

    bench_cmd = sub.add_parser("bench",
                               help="time every phase of the matrix, several runs, as a table")
    add_selection(bench_cmd)
    bench_cmd.add_argument("--repeat", type=positive_int, default=5, metavar="N",
                           help="runs of the matrix to time (default: %(default)s)")
    bench_cmd.add_argument("--out", type=Path, default=Path("gpu-harness-bench"),
                           help="output folder: each run's results (round-N/), bench.json "
                                "(default: %(default)s)")
    bench_cmd.add_argument("-j", "--jobs", type=positive_int, default=1,
                           help="scenarios run in parallel (default: %(default)s)")
    bench_cmd.add_argument("--servers", type=non_negative_int, default=4, metavar="N",
                           help="also N apps on one shared virgl_test_server vs one each (0: not "
                                "measured; "
                                "default: %(default)s)")

    cache_cmd = sub.add_parser("cache",
                               help="what runs keep in ~/.cache/gpu-harness: list it, prune what "
                                    "no run uses")
    cache_sub = cache_cmd.add_subparsers(dest="cache_command", required=True, parser_class=Parser)
    cache_list = cache_sub.add_parser("list",
                                      help="each entry: kind, what it holds, size, days since a "
                                           "run used it")
    cache_list.add_argument("--json", action="store_true",
                            help="print the cache's root and entries as JSON")
    cache_prune = cache_sub.add_parser("prune",
                                       help="remove the entries no run has used for DAYS days, or "
                                            "that "
                                       "no run of this checkout can use (--stale)")
    cache_prune.add_argument("--older-than", type=days, metavar="DAYS",
                             help="days since a run last used an entry (0: everything)")
    cache_prune.add_argument("--stale", action="store_true",
                             help="entries of recipes, locks or a GL split that are not the "
                                  "shipped ones any more")
    cache_prune.add_argument("--dry-run", action="store_true",
                             help="say what would go, remove nothing")

    cdi_cmd = sub.add_parser("cdi",
                             help="a CDI spec for this host's driver (podman --device "
                                  "gpu-harness.dev/gpu=all); "
                             "judge specs against the live driver")
    cdi_sub = cdi_cmd.add_subparsers(dest="cdi_command", required=True, parser_class=Parser)
    cdi_generate = cdi_sub.add_parser("generate",
                                      help="write a spec (JSON) for the host's driver: a device "
                                           "'all' and "
                                      "one per render node; generated vendor files go in FILE's "
                                      ".files folder")
    cdi_generate.add_argument("--out", type=Path, default=Path("gpu-harness.json"),
                              help="the spec file, a .json (default: %(default)s)")
    cdi_generate.add_argument("--mode", choices=["libs", "deps"], default="deps",
                              help="libs: the driver's own files, the container's libraries for "
                                   "the rest; deps: "
                                   "with their dependency closure, which a foreign runtime needs "
                                   "(default: %(default)s)")
    cdi_generate.add_argument("--toolset", type=Path, help=TOOLSET_HELP)
    cdi_check = cdi_sub.add_parser("check",
                                   help="judge specs against the live driver: a line per problem, "
                                        "exit 1 "
                                   "when one is stale")
    cdi_check.add_argument("specs", nargs="*", type=Path, metavar="SPEC",
                           help="spec files, .json or .yaml (default: those in /etc/cdi and "
                                "/var/run/cdi)")
    cdi_check.add_argument("--toolset", type=Path, help=TOOLSET_HELP)

    security = sub.add_parser("security",
                              help="is vtest a boundary? a hostile client's mutated sessions "
                                   "against a "
                              "real virgl_test_server while an honest app renders through it")
    security_sub = security.add_subparsers(dest="security_command", required=True,
                                           parser_class=Parser)
    fuzz = security_sub.add_parser("fuzz",
                                   help="record the gl probe's session, fuzz the server with it, "
                                        "print a table")
    fuzz.add_argument("--count", type=positive_int, default=1000,
                      help="inputs to try at most (default: %(default)s)")
    fuzz.add_argument("--seconds", type=seconds, default=60.0,
                      help="time for the inputs at most, in seconds (default: %(default)s)")
    fuzz.add_argument("--seed", type=non_negative_int, default=0,
                      help="the mutator's seed (default: %(default)s)")
    fuzz.add_argument("--modes", type=security_modes, default=["forking", "confined"],
                      help="how the server runs, each in turn (--seconds each): forking (a process "
                           "per client), "
                           "shared (one process for all: --no-fork --multi-clients), per-app (the "
                           "honest app has a "
                           "server of its own), confined (forking, under bwrap) (default: "
                           "forking,confined)")
    fuzz.add_argument("--path",
                      help="run the hostile client inside this vtest path (vtest-virgl, "
                           "podman-vtest, "
                                     "flatpak-vtest, ...) over --runtime, as an app there would; "
                                     "default: a plain "
                                     "process on the host")
    fuzz.add_argument("--venus", metavar="RUNTIME",
                      help="fuzz Venus instead: the session the Vulkan probe sends through "
                           "vtest-venus over RUNTIME "
                           "(one with Mesa's Venus driver: trixie, sid), against a --venus server "
                           "(its "
                           "virgl_render_server's faults from the kernel's log); needs --toolset "
                           "runtime:trixie-host "
                           "or runtime:sid-host")
    fuzz.add_argument("--runtime", default="host",
                      help="the runtime the hostile client's path runs over "
                                                         "(a shipped recipe's name, or host; "
                                                         "default: host)")
    replay = security_sub.add_parser("replay",
                                     help="one input a fuzz run saved, against a fresh server")
    replay.add_argument("input", type=Path, help="a file under OUT/fuzz-MODE/inputs/")
    replay.add_argument("--mode", type=security_modes, default=["forking"],
                        help="how the server runs (one of the fuzz modes; default: forking)")
    replay.add_argument("--venus", action="store_true",
                        help="against a --venus server (an input of a --venus run)")
    for one in (fuzz, replay):
        one.add_argument("--deadline", type=seconds, default=5.0,
                         help="seconds a server has to answer after an input "
                              "(default: %(default)s)")
        one.add_argument("--out", type=Path, default=Path("gpu-harness-security"),
                         help="output folder: the session, the saved inputs, security.json "
                              "(default: %(default)s)")
        one.add_argument("--toolset", type=Path, help=TOOLSET_HELP)

    vfio_cmd = sub.add_parser("vfio", add_help=False,
                              help="check, bind and restore a PCI device for passthrough "
                              "(gpu-harness vfio --help)")
    vfio_cmd.add_argument("vfio_args", nargs=argparse.REMAINDER,
                          help="the vfio command and its arguments")
    return parser
