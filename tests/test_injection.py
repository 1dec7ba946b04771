"""A value from a matrix can never become an argument of its own: every command line is built
as a list, and values inside QEMU's option syntax are escaped. Each injection point is checked
against the command line that was declared. The scenarios here bypass the matrix's own checks
(which reject newlines), to prove the launch side holds by itself."""
import dataclasses
import subprocess

from harness import matrix
from harness.launch.families import sandbox, vm_launch as vm
from harness.launch.families.base import write_config
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.host.toolset import Tool, Toolset
from harness.launch.vm.qemu import QemuSpec

HOSTILE = "x\n--ro-bind\n/\n/run/hostroot"


def toolset():
    tools = {name: Tool(name, f"/usr/bin/{name}", "1.0") for name in ("bwrap", "virgl_test_server",
                                                                      "python3")}
    return Toolset("discovery", tools, [])


def scenario(path, **fields):
    base = matrix.expand({"matrix": {"paths": [path]}}, "t").scenarios[0]
    return dataclasses.replace(base, **fields)


def sandbox_argv(tmp_path, **fields):
    ws = Workspace(tmp_path / "r", tmp_path / "t")
    ws.create()
    ctx = LaunchContext(scenario("vtest-virgl", **fields), toolset(), ws, Workload(probe="gl",
                        probe_args=list(fields.get("probe_args", ()))))
    return sandbox.FAMILY.plan(ctx), ws


def test_a_newline_in_an_env_value_stays_one_argument(tmp_path):
    plan, _ = sandbox_argv(tmp_path, env=(("ZZ", HOSTILE),))
    clean, _ = sandbox_argv(tmp_path / "clean", env=(("ZZ", "x"),))
    i = plan.argv.index("ZZ")
    assert plan.argv[i - 1:i + 2] == ["--setenv", "ZZ", HOSTILE]
    assert "/run/hostroot" not in plan.argv and len(plan.argv) == len(clean.argv)
    assert plan.argv.count("--ro-bind") == clean.argv.count("--ro-bind")


def test_probe_args_stay_probe_arguments(tmp_path):
    plan, _ = sandbox_argv(tmp_path, probe_args=(HOSTILE, "--", "--bind"))
    assert plan.argv[-3:] == [HOSTILE, "--", "--bind"]
    separator = plan.argv.index("--")
    assert (plan.argv[separator + 1] == "/usr/bin/python3"
            and "--bind" not in plan.argv[separator - 3:separator])


def qemu(cmdline="console=ttyS0", out_dir="/r/probe", root="/"):
    return QemuSpec(qemu="q", accel="tcg", memory_mb=256, kernel="/k", initrd="/i", cmdline=cmdline,
                    serial_log="/r/console.log", qmp_socket="/t/qmp.sock", runtime_root=root,
                    out_dir=out_dir,
                    display="none").argv()


def test_kernel_args_stay_inside_the_kernel_command_line():
    hostile = " ".join(vm.KERNEL_ARGS + (HOSTILE, "-device", "x"))
    argv, clean = qemu(cmdline=hostile), qemu()
    assert argv[argv.index("-append") + 1] == hostile
    assert len(argv) == len(clean) and argv.count("-device") == 0


def split_qemu_options(value):
    """QEMU's own reading of `a=b,c=d` with ',,' as a literal comma."""
    parts, current, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                current += ","
                i += 2
                continue
            parts.append(current)
            current = ""
        else:
            current += value[i]
        i += 1
    return parts + [current]


def test_a_comma_in_a_folder_cannot_add_a_qemu_option():
    folder = "/tmp/out,readonly=off,mount_tag=root"
    argv = qemu(out_dir=folder, root="/srv/a,b")
    shares = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-virtfs"]
    parsed = [dict(p.split("=", 1) for p in split_qemu_options(share)[1:]) for share in shares]
    assert parsed[0]["path"] == "/srv/a,b" and parsed[0]["mount_tag"] == "root"
    assert parsed[1] == {"path": folder, "mount_tag": "out", "security_model": "none"}


def test_the_guest_workload_script_keeps_values_whole(tmp_path):
    ws = Workspace(tmp_path / "r", tmp_path / "t")
    ws.create()
    ctx = LaunchContext(scenario("vm-headless", env=(("ZZ", HOSTILE + "'; touch /pwned; '"),)),
                        toolset(), ws,
                        Workload(probe="gl", probe_args=[HOSTILE]))
    vm.write_guest_workload(ctx, scanout=False, family_args=[])
    script = ws.probe_out / "environment.sh"
    value = subprocess.run(["sh", "-c", f'. "{script}" && printf %s "$ZZ"'], capture_output=True,
                           text=True).stdout
    assert value == HOSTILE + "'; touch /pwned; '"
    workload = (ws.probe_out / "workload.sh").read_text()
    assert subprocess.run(["sh", "-n", str(ws.probe_out / "workload.sh")]).returncode == 0
    assert workload.count("exec ") == 1


def test_rerun_script_quotes_every_value(tmp_path):
    plan, ws = sandbox_argv(tmp_path, env=(("ZZ", HOSTILE + "$(touch /pwned)"),))
    write_config(ws, "vtest-virgl/host/gl", plan)
    script = ws.result_dir / "rerun.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    assert "$(touch /pwned)'" in script.read_text()
