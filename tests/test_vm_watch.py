"""The VM launch's watch of a guest that stops between two of the watch's looks: judged by all its
console says once QEMU is gone. One that printed its probe's end and powered off is done, not
"stopped before the probe finished" (CI saw exactly that once); one that panicked is a kernel
panic with its reason, not "stopped before the probe finished (SHUTDOWN guest-reset)" (CI saw that
too: panic=-1 resets the guest at once, and -no-reboot makes the reset QEMU's exit). The KVM probe's
tiny guest is judged by its console once QEMU is gone too."""
from harness import matrix
from harness.launch.families.vm_launch import VmLaunch
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.scenario.outcomes import FailureKind
from harness.host.toolset import Tool, Toolset
from harness.launch.vm import accel

BEFORE = "gpu-harness: init started\ngpu-harness: probe starting\n"
AFTER = BEFORE + ("gpu-harness: probe exited 0\ngpu-harness: powering off\n[    8.156731] reboot: "
                  "Power down\n")
PANICKED = BEFORE + ("[    3.208016] sysrq: Trigger a crash\n"
                     "[    3.208451] Kernel panic - not syncing: sysrq triggered crash\n"
                     "[    3.212207] Rebooting in 1 seconds..\n")


class GuestThatStopsBetweenTwoLooks:
    """QEMU as the watch finds it when the guest's last lines and QEMU's exit both land between
    two of its looks: the console file says `final` only once QEMU has been seen gone (a read
    before that look gets `before`)."""

    def __init__(self, final: str, reason: str, before: str = BEFORE):
        self.before, self.final = before, final
        self.seen_gone = False
        self.events = [{"event": "SHUTDOWN", "data": {"reason": reason}}]

    def console(self) -> str:
        return self.final if self.seen_gone else self.before

    def running(self) -> bool:
        self.seen_gone = True
        return False

    def event(self, name):
        return None

    def sample_rss(self):
        pass

    def quit(self):
        pass


def launch(tmp_path, machine) -> VmLaunch:
    scenario = matrix.expand({"matrix": {"paths": ["vm-headless"]}}, "t").scenarios[0]
    toolset = Toolset("discovery", {name: Tool(name, f"/usr/bin/{name}", "1")
                                    for name in ("qemu-system-x86_64",)})
    workspace = Workspace(tmp_path / "result", tmp_path / "t")
    workspace.create()
    found = VmLaunch(LaunchContext(scenario, toolset, workspace, Workload(probe="gl")))
    found.machine = machine
    found._booted_at, found._sampled_at, found._quitting = 0.0, 0.0, False
    return found


def test_a_guest_that_finished_between_two_looks_is_done_not_failed(tmp_path):
    watched = launch(tmp_path, GuestThatStopsBetweenTwoLooks(AFTER, "guest-shutdown"))
    assert watched.watch_step() is True
    assert not watched.result.problem, watched.result.problem


def test_a_guest_that_panicked_between_two_looks_is_a_kernel_panic_with_its_reason(tmp_path):
    watched = launch(tmp_path, GuestThatStopsBetweenTwoLooks(PANICKED, "guest-reset"))
    assert watched.watch_step() is True
    assert watched.result.problem == "guest kernel panic: sysrq triggered crash"
    assert (watched.result.failure is not None
            and watched.result.failure.kind is FailureKind.GUEST_PANIC)


def test_a_guest_that_stopped_before_its_probe_ended_is_still_a_failure(tmp_path):
    watched = launch(tmp_path, GuestThatStopsBetweenTwoLooks(BEFORE, "guest-shutdown"))
    assert watched.watch_step() is True
    assert ("guest stopped before the probe finished (SHUTDOWN guest-shutdown)"
            in watched.result.problem)


def test_a_kvm_guest_that_booted_as_its_bound_ran_out_booted(tmp_path, monkeypatch):
    """The KVM probe's guest said it booted, then its power-off outlived the bound: that is KVM
    working, read from the console once QEMU is gone, not 'hangs'."""
    qemu = tmp_path / "qemu"
    qemu.write_text('#!/bin/sh\nwhile [ "$1" != -serial ]; do shift; done\n'
                    f'echo "{accel.KVM_OK}" > "${{2#file:}}"\nexec sleep 60\n')
    qemu.chmod(0o755)
    monkeypatch.setattr(accel, "build", lambda spec: (tmp_path / "tiny.cpio", False))
    probe = accel.try_kvm(str(qemu), "vmlinux", "/bin/busybox", tmp_path, bound_s=1.0)
    assert probe.booted, probe.detail
