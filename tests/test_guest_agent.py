"""The host end of the guest command channel: framing and decoding, against a scripted peer."""
import base64
import os
import socket
import tempfile
import threading

import pytest

from harness.launch.families.vm_guest import Agent, GuestError


def serve_once(replies):
    """A unix socket peer that answers each command line with the given raw reply bytes."""
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    received = []

    def run():
        connection, _ = listener.accept()
        buffer = b""
        for reply in replies:
            while b"\n" not in buffer:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                buffer += chunk
            line, _, buffer = buffer.partition(b"\n")
            received.append(line.decode())
            if reply is None:
                connection.close()
                return
            connection.sendall(reply)
        threading.Event().wait(2)  # stay connected, like a guest that is still busy
        connection.close()

    threading.Thread(target=run, daemon=True).start()
    return path, received


def framed(number, code, output, noise=b""):
    # wrapped at 76 columns, as busybox base64 writes it
    encoded = base64.encodebytes(output.encode())
    return noise + f"BEGIN {number}\n".encode() + encoded + f"END {number} {code}\n".encode()


def test_command_is_sent_encoded_and_the_reply_decoded():
    long_output = "".join(f"line {n}\n" for n in range(500))
    path, received = serve_once([framed(1, 3, "hello\nerr\n", noise=b"stray\n"),
                                 framed(2, 0, long_output)])
    agent = Agent(path)
    first = agent.run("echo 'a b'; exit 3", timeout_s=5)
    assert (first.exit_code, first.output, bool(first)) == (3, "hello\nerr\n", False)
    assert received[0] == "1 " + base64.b64encode(b"echo 'a b'; exit 3").decode()
    second = agent.run("seq", timeout_s=5)
    assert second.exit_code == 0 and second.output == long_output
    agent.close()


def test_a_closed_channel_is_an_error_naming_the_command():
    path, _ = serve_once([None])
    agent = Agent(path)
    with pytest.raises(GuestError, match="closed its command channel during 'poweroff'"):
        agent.run("poweroff", timeout_s=5)


def test_a_silent_guest_times_out():
    path, _ = serve_once([b""])
    agent = Agent(path)
    with pytest.raises(GuestError, match="did not finish in time"):
        agent.run("sleep 100", timeout_s=0.3)


def test_no_channel_is_an_error():
    with pytest.raises(GuestError, match="cannot connect"):
        Agent("/nonexistent/agent.sock", timeout_s=0.1)


def test_a_channel_closed_before_sending_is_an_error():
    path, _ = serve_once([None])
    agent = Agent(path)
    with pytest.raises(GuestError):
        agent.run("first", timeout_s=5)
    with pytest.raises(GuestError, match="closed its command channel"):
        for _ in range(100):  # the first writes after the peer's close may still be buffered
            agent.run("again", timeout_s=5)
