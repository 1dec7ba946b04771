"""The report says what the run measured, no more: a grid cell's text cut between words (never
inside one), a Skip's cause in its cell, one driver on the host runtime, the host runtime's own
root apart from the built runtimes' exposure and "all" for a host process, host paths visible out
of the same paths for every path, the leak audit of a container's own overlay root, a renderer
rule as written. On a generated run (tests/runs.py), through the code that writes the values
(the verdict's check, the leak audit) and report.html."""
import re
import xml.etree.ElementTree as ET
from html import unescape

import pytest

from harness.judging import exposure, verdict
from harness import matrix
from harness.scenario import paths
from harness.launch.lifecycle import HOST_PATHS
from harness.scenario.outcomes import FailureKind, Outcome
from harness.probe import facts
from harness.scenario.probes import ProbeReport
from harness.report import answers, grid, html, junit, records, text
from tests import runs

DOC = runs.document()
SCENARIOS = DOC["scenarios"]


def answer(key: str, scenarios=SCENARIOS) -> answers.Answer:
    return next(a for a in answers.build(records.entries(scenarios)) if a.key == key)


def rows(key: str, scenarios=SCENARIOS) -> dict:
    return {row[0].text: row for row in answer(key, scenarios).rows}


def cells(scenarios) -> list:
    return [c for g in grid.build(records.entries(scenarios)) for row in g.cells.values()
            for c in row.values()]


def part_ends(source: str) -> set:
    """Where a line may end in the source (spaces left out): after each of its word parts."""
    ends, at = {0}, 0
    for part in text.word_parts(" ".join(source.split())):
        at += len(part.replace(" ", ""))
        ends.add(at)
    return ends


def assert_cut_between_words(lines, source: str, most: int) -> None:
    """The lines are the source from its start, each fits a cell's line, and what is left out
    (an ellipsis says so) begins where a word part begins."""
    assert 0 < len(lines) <= most and all(text.text_width(line) <= grid.LINE_EM
                                          for line in lines), lines
    shown = "".join(lines).replace(" ", "")
    whole = source.replace(" ", "")
    if shown.endswith(text.ELLIPSIS):
        shown = shown[:-1]
        assert (whole.startswith(shown) and len(shown) in part_ends(source)
                and shown != whole), (lines, source)
    else:
        assert shown == whole, (lines, source)


# --- 1. a grid cell: cut between words, never inside one ------------------------------------------

LONG = {"failure_kind": FailureKind.VULKAN_ERROR.value, "outcome": "Fail", "renderer": None,
        "fps": None,
        "diagnosis": {"class": "vulkan-error",
                      "subject": "vkEnumeratePhysicalDevices VK_ERROR_INITIALIZATION_FAILED"}}


def test_a_failure_cell_shows_its_class_and_subject_cut_between_words():
    scenario = runs.first(DOC, Outcome.FAIL)
    [cell] = [c for c in cells(runs.changed(DOC, scenario["id"], **LONG)["scenarios"])
              if c.scenario == scenario["id"]]
    # Not "vkEnumer / atePhysica": the subject's camelCase words each whole, the rest on hover.
    assert cell.lines == ["vulkan-error", "vk", "Enumerate", "Physical…"]
    assert_cut_between_words(cell.lines[1:], LONG["diagnosis"]["subject"], grid.CELL_LINES)
    for cell in cells(SCENARIOS):
        label_lines = text.wrap(cell.label, grid.CELL_LINES - cell.has_fps_line, grid.LINE_EM)
        assert (cell.lines[:len(label_lines)] == label_lines
                and len(cell.lines) + cell.has_fps_line <= grid.CELL_LINES)
        assert_cut_between_words(label_lines, cell.label, grid.CELL_LINES)
        detail = cell.lines[len(label_lines):]
        if detail:
            assert_cut_between_words(detail, cell.renderer or cell.subject or "", grid.CELL_LINES)


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_failure_class_fits_a_cell_whole(kind):
    lines = text.wrap(kind.value, grid.CELL_LINES - 1, grid.LINE_EM)  # with an fps line under it
    assert "".join(lines) == kind.value and text.ELLIPSIS not in "".join(lines)


@pytest.mark.parametrize("source", [
    "vkEnumeratePhysicalDevices VK_ERROR_INITIALIZATION_FAILED",
                                    "Intel(R) UHD Graphics 620 (KBL GT2)",
    "libvulkan_radeon.so version GLIBC_2.34", "Supercalifragilisticexpialidocious and more",
                                    "a b c d e f g h i j k"])
@pytest.mark.parametrize("lines", [1, 2, 4])
def test_wrap_never_cuts_inside_a_word(source, lines):
    assert_cut_between_words(text.wrap(source, lines, grid.LINE_EM), source, lines)


def test_report_html_sets_each_line_as_made():
    scenario = runs.first(DOC, Outcome.FAIL)
    page = html.render(records.parse(runs.changed(DOC, scenario["id"], **LONG)))
    assert ("<span>vulkan-error</span><span>vk</span><span>Enumerate</span><span>Physical…</span>"
            in page)
    assert "break-word" not in page and "<wbr>" not in page  # the browser breaks no word of a cell


# --- 2. a Skip cell gives its cause ---------------------------------------------------------------

@pytest.mark.parametrize("reason, cause", [
    ("no DRM render node on this host (/dev/dri/renderD* absent)", "no render node"),
    ("QEMU 7.2.22 has no venus on virtio-gpu-gl-pci (QEMU >= 9.2: --toolset runtime:trixie-host)",
     "no venus in QEMU 7.2"),
    ("runtime trixie: building a runtime needs mmdebstrap (apt-get install mmdebstrap)",
     "needs mmdebstrap"),
    ("missing virgl_test_server (install virgl-server); Xvfb (install xvfb)",
     "missing virgl_test_server"),
    ("runtime bookworm has no virtio Vulkan ICD (virtio_icd*.json; Mesa's Venus driver is in "
     "Debian 13 and later)",
     "no virtio Vulkan ICD"),
    ("kernel /boot/vmlinuz has no modules directory (the guest needs virtio and 9p modules)",
     "no modules directory in kernel"),
    ("not run: the run was interrupted (SIGINT)", "run was interrupted"),
    ("", "skip"),
])
def test_the_short_cause_of_a_skip(reason, cause):
    assert text.short_cause(reason) == cause


def test_a_skip_cell_says_its_cause_and_keeps_the_reason_on_hover():
    skipped = [c for c in cells(SCENARIOS) if c.outcome == Outcome.SKIP.value]
    assert {c.cause for c in skipped} == {"no render node", "needs mmdebstrap"}
    page = html.render(records.parse(DOC))
    for cell in skipped:
        assert cell.lines == text.wrap(cell.cause, grid.CELL_LINES,
                                       grid.LINE_EM) and "skip" not in cell.lines
        found = re.search(rf'<td class="skip" title="{re.escape(cell.scenario)}: '
                          r'Skip&#10;([^"]*)"><a href="#'
                          rf'{cell.anchor}">(.*?)</a></td>', page)
        assert found, cell.scenario
        assert unescape(found.group(1)) == cell.reason  # the whole reason on hover
        assert re.findall("<span>(.*?)</span>", found.group(2)) == cell.lines


# --- 3. driver matching: on the host runtime, one driver ------------------------------------------

def test_on_the_host_runtime_the_runtimes_driver_is_the_hosts():
    driver = answer("driver")
    record = next(r for r in driver.records if r["runtime"] == "host")
    host = [s for s in SCENARIOS if s["runtime"] == "host" and (s.get("driver_match")
                                                                or {}).get("used")]
    paths = list(dict.fromkeys(s["path"] for s in host))
    # each path once
    assert record["runtime_is_host"] and record["rendered_with_host_driver"] == paths
    row = rows("driver")["host"]
    assert (row[3].text == f"all {len(paths)} paths: the runtime is the host"
            and row[3].title == "\n".join(paths))
    assert row[4].text == "none of its own: the host's"  # not counted a second time
    for runtime, row in rows("driver").items():
        if runtime != "host":
            other = next(r for r in driver.records if r["runtime"] == runtime)
            assert (not other["runtime_is_host"]
                    and row[4].text == f"{len(other['runtime_driver_rendered'])} paths")


# --- 4. exposure: like with like ------------------------------------------------------------------

def guest_on_the_host_runtime() -> str:
    """A QEMU guest path the generated run audited on the host runtime (the guest's root is the
    host's)."""
    return next(s["path"] for s in SCENARIOS if paths.get(s["path"]).family == "vm"
                and s["runtime"] == "host"
                and s.get("exposure"))


def test_exposure_says_the_host_runtime_apart_and_all_for_a_host_process():
    found = rows("exposure")
    for name in ("native", "software"):  # host processes: every file and socket of the host
        assert [cell.text for cell in found[name][1:3]] + [found[name][4].text] == ["whole host",
                                                                                    "all", "all"]
    assert found["podman-vtest"][2].text == "0" and found["podman-vtest"][4].text == "1"
    # the host runtime's count apart, where the run has one
    for path in ("vtest-virgl", "vtest-venus"):
        record = next(r for r in answer("exposure").records if r["path"] == path)
        on_host = record["host_runtime"]
        said = (f"0 · host runtime: {on_host['host_files'][0]:,} (host's own root)" if on_host
                else "0")
        assert found[path][2].text == said, (path, record)
    assert any(r["host_runtime"] for r in answer("exposure").records
               if r["path"].startswith("vtest-"))
    assert found[guest_on_the_host_runtime()][1].text == "0 · host runtime: whole host"
    # the built runtimes' numbers never take the host's root in
    for record in answer("exposure").records:
        built = record["built_runtimes"]
        assert built is None or all(count < 100000 for count in built["host_files"]), record
        if not record["host_process"]:  # the host runtime's count only where it is said to be one
            assert ("130," in found[record["path"]][2].text.split(" · ")[0]) == (built is None)


# --- 5. the leak audit of a container's own overlay root ------------------------------------------

RUNTIME_ROOT = "/root/.cache/gpu-harness/runtimes/6c0d2f/root"
STATE = "/tmp/gh-podman-gh-a1-3"  # Names.of(workspace).state: the family's own_dirs
ID = "43e39941561cfdad56a6edef9be798a2006a6958fc617554b1a01c65fae8c061"
# Inside podman-vtest (captured with --rootfs ROOT:O, the probe's mounts() format): its root is an
# overlay of the runtime on an anonymous device, its /etc/hosts podman's.
CONTAINER = [
    ["/", "/", "overlay", "0:41", "overlay", "dir", RUNTIME_ROOT],
    ["/proc", "/", "proc", "0:44", "proc", "dir", ""],
    ["/etc/hosts", f"{STATE}/runroot/overlay-containers/{ID}/userdata/hosts", "ext4", "254:0",
     "/dev/vda", "file", ""],
    ["/tmp/.virgl_test", "/tmp/gh-a1/3/vtest.sock", "ext4", "254:0", "/dev/vda", "socket", ""],
]
# The harness's mount table when the audit runs: this container's overlay is gone, and 0:41 is now
# another scenario's container root (a parallel run's), outside this scenario's folders.
LATER = exposure.host_mounts(
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    f"50 27 0:41 / /tmp/gh-podman-gh-a1-4/runroot/overlay-containers/{ID[::-1]}/rootfs/merge "
    "rw,nodev - overlay "
    "overlay rw,lowerdir=/root/.cache/gpu-harness/runtimes/77aa/root,"
    "upperdir=/x/upper,workdir=/x/work\n")
OWN = ["/tmp/gh-a1/3", "/out", STATE]


def test_a_containers_overlay_root_is_the_runtime_not_the_host(tmp_path):
    assert LATER[1].fstype == "overlay"
    found = exposure.audit(CONTAINER, {}, {}, RUNTIME_ROOT, OWN, host_table=LATER)
    assert found.host_files == [] and found.host_file_count == 0 and not found.whole_host
    assert found.host_sockets == ["/tmp/.virgl_test"] and found.host_folders_visible == []
    older = [entry[:6] for entry in CONTAINER]  # a probe that did not report an overlay's layers
    assert exposure.audit(older, {}, {}, RUNTIME_ROOT, OWN, host_table=LATER).host_files == []
    # An overlay is what its layers are: the host's / is the whole host, a host folder is host
    # files.
    whole = [["/", "/", "overlay", "0:41", "overlay", "dir", "/"]]
    assert exposure.audit(whole, {}, {}, RUNTIME_ROOT, OWN, host_table=LATER).whole_host
    (tmp_path / "a").write_text("x")
    layered = [["/", "/", "overlay", "0:41", "overlay", "dir", f"{RUNTIME_ROOT}:{tmp_path}"]]
    assert exposure.audit(layered, {}, {}, RUNTIME_ROOT, OWN,
                          host_table=LATER).host_files == [str(tmp_path)]
    # A device number the host table has for another filesystem type is not the workload's mount.
    assert exposure.host_path("0:41", "/", LATER, "tmpfs") is None


def test_the_probe_reports_an_overlays_layers():
    line = ("rw,lowerdir=/tmp/ghx-rootfs,"
            "upperdir=/tmp/gh-podman-x-1/runroot/overlay-containers/1/rootfs/upper,"
            "workdir=/tmp/gh-podman-x-1/runroot/overlay-containers/1/rootfs/work,uuid=on")
    assert (facts.overlay_lower(line) == "/tmp/ghx-rootfs"
            and facts.overlay_lower("rw,size=64000k") == "")
    assert exposure.overlay_layers("/a:/b\\054c") == ["/a", "/b,c"]
    # this process's own mounts, as a probe reports them
    assert all(len(entry) == 7 for entry in facts.mounts())


# --- 6. host paths visible: of the same paths everywhere ------------------------------------------

def test_host_paths_visible_are_counted_over_the_same_paths_for_every_path():
    found = rows("isolation")
    probe_said = {r["path"]: r["host_paths_visible"] for r in answer("isolation").records}
    assert probe_said["podman-vtest"] == ["0 of 2"] and probe_said["flatpak-vtest"] == ["0 of 1"]
    # what each family passed its probe: not comparable
    assert probe_said["sandbox-hostlibs"] == ["0 of 10"]
    checked = 1 + len(HOST_PATHS)  # the scenario's sentinel and the host folders
    for path, row in found.items():
        assert set(re.findall(r"of (\d+)", row[-1].text)) == {str(checked)}, (path, row[-1].text)
    assert (found["podman-vtest"][-1].text == found["flatpak-vtest"][-1].text
            == found["sandbox-hostlibs"][-1].text == f"0 of {checked}")
    assert found["native"][-1].text == f"{checked} of {checked}"
    # A guest's runtime has a /home of its own (the probe saw 8 of 10): not the host's.
    assert found[guest_on_the_host_runtime()][-1].text == (f"0 of {checked} · host runtime: "
                                                           f"{checked - 1} of {checked}")
    assert "the probe's own check" in found["podman-vtest"][-1].title


def test_the_leak_audit_names_the_host_folders_a_workload_sees(tmp_path):
    table = exposure.host_mounts("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
    bound = [["/var/lib/flatpak", "/var/lib/flatpak", "ext4", "254:0", "/dev/vda", "dir", ""]]
    found = exposure.audit(bound, {}, {}, "/runtime", [], host_table=table)
    assert (found.host_folders_checked == list(HOST_PATHS)
            and found.host_folders_visible == ["/var/lib"])
    whole = exposure.audit([["/", "/", "ext4", "254:0", "/dev/vda", "dir", ""]], {}, {}, "/runtime",
                           [],
                           host_table=table)
    assert whole.host_folders_visible == list(HOST_PATHS)


# --- 7. a renderer rule as written ----------------------------------------------------------------

def test_a_renderer_rule_is_shown_as_written():
    [scenario] = matrix.expand({"matrix": {"paths": ["vtest-virgl"], "runtimes": ["host"],
                                           "probes": ["gl"]}},
                               "<test>").scenarios
    check = verdict.renderer_check(scenario, ProbeReport(ok=True,
                                                         renderer="virgl (LLVMPIPE (LLVM 15.0.6))"),
                                   verdict.HostFacts({}, False))
    # the verdict writes the rule as written (it used repr: doubled backslashes); the report shows
    # it so either way
    assert (check is not None and "\\\\(" not in check.detail
            and "'^virgl( \\(.+\\))?$'" in check.detail)
    entry = runs.first(DOC, Outcome.PASS)
    page = unescape(html.render(records.parse(runs.changed(
        DOC, entry["id"], reason=f"all checks passed: {check.detail}",
        checks=[{"name": check.name, "ok": True, "detail": check.detail}]))))
    assert ("ok renderer: renderer 'virgl (LLVMPIPE (LLVM 15.0.6))' matches '^virgl( \\(.+\\))?$'"
            in page)
    assert "\\\\(" not in page
    unexpected = runs.changed(DOC, entry["id"], outcome="Fail", reason=f"renderer: {check.detail}")
    case = next(c
                for c in ET.fromstring(junit.render(records.parse(unexpected))).findall("testcase")
                if c.get("name") == entry["id"])
    assert case.find("failure").get("message").endswith("matches '^virgl( \\(.+\\))?$'")


@pytest.mark.parametrize("said, shown", [
    ("matches '^virgl( \\\\(.+\\\\))?$'", "matches '^virgl( \\(.+\\))?$'"),
    ("the host's driver and the runtime's", "the host's driver and the runtime's"),
    ("path 'C:\\\\x' and \"it's\"", "path 'C:\\x' and \"it's\""),
    ("'\\n' stays", "'\\n' stays"), (None, ""),
])
def test_as_written(said, shown):
    assert text.as_written(said) == shown
