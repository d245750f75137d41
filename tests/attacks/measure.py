#!/usr/bin/env python3
"""Measures what hostile requests cost a running `hearth serve --demo`.

Starts the given `hearth` binary on a free port with a throwaway data
directory, sends each attack once (with a client timeout, and a watchdog
that kills the server if its RSS passes --max-rss-mb), and prints per
attack: HTTP status, error code, response size, wall time, the server's
RSS after the attack and its peak RSS (VmHWM) so far, and whether it still
answers a normal query. Standard library only.

    python3 tests/attacks/measure.py --hearth target/debug/hearth [--levels 22,30]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def nested_fragments(levels):
    """F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^levels fields."""
    parts = ["query { ...F0 }"]
    for i in range(levels):
        parts.append(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}")
    parts.append(f"fragment F{levels} on Query {{ __typename }}")
    return " ".join(parts)


def post(port, body, timeout, chunked=False, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = {"content-type": "application/json"}
    hdrs.update(headers or {})
    start = time.monotonic()
    try:
        conn.putrequest("POST", "/graphql")
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if chunked:
            conn.putheader("transfer-encoding", "chunked")
        else:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        step = 64 * 1024
        try:
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed; read its answer
        res = conn.getresponse()
        data = res.read()
        return res.status, data, time.monotonic() - start
    except Exception as err:  # timeouts, resets
        return None, repr(err).encode(), time.monotonic() - start
    finally:
        conn.close()


def summary(status, data):
    code = None
    try:
        doc = json.loads(data)
        errors = doc.get("errors") or []
        if errors:
            code = (errors[0].get("extensions") or {}).get("code")
            message = errors[0].get("message", "")
        else:
            message = ""
    except Exception:
        message = data[:80].decode(errors="replace")
    return code, message[:100]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hearth", required=True)
    ap.add_argument("--levels", default="22")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--max-rss-mb", type=int, default=4096)
    ap.add_argument("--skip", default="", help="comma-separated attack names to skip")
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="hearth-measure-")
    port = free_port()
    server = subprocess.Popen(
        [args.hearth, "serve", "--demo", "--listen", f"127.0.0.1:{port}",
         "--data-dir", data_dir, "--sim-base-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = {"by_watchdog": False}

    def watchdog():
        while server.poll() is None:
            rss = rss_kb(server.pid)
            if rss and rss > args.max_rss_mb * 1024:
                killed["by_watchdog"] = True
                server.kill()
                return
            time.sleep(0.05)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _, _ = post(port, b'{"query":"{__typename}"}', 2)
                if status == 200:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("server did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print(f"idle: RSS {rss_kb(server.pid) // 1024} MB")
        login = json.dumps({"query": 'mutation { login(email: "admin@acme.test", password: "hearth-demo") { token } }'})
        _, data, _ = post(port, login.encode(), 30)
        token = json.loads(data)["data"]["login"]["token"]
        auth = {"authorization": f"Bearer {token}"}

        attacks = []
        for levels in [int(x) for x in args.levels.split(",") if x]:
            q = nested_fragments(levels)
            attacks.append((f"fragments-{levels}", json.dumps({"query": q}).encode(), False, None))
        big_vars = b'{"query":"{__typename}","variables":{"v":[' + b"0," * (10 * 1024 * 1024 - 1) + b"0]}}"
        attacks.append(("body-20MB", big_vars, False, None))
        attacks.append(("body-20MB-chunked", big_vars, True, None))
        logins = " ".join(
            f'l{i}: login(email: "nobody@x.test", password: "x") {{ token }}' for i in range(1000))
        attacks.append(("login-x1000", json.dumps({"query": "mutation { " + logins + " }"}).encode(), False, None))
        big_id = "a" * (1024 * 1024 - 100)
        attacks.append(("id-1MB", json.dumps({"query": "query($id: ID!) { device(id: $id) { id } }",
                                              "variables": {"id": big_id}}).encode(), False, auth))
        skip = set(args.skip.split(","))
        print(f"{'attack':20} {'status':>6} {'code':16} {'bytes':>9} {'secs':>8} {'RSS MB':>7} {'peak MB':>7} alive")
        for name, body, chunked, headers in attacks:
            if name in skip:
                continue
            status, data, secs = post(port, body, args.timeout, chunked=chunked, headers=headers)
            code, message = summary(status, data)
            alive_status, _, _ = post(port, b'{"query":"{__typename}"}', 10) if server.poll() is None else (None, b"", 0)
            rss = rss_kb(server.pid)
            hwm = rss_kb(server.pid, "VmHWM")
            print(f"{name:20} {str(status):>6} {str(code):16} {len(data):>9} {secs:>8.3f} "
                  f"{(rss or 0) // 1024:>7} {(hwm or 0) // 1024:>7} {alive_status == 200}"
                  + ("  (killed by RSS watchdog)" if killed["by_watchdog"] else ""))
            print(f"    {message}")
            if server.poll() is not None:
                print("server is gone")
                break
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
