"""piglit's own runner on one of its profiles, inside the path: the tests chosen, then `piglit run`.

Runs *inside* the sandbox/guest/container with the standard library only (the workload probe's
step for the piglit kind's `profile` form). It asks the runtime's piglit for the profile's test
names (`piglit print-cmd`), keeps those a test list names (piglit's names, `spec@a@b`, or the
path form `spec/a/b`, in any case), then those the include patterns match and the exclude ones do
not, then every N-th from the K-th (fraction K/N, as deqp-runner's --fraction), writes them as a
test list, and runs `piglit run` on it with the JSON backend, uncompressed, into OUT/piglit/. What
it chose is OUT/piglit/selection.json; bad input is one line on stderr and exit 2."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

FOLDER = "piglit"
SELECTION = "selection.json"
TEST_LIST = "test-list.txt"
RESULTS = "results"  # piglit run's results folder (results.json in it)
BAD_INPUT = 2


def piglit_name(name):
    """piglit's own form of a test name (grouptools.from_path): '/' and '\\' as '@', lower case."""
    return name.strip().replace("\\", "@").replace("/", "@").lower()


def fraction(text):
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise argparse.ArgumentTypeError("fraction %r: must be K/N with 1 <= K <= N" % text)
    return int(found.group(1)), int(found.group(2))


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("profile")
    parser.add_argument("--test-list", help="a file of piglit test names, one a line")
    parser.add_argument("--include", action="append", default=[])
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--fraction", type=fraction, default=(1, 1))
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--timeout", type=int, help="seconds each test may take")
    return parser.parse_args()


def fail(message):
    sys.stderr.write("piglitrun: %s\n" % message)
    sys.exit(BAD_INPUT)


def profile_names(piglit, profile, env):
    done = subprocess.run([piglit, "print-cmd", "--format", "{name}", profile], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        words = [line for line in done.stderr.splitlines() if line.strip()]
        fail("this runtime's piglit has no profile %r (%s)"
             % (profile, words[-1][:200] if words else "exit %d" % done.returncode))
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def listed(path, names):
    """The profile's tests the list names, in the list's order, and the names it lacks."""
    known = set(names)
    wanted: list = []
    missing: list = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name = piglit_name(line)
            (wanted if name in known else missing).append(name)
    return wanted, missing


def chosen(names, args):
    try:
        include = [re.compile(pattern) for pattern in args.include]
        exclude = [re.compile(pattern) for pattern in args.exclude]
    except re.error as exc:
        fail("a bad regular expression: %s" % exc)
    kept = [name for name in names if (not include or any(p.search(name) for p in include))
            and not any(p.search(name) for p in exclude)]
    start, step = args.fraction
    return kept[start - 1::step]


def selection(selected, test_list):
    """How piglit run is told the chosen tests: the test list written, or, where a name holds a
    '#' (quick_shader's do), which piglit reads in a test list as a comment, the names as one
    exact, anchored pattern."""
    if any("#" in name for name in selected):
        return ["-t", "^(?:%s)$" % "|".join(re.escape(name) for name in selected)]
    return ["--test-list", test_list]


def main():
    args = arguments()
    piglit = shutil.which("piglit") or ""
    if not piglit:
        fail("this runtime has no piglit (its package: piglit)")
    env = dict(os.environ, PIGLIT_COMPRESSION="none")
    if shutil.which("wflinfo") is None:  # piglit's fast skip asks wflinfo, which it then lacks
        env["PIGLIT_NO_FAST_SKIP"] = "1"
    folder = os.path.join(args.out, FOLDER)
    os.makedirs(folder, exist_ok=True)
    names = profile_names(piglit, args.profile, env)
    missing = []
    if args.test_list:
        names, missing = listed(args.test_list, names)
        if not names:
            fail("the test list %s names no test of profile %s (first: %s)"
                 % (os.path.basename(args.test_list), args.profile,
                    missing[0] if missing else "it is empty"))
    selected = chosen(names, args)
    with open(os.path.join(folder, SELECTION), "w") as handle:
        json.dump({"profile": args.profile, "candidates": len(names), "selected": len(selected),
                   "not_in_profile": missing, "fraction": "%d/%d" % args.fraction}, handle)
    if not selected:
        fail("no test of profile %s is left after include, exclude and fraction" % args.profile)
    test_list = os.path.join(folder, TEST_LIST)
    with open(test_list, "w") as handle:
        handle.write("".join(name + "\n" for name in selected))
    argv = [piglit, "run", *selection(selected, test_list), "-b", "json", "-l", "dummy"]
    argv += ["-j", str(args.jobs)] if args.jobs else []
    argv += ["--timeout", str(args.timeout)] if args.timeout else []
    argv += [args.profile, os.path.join(folder, RESULTS)]
    sys.stdout.flush()
    os.execve(piglit, argv, env)


if __name__ == "__main__":
    main()
