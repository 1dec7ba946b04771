"""Runs a command in a mount namespace of its own in which /var/lib and /var/tmp are two folders
of the caller's, so that what the command writes there stays in them; or, with --cdi, in which
/var/run/cdi is a folder of the caller's (a scenario's private CDI spec folder).

`podman load` writes its blob-info cache to /var/lib/containers/cache whatever its --root, and
copies the archive it reads from stdin, then unpacks it, under /var/tmp (containers.conf's
image_copy_tmp_dir, not --tmpdir) (measured with podman 4.3). Run through this, both go to the
scenario's podman state folder and go with it; the host's /var/lib/containers is never made or
touched. The binds end with the namespace, when the command exits.

podman reads CDI specs from /etc/cdi and /var/run/cdi only, and a host without a spec has
neither, so there is nothing to bind over and nothing may be made on the host: with --cdi, /var
is a tmpfs in the namespace holding binds of everything the host's /var holds (submounts too),
except /var/run, which is a folder there holding only cdi/. The host's /run is left alone:
runc keeps its state there, which podman outside the namespace must find to stop a container.

Usage: python3 privatens.py FOLDER [--cdi SPECDIR] -- COMMAND ARGS...   (FOLDER/var-lib and
FOLDER/var-tmp, or FOLDER/var-host, are made if missing; standard library only: it runs as a
file, not as part of the package)"""
import ctypes
import os
import sys
from typing import List

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2
BINDS = (("var-lib", "/var/lib"), ("var-tmp", "/var/tmp"))
EXIT_SETUP = 125  # as podman's own "could not run" status


def fail(what: str) -> int:
    error = ctypes.get_errno()
    print(f"privatens: {what}: {os.strerror(error)}", file=sys.stderr)
    return EXIT_SETUP


def bind(libc, source: str, target: str, flags: int = 0) -> bool:
    return libc.mount(source.encode(), target.encode(), None, MS_BIND | flags, None) == 0


def private_var(libc, folder: str) -> int:
    for name, target in BINDS:
        source = os.path.join(folder, name)
        os.makedirs(source, exist_ok=True)
        if not bind(libc, source, target):
            return fail(f"binding {source} at {target}")
    return 0


def private_cdi(libc, folder: str, cdi: str) -> int:
    aside = os.path.join(folder, "var-host")
    os.makedirs(aside, exist_ok=True)
    if not bind(libc, "/var", aside, MS_REC):
        return fail("binding /var aside")
    if libc.mount(b"gpu-harness-var", b"/var", b"tmpfs", 0, b"mode=0755") != 0:
        return fail("mounting a tmpfs on /var")
    for entry in os.scandir(aside):
        target = os.path.join("/var", entry.name)
        if entry.name == "run":
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
            continue
        if entry.is_dir():
            os.mkdir(target)
        else:
            open(target, "w").close()
        if not bind(libc, entry.path, target, MS_REC):
            return fail(f"binding /var/{entry.name} back")
    os.makedirs("/var/run/cdi")
    if not bind(libc, cdi, "/var/run/cdi"):
        return fail(f"binding {cdi} at /var/run/cdi")
    libc.umount2(aside.encode(), MNT_DETACH)
    return 0


def main(argv: List[str]) -> int:
    cdi = argv[3] if len(argv) > 4 and argv[2] == "--cdi" else None
    rest = argv[4:] if cdi else argv[2:]
    if len(argv) < 4 or not rest or rest[0] != "--" or len(rest) < 2:
        print("usage: privatens.py FOLDER [--cdi SPECDIR] -- COMMAND ARGS...", file=sys.stderr)
        return 2
    folder, command = argv[1], rest[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return fail("unshare(CLONE_NEWNS)")
    # nothing propagates back to the host
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return fail("making / private")
    failed = private_cdi(libc, folder, cdi) if cdi else private_var(libc, folder)
    if failed:
        return failed
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"privatens: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
