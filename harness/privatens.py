"""Runs a command in a mount namespace of its own in which /var/lib and /var/tmp are two folders
of the caller's, so that what the command writes there stays in them.

`podman load` writes its blob-info cache to /var/lib/containers/cache whatever its --root, and
copies the archive it reads from stdin, then unpacks it, under /var/tmp (containers.conf's
image_copy_tmp_dir, not --tmpdir) (measured with podman 4.3). Run through this, both go to the
scenario's podman state folder and go with it; the host's /var/lib/containers is never made or
touched. The binds end with the namespace, when the command exits.

Usage: python3 privatens.py FOLDER -- COMMAND ARGS...   (FOLDER/var-lib and FOLDER/var-tmp are
made if missing; standard library only: it runs as a file, not as part of the package)"""
import ctypes
import os
import sys
from typing import List

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
BINDS = (("var-lib", "/var/lib"), ("var-tmp", "/var/tmp"))
EXIT_SETUP = 125  # as podman's own "could not run" status


def fail(what: str) -> int:
    error = ctypes.get_errno()
    print(f"privatens: {what}: {os.strerror(error)}", file=sys.stderr)
    return EXIT_SETUP


def main(argv: List[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: privatens.py FOLDER -- COMMAND ARGS...", file=sys.stderr)
        return 2
    folder, command = argv[1], argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return fail("unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:  # nothing propagates back to the host
        return fail("making / private")
    for name, target in BINDS:
        source = os.path.join(folder, name)
        os.makedirs(source, exist_ok=True)
        if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
            return fail(f"binding {source} at {target}")
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"privatens: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
