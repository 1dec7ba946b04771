import os
import subprocess
import sys

from harness.launch.families import registry
from harness.scenario import model
from harness import matrix
from harness.launch import vtest
from harness.launch.families import host, sandbox
from harness.launch.families.base import write_config
from harness.launch.lifecycle import LaunchContext, Workload, Workspace
from harness.host.toolset import Tool, Toolset


def fake_toolset(render_nodes=()):
    tools = {name: Tool(name, f"/usr/bin/{name}", "1.0") for name in ("bwrap", "virgl_test_server",
                                                                      "python3")}
    tools["mesa"] = Tool("mesa", "/usr/lib/dri", "22.3.6")
    return Toolset("discovery", tools, list(render_nodes))


def scenario(path, **settings):
    return matrix.expand({"matrix": {"paths": [path]}, "defaults": settings}, "t").scenarios[0]


def plan_of(family, scenario, toolset, workspace, workload):
    return family.FAMILY.plan(LaunchContext(scenario, toolset, workspace, workload))


def workspace(tmp_path):
    ws = Workspace(tmp_path / "result", tmp_path / "t")
    ws.create()
    return ws


def test_vtest_bwrap_argv_has_no_dri_and_binds_the_socket(tmp_path):
    ws = workspace(tmp_path)
    plan = plan_of(sandbox, scenario("vtest-virgl"), fake_toolset(), ws, Workload(probe="gl"))
    argv = plan.argv
    assert argv[0] == "/usr/bin/bwrap" and "--unshare-all" in argv and "--die-with-parent" in argv
    assert "/dev/dri" not in argv
    socket = str(ws.tmp_dir / "virgl.sock")
    i = argv.index(socket)
    assert argv[i - 1] == "--bind" and argv[i + 1] == "/tmp/.virgl_test"
    env = dict(zip(argv[argv.index("--setenv") + 1::3], argv[argv.index("--setenv") + 2::3],
                   strict=False))
    assert env["GALLIUM_DRIVER"] == "virpipe" and env["VTEST_SOCKET_NAME"] == "/tmp/.virgl_test"
    assert argv[argv.index("--") + 1:][:2] == ["/usr/bin/python3", "/run/gpu-harness/gles.py"]


def test_virgl_server_argv_uses_equals_form(tmp_path):
    ws = workspace(tmp_path)
    (service,) = plan_of(sandbox, scenario("vtest-virgl"), fake_toolset(["/dev/dri/renderD128"]),
                         ws,
                              Workload(probe="gl")).services
    assert service.argv == ["/usr/bin/virgl_test_server", "--use-egl-surfaceless",
                            "--rendernode=/dev/dri/renderD128",
                            f"--socket-path={ws.tmp_dir / 'virgl.sock'}"]
    assert service.env["XDG_RUNTIME_DIR"] == str(ws.tmp_dir)


def test_sandbox_dri_binds_dev_dri(tmp_path):
    plan = plan_of(sandbox, scenario("sandbox-dri"), fake_toolset(["/dev/dri/renderD128"]),
                   workspace(tmp_path),
                        Workload(probe="gl"))
    i = plan.argv.index("--dev-bind")
    assert plan.argv[i:i + 3] == ["--dev-bind", "/dev/dri", "/dev/dri"]
    assert plan.services == []


def test_runtime_layout_of_a_rootfs(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "lib").symlink_to("usr/lib")
    (root / "lib64").mkdir()
    layout = sandbox.runtime_layout(model.Runtime("r", model.RuntimeKind.ROOTFS, str(root)))
    assert (str(root / "usr"), "/usr") in layout.binds and (str(root / "lib64"),
                                                            "/lib64") in layout.binds
    assert ("usr/lib", "/lib") in layout.symlinks


def test_software_env_forces_llvmpipe_and_native_drops_driver_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("GALLIUM_DRIVER", "zink")
    ws = workspace(tmp_path)
    assert plan_of(host, scenario("software"), fake_toolset(), ws,
                   Workload(probe="gl")).env["GALLIUM_DRIVER"] == "llvmpipe"
    assert "GALLIUM_DRIVER" not in plan_of(host, scenario("native"), fake_toolset(), ws,
                                           Workload(probe="gl")).env


def test_saved_config_rerun_script_is_valid_shell(tmp_path):
    ws = workspace(tmp_path)
    plan = plan_of(sandbox, scenario("vtest-virgl", env={"WEIRD": "a b'c"}), fake_toolset(), ws,
                   Workload(probe="gl"))
    write_config(ws, "vtest-virgl/host/gl", plan)
    script = ws.result_dir / "rerun.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "--socket-path=" in text and "'a b'\"'\"'c'" in text
    assert (ws.result_dir / "workload.argv").read_text().splitlines() == plan.argv
    assert (ws.result_dir / "service-virgl_test_server.argv").exists()


def test_virgl_server_argv_without_a_render_node():
    argv = vtest.server_argv(program="v", socket="/s", render_node=None, use_gles=True)
    assert argv == ["v", "--use-egl-surfaceless", "--use-gles", "--socket-path=/s"]


def test_a_nix_toolset_python_runs_from_the_store_inside_the_sandbox(tmp_path):
    toolset = fake_toolset()
    store_python = "/nix/store/0000000000000000000000000000000-probe-python/bin/python3"
    toolset.tools["python3"] = Tool("python3", store_python, "3.13.0")
    argv = plan_of(sandbox, scenario("vtest-virgl"), toolset, workspace(tmp_path),
                   Workload(probe="gl")).argv
    i = argv.index("/nix/store")
    assert argv[i - 1] == "--ro-bind" and argv[i + 1] == "/nix/store"
    assert argv[argv.index("--") + 1] == store_python
    assert "/nix/store" not in plan_of(sandbox, scenario("vtest-virgl"), fake_toolset(),
                                       workspace(tmp_path / "b"),
                                            Workload(probe="gl")).argv


def test_a_bwrap_that_cannot_make_a_sandbox_is_a_skip_saying_what_is_missing(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    toolset = fake_toolset()
    toolset.tools["bwrap"] = Tool("bwrap", str(fake), "0.8.0")
    toolset.tools["mesa"] = Tool("mesa", "/usr/lib/dri", "22.3.6")
    spec = scenario("vtest-virgl").spec
    reason = registry.of(spec).available(spec, toolset)
    assert reason.startswith("bwrap cannot create a sandbox here (bwrap: No permissions to create "
                             "new namespace)")
    assert "unprivileged user namespaces" in reason and "Nix build" in reason


def test_a_toolset_that_points_host_gl_at_its_mesa_reaches_every_host_gl_program(tmp_path):
    from harness.launch.vm import display
    toolset = fake_toolset()
    gl_env = {"__EGL_VENDOR_LIBRARY_DIRS": "/nix/store/x-mesa/share/glvnd/egl_vendor.d",
              "LIBGL_DRIVERS_PATH": "/nix/store/x-mesa/lib/dri"}
    toolset.tools["mesa"] = Tool("mesa", "/nix/store/x-mesa/lib/dri", "25.2.6", {"env": gl_env})
    toolset.tools["Xvfb"] = Tool("Xvfb", "/usr/bin/Xvfb", "21.1")
    ws = workspace(tmp_path)
    (server,) = plan_of(sandbox, scenario("vtest-virgl"), toolset, ws,
                        Workload(probe="gl")).services
    assert gl_env.items() <= server.env.items()
    qemu_display, (xvfb,), qemu_env = display.display_for("virtio-gpu-gl-pci", toolset, ws)
    assert (qemu_display == "sdl,gl=on" and gl_env.items() <= xvfb.env.items()
            and gl_env.items() <= qemu_env.items())
    assert fake_toolset().host_gl_env() == {}


def test_the_confined_server_runs_in_bwrap_and_its_seccomp_filter_and_rerun_hands_it_over(tmp_path):
    """vtest-virgl-confined's server: the host's program under bwrap, its seccomp filter compiled
    by the toolset's python3 (setup installs python3-seccomp for /usr/bin/python3) into the
    scenario's results, handed as an open file, and opened again by rerun.sh."""
    ws = workspace(tmp_path)
    plan = plan_of(sandbox, scenario("vtest-virgl-confined"), fake_toolset(), ws,
                   Workload(probe="gl"))
    (service,) = plan.services
    try:
        ((fd, bpf),) = service.handed
        assert bpf == str(ws.result_dir / "virgl_test_server.bpf") and os.fstat(fd).st_size > 0
        argv = service.argv
        assert argv[0] == "/usr/bin/bwrap" and argv[argv.index("--seccomp") + 1] == str(fd)
        assert argv[argv.index("--") + 1:] == ["/usr/bin/virgl_test_server",
                                               "--use-egl-surfaceless",
                                              f"--socket-path={ws.tmp_dir / 'virgl.sock'}"]
        # its socket's folder: the one it writes
        assert argv[argv.index(str(ws.tmp_dir)) - 1] == "--bind"
        write_config(ws, "vtest-virgl-confined/host/gl", plan)
    finally:
        os.close(fd)
    script = (ws.result_dir / "rerun.sh").read_text()
    assert script.startswith("#!/bin/bash") and f" {fd}<{bpf} &" in script
    assert subprocess.run(["bash", "-n", str(ws.result_dir / "rerun.sh")]).returncode == 0


def test_the_confined_server_s_path_is_a_skip_without_a_filter_or_a_host_program(tmp_path):
    spec = scenario("vtest-virgl-confined").spec
    no_binding = fake_toolset()
    # the harness's venv: no libseccomp binding
    no_binding.tools["python3"] = Tool("python3", sys.executable, "3")
    assert "no libseccomp binding" in (sandbox.FAMILY.available(spec, no_binding) or "")
    elsewhere = fake_toolset()
    elsewhere.tools["virgl_test_server"] = Tool("virgl_test_server", str(tmp_path / "wrapper"),
                                                "1.1.0")
    assert "outside the host's /usr and /etc" in (sandbox.FAMILY.available(spec, elsewhere) or "")
