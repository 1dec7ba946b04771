"""The relay between a vtest client and its server passes an fd where the reader looks for it: a
server's answer (plain bytes) and then one dummy byte carrying a file descriptor, read by the
client as vtest's readers do (a plain read of the answer, then recvmsg of the byte). Real unix
sockets; the kernel glues the two sends into one read on the relay's side."""
import os
import socket

from harness.studies import vtestrelay


def test_an_fd_sent_after_plain_bytes_reaches_the_reader_s_recvmsg_not_its_plain_read(tmp_path):
    server_end, relay_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    relay_out, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    shared = tmp_path / "blob"
    shared.write_bytes(b"the server's memory")
    with open(shared, "rb") as handle:
        server_end.sendall(b"ANSWER12")  # a reply's header and data
        socket.send_fds(server_end, [b"\0"], [handle.fileno()])  # then the fd, on one dummy byte
    # Both sends are queued before the relay reads: it gets them in one read, the fd with it.
    assert vtestrelay.pump(relay_in, relay_out)
    assert client_end.recv(8) == b"ANSWER12"  # the plain read of the answer
    data, fds, _, _ = socket.recv_fds(client_end, 1, 4)
    try:
        assert data == b"\0" and len(fds) == 1, (data, fds)
        assert os.read(fds[0], 64) == b"the server's memory"
    finally:
        for fd in fds:
            os.close(fd)
    for end in (server_end, relay_in, relay_out, client_end):
        end.close()


def test_bytes_without_fds_pass_whole():
    source, relay_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    relay_out, sink = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    source.sendall(b"abc" * 100)
    assert vtestrelay.pump(relay_in, relay_out)
    assert sink.recv(1000) == b"abc" * 100
    source.close()
    assert not vtestrelay.pump(relay_in, relay_out)  # the source closed
    for end in (relay_in, relay_out, sink):
        end.close()
