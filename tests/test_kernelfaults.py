"""The kernel's fault lines: parsed from records captured from this kind of machine's /dev/kmsg
(a program named virgl_render_server that wrote through a null pointer, twice, and a multi-line
record of another kind), and watched for real around a program that faults."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.system import kernelfaults

RECORDS = json.loads((Path(__file__).parent / "files" / "kmsg" / "records.json").read_text())


def test_the_fault_lines_of_the_named_program_are_found_with_their_pids():
    found = kernelfaults.faults(RECORDS, ["/usr/libexec/virgl_render_server"])
    assert [(f.program, f.pid) for f in found] == [("virgl_render_se", 14001), ("virgl_render_se",
                                                                                26734)]
    assert found[0].line.startswith("virgl_render_se[14001]: segfault at 0 ip ")


def test_another_program_s_faults_and_other_records_are_not_counted():
    assert kernelfaults.faults(RECORDS, ["virgl_test_server"]) == []
    multi_line = [r for r in RECORDS if "\n " in r]
    assert multi_line and kernelfaults.message(multi_line[0]).startswith("virtio_blk virtio1: ")


def test_an_unreadable_log_says_so(tmp_path):
    watch = kernelfaults.Watch(str(tmp_path / "no-kmsg"))
    assert watch.unreadable and "not readable" in watch.unreadable and watch.faults(["x"]) == []


FAULTING = "int main(void) { *(volatile int *)0 = 1; return 0; }\n"


@pytest.mark.skipif(not os.access(kernelfaults.KMSG, os.R_OK) or shutil.which("gcc") is None,
                    reason="needs a readable /dev/kmsg (root) and gcc (scripts/setup)")
def test_a_watch_counts_a_fault_during_it_and_none_from_before(tmp_path):
    source, program = tmp_path / "f.c", tmp_path / "virgl_render_server"
    source.write_text(FAULTING)
    subprocess.run(["gcc", "-O0", "-o", str(program), str(source)], check=True, timeout=120)
    subprocess.run([str(program)])  # before the watch
    watch = kernelfaults.Watch()
    assert watch.unreadable is None
    during = subprocess.run([str(program)])
    assert during.returncode < 0
    found = watch.faults([str(program)])
    assert len(found) == 1 and "segfault at 0" in found[0].line, found
    assert watch.fd is None and watch.faults([str(program)]) == found  # read once, closed
