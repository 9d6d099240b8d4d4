#!/usr/bin/env python3
"""Real Linux TCP clients for the Wine lane: open N connections to HOST:PORT, hold them, and
report what the server did with each one, as JSON on stdout.

    clients.py HOST PORT N SETTLE_SECONDS   (then reads commands on stdin: "count", "wait-closed")

A connection the driver accepted stays open; one it refused (table full) is reset or closed
by the server. "count" prints {"open": A, "closed": B}; "wait-closed" waits (up to SETTLE
seconds) until every connection is closed by the server and prints the same."""
import json
import select
import socket
import sys
import time


def main() -> int:
    host, port, n, settle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        conns.append(s)
    closed = set()

    def poll(deadline: float, until_all_closed: bool) -> None:
        while True:
            live = [s for s in conns if s.fileno() not in closed]
            if until_all_closed and not live:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not live:
                return
            readable, _, _ = select.select(live, [], [], min(remaining, 0.2))
            for s in readable:
                try:
                    data = s.recv(4096)
                except (ConnectionResetError, OSError):
                    data = b""
                if not data:
                    closed.add(s.fileno())

    def report() -> None:
        print(json.dumps({"open": n - len(closed), "closed": len(closed)}), flush=True)

    for line in sys.stdin:
        command = line.strip()
        if command == "count":
            poll(time.monotonic() + settle, False)
            report()
        elif command == "wait-closed":
            poll(time.monotonic() + settle, True)
            report()
        elif command == "quit":
            break
    for s in conns:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
