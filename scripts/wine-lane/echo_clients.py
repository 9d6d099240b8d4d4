#!/usr/bin/env python3
"""Echo clients for the Wine lane: N connections to HOST:PORT, each sending its own pseudo-random
stream of LENGTH bytes in writes of varied size while reading concurrently, and checking that
every byte comes back in order. Prints {"connections": N, "bytes": total} as JSON on success.

    echo_clients.py HOST PORT N LENGTH

The connections stay open afterwards until the server closes them (stdin closed or "quit" ends
the script): Wine's netio does not complete a pending receive when the peer closes, so the lane
ends them with `wskctl stop`."""
import json
import random
import socket
import sys
import threading


def run(host: str, port: int, seed: int, length: int, conns: list, errors: list) -> None:
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(length))
    s = socket.create_connection((host, port), timeout=60)
    conns.append(s)
    received = bytearray()

    def reader() -> None:
        while len(received) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    sent = 0
    while sent < length:
        n = min(length - sent, rng.randint(1, 16384))
        s.sendall(data[sent:sent + n])
        sent += n
    t.join()
    if bytes(received) != data:
        errors.append(f"connection {seed}: {len(received)} of {length} bytes came back"
                      + (", and they differ" if len(received) == length else ""))


def main() -> int:
    host, port, n, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    conns: list = []
    errors: list = []
    threads = [threading.Thread(target=run, args=(host, port, i, length, conns, errors))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors or len(conns) != n:
        print(json.dumps({"errors": errors or [f"{len(conns)} of {n} connected"]}), flush=True)
        return 1
    print(json.dumps({"connections": n, "bytes": n * length}), flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
