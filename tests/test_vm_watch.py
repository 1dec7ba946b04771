"""The VM launch's watch of a guest: one that printed its probe's end and powered off between the
watch's read of its console and its look at QEMU is done, not "stopped before the probe
finished" (CI saw exactly that once: the console said "probe exited 0" and then power down)."""
from harness import matrix
from harness.families.vm_launch import VmLaunch
from harness.lifecycle import LaunchContext, Workload, Workspace
from harness.toolset import Tool, Toolset

BEFORE = "gpu-harness: init started\ngpu-harness: probe starting\n"
AFTER = BEFORE + "gpu-harness: probe exited 0\ngpu-harness: powering off\n[    8.156731] reboot: Power down\n"


class GuestThatJustPoweredOff:
    """The console file as QEMU leaves it, read twice: first before its last lines, then whole."""

    def __init__(self):
        self.reads = [BEFORE, AFTER]
        self.events = [{"event": "SHUTDOWN", "data": {"reason": "guest-shutdown"}}]

    def console(self) -> str:
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    def running(self) -> bool:
        return False

    def event(self, name):
        return None

    def sample_rss(self):
        pass

    def quit(self):
        pass


def launch(tmp_path, machine) -> VmLaunch:
    scenario = matrix.expand({"matrix": {"paths": ["vm-headless"]}}, "t").scenarios[0]
    toolset = Toolset("discovery", {name: Tool(name, f"/usr/bin/{name}", "1") for name in ("qemu-system-x86_64",)})
    workspace = Workspace(tmp_path / "result", tmp_path / "t")
    workspace.create()
    found = VmLaunch(LaunchContext(scenario, toolset, workspace, Workload(probe="gl")))
    found.machine = machine
    found._booted_at, found._sampled_at, found._quitting = 0.0, 0.0, False
    return found


def test_a_guest_that_finished_between_two_looks_is_done_not_failed(tmp_path):
    watched = launch(tmp_path, GuestThatJustPoweredOff())
    assert watched.watch_step() is True
    assert not watched.result.problem, watched.result.problem


def test_a_guest_that_stopped_before_its_probe_ended_is_still_a_failure(tmp_path):
    machine = GuestThatJustPoweredOff()
    machine.reads = [BEFORE]
    watched = launch(tmp_path, machine)
    assert watched.watch_step() is True
    assert "guest stopped before the probe finished (SHUTDOWN guest-shutdown)" in watched.result.problem
