"""Which architectures this host runs and how: natively, or emulated by a qemu-user interpreter
that binfmt_misc has registered (Debian's qemu-user-static); and a file's architecture read from
its ELF header, not from a loader's wording."""
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union
from ..system import process

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian's architecture names, by the ELF header's e_machine (32 or 64 bits: EI_CLASS).
ELF_MACHINES = {(62, 64): "amd64", (3, 32): "i386", (183, 64): "arm64", (40, 32): "armhf",
                (243, 64): "riscv64"}
MACHINE_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "riscv64": "riscv64",
                 "armv7l": "armhf"}
# What a CPU of each architecture runs itself (an x86-64 kernel runs i386 binaries natively).
NATIVE = {"amd64": ("amd64", "i386"), "arm64": ("arm64", "armhf"), "i386": ("i386",),
          "riscv64": ("riscv64",)}
# binfmt_misc's entry for an architecture, as Debian's qemu-user-static names it.
BINFMT_NAMES = {"arm64": "qemu-aarch64", "armhf": "qemu-arm", "riscv64": "qemu-riscv64",
                "i386": "qemu-i386",
                "amd64": "qemu-x86_64"}
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class Binfmt:
    """One binfmt_misc entry: the interpreter the kernel runs a matching binary with."""

    name: str
    enabled: bool
    interpreter: str
    flags: str

    @property
    def fixed(self) -> bool:
        """F: the kernel opened the interpreter when it was registered, so it runs inside a
        sandbox, container or chroot that has no such file."""
        return "F" in self.flags


@dataclass(frozen=True)
class Execution:
    """How this host runs binaries of one architecture."""

    architecture: str
    emulated: bool = False
    interpreter: str = ""  # the binfmt interpreter (emulated)
    version: str = ""  # its version line: qemu-aarch64 version 7.2.22 (...)

    def to_dict(self) -> dict:
        if not self.emulated:
            return {"architecture": self.architecture, "runs": "natively"}
        return {"architecture": self.architecture, "runs": "emulated",
                "interpreter": self.interpreter,
                "version": self.version}

    def __str__(self) -> str:
        return "natively" if not self.emulated else ("emulated by "
                                                     f"{self.version or self.interpreter}")


def host_architecture() -> str:
    machine = platform.machine()
    return MACHINE_NAMES.get(machine, machine)


def read_binfmt(name: str, root: Path = BINFMT) -> Optional[Binfmt]:
    """binfmt_misc's entry `name`, or None where it is not registered (or binfmt_misc not
    mounted)."""
    try:
        text = (root / name).read_text()
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines()]
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    return Binfmt(name, "enabled" in lines, fields.get("interpreter", ""), flags)


def interpreter_version(interpreter: str) -> str:
    """Its version line; Debian's binfmt wrappers refuse to run by hand, the program they link to
    does."""
    try:
        done = process.run_program([os.path.realpath(interpreter), "--version"],
                                   capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.splitlines()[0].strip() if done.stdout.strip() else ""


def how_runs(architecture: str, root: Path = BINFMT,
             host: Optional[str] = None) -> Optional[Execution]:
    """How this host runs `architecture`'s binaries, or None where it cannot (no registered,
    enabled, fixed interpreter)."""
    host = host or host_architecture()
    if architecture in NATIVE.get(host, (host,)):
        return Execution(architecture)
    entry = read_binfmt(BINFMT_NAMES.get(architecture, f"qemu-{architecture}"), root)
    if entry is None or not entry.enabled or not entry.fixed:
        return None
    return Execution(architecture, True, entry.interpreter, interpreter_version(entry.interpreter))


def why_not(architecture: str, root: Path = BINFMT) -> str:
    """What to do so that this host runs `architecture`'s binaries (where how_runs says it
    cannot)."""
    name = BINFMT_NAMES.get(architecture, f"qemu-{architecture}")
    entry = read_binfmt(name, root)
    if not (root / "status").exists():
        said = ("binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc "
                "/proc/sys/fs/binfmt_misc)")
    elif entry is None:
        said = (f"no {name} in binfmt_misc (install qemu-user-static and binfmt-support; "
                f"update-binfmts --enable {name})")
    elif not entry.enabled:
        said = f"{name} is registered but disabled (update-binfmts --enable {name})"
    else:
        said = (f"{name} is registered without the F flag, so its interpreter is not found inside "
                "a "
                "sandbox")
    return (f"this {host_architecture()} host does not run {architecture} binaries: {said}; "
            "scripts/setup does it")


def runnable(root: Path = BINFMT) -> Dict[str, Execution]:
    """Every architecture this host runs, by name."""
    found = {}
    for architecture in sorted(set(BINFMT_NAMES) | set(NATIVE.get(host_architecture(), ()))):
        execution = how_runs(architecture, root)
        if execution is not None:
            found[architecture] = execution
    return found


def elf_architecture(path: Union[str, os.PathLike]) -> Optional[str]:
    """The architecture an ELF file is for (Debian's name), from its header; None for another
    file, or a machine this table does not know."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if (len(header) < 20 or not header.startswith(ELF_MAGIC) or header[4] not in (1, 2)
            or header[5] not in (1, 2)):
        return None
    bits = 32 if header[4] == 1 else 64
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get((machine, bits))


def tree_architecture(root: Union[str, os.PathLike]) -> Optional[str]:
    """A root filesystem's architecture: its shell's (every runtime has /bin/sh)."""
    for candidate in ("usr/bin/dash", "bin/dash", "usr/bin/sh", "bin/sh", "usr/bin/env"):
        found = (elf_architecture(Path(root, candidate).resolve())
                 if Path(root, candidate).exists() else None)
        if found:
            return found
    return None


def foreign(files: List[str], architecture: str) -> Dict[str, str]:
    """Of these ELF files, those for another architecture than `architecture`: path -> theirs."""
    found = {}
    for path in files:
        theirs = elf_architecture(path)
        if theirs and theirs != architecture:
            found[path] = theirs
    return found
