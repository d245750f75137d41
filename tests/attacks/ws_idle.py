#!/usr/bin/env python3
"""Attack probe: N WebSocket upgrades to /graphql that never send
connection_init. Prints the server's RSS before, with the sockets open, and
after the handshake deadline, and how many sockets the server closed.

Usage: ws_idle.py HOST:PORT SERVER_PID [N] [WAIT_SECONDS]
Standard library only; for notes and manual checks (CI runs the Rust tests).
"""
import base64, os, socket, sys, time

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1

def upgrade(host, port):
    s = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
    head = s.recv(4096)
    return s, head.split(b"\r\n", 1)[0].decode(errors="replace")

def main():
    hostport, pid = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 12
    host, port = hostport.rsplit(":", 1)
    before = rss_mb(pid)
    socks, statuses = [], {}
    t0 = time.time()
    for _ in range(n):
        s, status = upgrade(host, int(port))
        statuses[status] = statuses.get(status, 0) + 1
        socks.append(s)
    opened = time.time() - t0
    time.sleep(1)
    held = rss_mb(pid)
    time.sleep(wait)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(65536)
            if data == b"" or b"\x88" in data[:2]:
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    after = rss_mb(pid)
    print(f"upgrades: {statuses} in {opened:.2f}s")
    print(f"server RSS MB: before {before:.0f}, {n} idle sockets open {held:.0f} (+{held-before:.0f}), "
          f"after {wait:.0f}s {after:.0f}; closed by server: {closed}/{n}")

if __name__ == "__main__":
    main()
