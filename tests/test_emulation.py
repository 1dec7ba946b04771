"""Foreign architectures: binfmt_misc's entries read as the kernel writes them (captured from
/proc/sys/fs/binfmt_misc here after Debian's qemu-user-static registered qemu-aarch64), what to do
where an architecture does not run, and the ELF-header classifier on real files."""
import shutil
import sys
from pathlib import Path

from harness.host import emulation

BINFMT = Path(__file__).parent / "files" / "binfmt"


def binfmt_tree(folder: Path, entry_text=None, mounted=True) -> Path:
    folder.mkdir()
    if mounted:
        shutil.copyfile(BINFMT / "status", folder / "status")
    if entry_text is not None:
        (folder / "qemu-aarch64").write_text(entry_text)
    return folder


def test_a_registered_interpreter_is_read_as_the_kernel_writes_it():
    entry = emulation.read_binfmt("qemu-aarch64", BINFMT)
    assert entry == emulation.Binfmt("qemu-aarch64", True,
                                     "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    assert entry.fixed


def test_arm64_runs_emulated_where_its_interpreter_is_registered_enabled_and_fixed(tmp_path):
    execution = emulation.how_runs("arm64", BINFMT, host="amd64")
    assert execution is not None and execution.emulated
    assert (execution.to_dict()["runs"] == "emulated"
            and execution.interpreter.endswith("aarch64-binfmt-P"))
    # the CPU's own
    assert emulation.how_runs("i386", tmp_path, host="amd64") == emulation.Execution("i386")
    assert emulation.how_runs("amd64", tmp_path,
                              host="amd64").to_dict() == {"architecture": "amd64",
                                                          "runs": "natively"}


def test_each_way_an_architecture_does_not_run_says_what_to_do(tmp_path):
    real = (BINFMT / "qemu-aarch64").read_text()
    cases = [
        (binfmt_tree(tmp_path / "unmounted", mounted=False), "binfmt_misc is not mounted"),
        (binfmt_tree(tmp_path / "absent"),
         "install qemu-user-static and binfmt-support; update-binfmts --enable"),
        (binfmt_tree(tmp_path / "disabled", real.replace("enabled", "disabled")),
         "registered but disabled"),
        (binfmt_tree(tmp_path / "unfixed", real.replace("flags: PF", "flags: P")),
         "without the F flag"),
    ]
    for root, said in cases:
        assert emulation.how_runs("arm64", root, host="amd64") is None, root.name
        assert said in emulation.why_not("arm64", root), root.name


def test_the_elf_header_says_the_architecture_not_the_loader():
    assert emulation.elf_architecture(sys.executable) == emulation.host_architecture()
    assert emulation.elf_architecture("/bin/sh") == emulation.host_architecture()
    assert emulation.elf_architecture(__file__) is None  # not an ELF file
    assert emulation.tree_architecture("/") == emulation.host_architecture()
    libraries = [str(p) for p in Path("/usr/lib/x86_64-linux-gnu").glob("libc.so.6")]
    assert libraries and emulation.foreign(libraries, "arm64") == {libraries[0]: "amd64"}
    assert emulation.foreign(libraries, "amd64") == {}
