"""The sync-fd lifecycle for virgl_test_server, which has none of its own: one pipe for
readiness and shutdown. This supervisor holds the pipe's write end (FD). It starts the
server, and once the server's socket accepts a connection it writes one byte: the harness,
waiting for its read end to become readable, then starts bwrap with that read end as
`--sync-fd`. bwrap keeps it open for as long as the sandbox lives, so when the app exits (or
bwrap, or the harness, is killed) the kernel closes the last read end, the write end reports an
error, and the supervisor stops the server and removes its socket. If the server dies first,
the supervisor exits non-zero and its write end closes.

Usage: python3 supervisor.py FD SOCKET -- SERVER ARGS...   (standard library only)"""
import os
import select
import signal
import socket
import subprocess
import sys
import time

READY_TIMEOUT_S = 10.0


def accepts(path):
    """Whether a client can connect to the unix socket at `path` (the services module asks it
    too)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def stop(server, path):
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=1)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    try:
        os.unlink(path)
    except OSError:
        pass


def main(argv):
    fd, path, command = int(argv[1]), argv[2], argv[argv.index("--") + 1:]
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a closed read end is an event here, not a death
    # in the supervisor's process group: stopping that stops both
    server = subprocess.Popen(command)
    # A TERM to the supervisor alone (rerun.sh's cleanup) stops its server too.
    signal.signal(signal.SIGTERM, lambda *_: (stop(server, path), sys.exit(143)))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not accepts(path):
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server, path)
            print("supervisor: the server did not come up", file=sys.stderr)
            return 1
        time.sleep(0.01)
    os.write(fd, b"R")
    watcher = select.poll()
    watcher.register(fd, select.POLLERR | select.POLLHUP)
    while True:
        if watcher.poll(50):  # the last read end closed: the app is gone
            stop(server, path)
            print("supervisor: the app's end of the sync pipe closed: server stopped",
                  file=sys.stderr)
            return 0
        if server.poll() is not None:
            print(f"supervisor: the server exited ({server.returncode})", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
