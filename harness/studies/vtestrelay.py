"""Relays vtest clients to a vtest server and records what each client sent: the session a
fuzzer starts from. Every byte and every file descriptor (the server hands a client shared
memory as SCM_RIGHTS) goes through unchanged in both directions.

Usage: python3 vtestrelay.py LISTEN_SOCKET SERVER_SOCKET RECORD_PREFIX
(RECORD_PREFIX.N: what client N sent, in order; standard library only: it runs as a file)."""
import os
import select
import socket
import sys
import threading
from typing import List

CHUNK = 1 << 16
MAX_FDS = 16


def pump(source: socket.socket, target: socket.socket) -> bool:
    """Move what `source` has to `target`, fds included; False once `source` is closed."""
    data, fds, _, _ = socket.recv_fds(source, CHUNK, MAX_FDS)
    if not data:
        for fd in fds:
            os.close(fd)
        return False
    try:
        # The kernel ends a read after the segment that carried fds, and may glue plain bytes
        # before it: the fds came with the chunk's last bytes. vtest sends each fd with one dummy
        # byte, which its reader takes with recvmsg after a plain read of the bytes before; fds
        # on the chunk's first byte would go to that plain read, which drops them.
        plain, carrier = (data[:-1], data[-1:]) if fds else (data, b"")
        if plain:
            target.sendall(plain)
        if carrier:
            socket.send_fds(target, [carrier], fds)
    finally:
        for fd in fds:
            os.close(fd)
    return True


def relay(client: socket.socket, server_path: str, record_path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.connect(server_path)
    except OSError:
        client.close()
        return
    with open(record_path, "wb") as record:
        sides: List[socket.socket] = [client, server]
        while True:
            readable, _, _ = select.select(sides, [], [])
            if client in readable:
                data, fds, _, _ = socket.recv_fds(client, CHUNK, MAX_FDS)
                for fd in fds:  # a client passes none in the virgl protocol; never forwarded
                    os.close(fd)
                if not data:
                    break
                record.write(data)
                record.flush()
                server.sendall(data)
            if server in readable and not pump(server, client):
                break
    client.close()
    server.close()


def main(argv: List[str]) -> int:
    if len(argv) != 4:
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    listen_path, server_path, prefix = argv[1:]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listen_path)
    listener.listen(8)
    number = 0
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client, server_path, f"{prefix}.{number}"),
                         daemon=True).start()
        number += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
