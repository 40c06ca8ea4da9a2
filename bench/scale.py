#!/usr/bin/env python3
"""Route scale of portier (issue 4, items 4 and 5): start-up, memory per route and hot-reload
latency with N Ingress hosts, each an Ingress + Service + EndpointSlice written by
bench/candidate.py exactly as the peer benchmark's `routes` scenario gets them.

    cargo build --release -p portier
    python3 bench/scale.py                 # 10,000 hosts, 5 reloads
    python3 bench/scale.py --hosts 1000 --reloads 3 --bin target/release/portier

Prints, for a 1-host baseline and for N hosts: seconds from spawn to the last host answering
200, VmHWM/VmRSS one second later, KiB per route above the baseline, and for each reload the
seconds from rewriting the manifest file (by rename, as editors and ConfigMap mounts do) until a
changed host answers 200. Needs only Python 3 and openssl; the upstream is a small threaded
server started here on 127.0.0.1 (readiness only, not load).
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import candidate  # noqa: E402  (the adapter's manifest writer)


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def get(port: int, host: str) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(f"GET /api/bench HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    m = re.match(rb"HTTP/1\.1 (\d+)", data)
    return int(m.group(1)) if m else None


def memory(pid: int) -> dict:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, value = line.split(":", 1)
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def run(args, n: int, upstream_port: int, reloads: int) -> dict:
    work = tempfile.mkdtemp(prefix=f"portier-scale-{n}-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.example.test"],
                   check=True, capture_output=True)
    hosts = ["bench.example.test"] if n == 1 else [f"h{i:04d}.example.test" for i in range(1, n + 1)]
    routes = {"listen": {"http": f"127.0.0.1:{args.port}", "https": "127.0.0.1:0"},
              "tls": {"cert": cert, "key": key},
              "upstreams": {"backend": [f"127.0.0.1:{upstream_port}"]},
              "routes": [{"host": h, "path_prefix": "/api/", "upstream": "backend"} for h in hosts]}
    routes_file = os.path.join(work, "routes.json")
    json.dump(routes, open(routes_file, "w"))
    manifests = candidate.write_manifests(routes_file, work)
    last = hosts[-1]
    t0 = time.monotonic()
    proc = subprocess.Popen([args.bin, "serve", "--config", manifests, "--http-listen", f"127.0.0.1:{args.port}",
                             "--https-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                             "--access-log", "off", "--configmap", "bench/portier", "--worker-threads", "1",
                             "--state-dir", os.path.join(work, "state")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "portier.log"), "w"))
    result = {"hosts": n}
    try:
        while get(args.port, last) != 200:
            if proc.poll() is not None:
                sys.exit(f"portier exited; see {work}/portier.log")
            if time.monotonic() - t0 > 60:
                sys.exit("not serving the last host after 60 s")
            time.sleep(0.002)
        result["startup_s"] = time.monotonic() - t0
        time.sleep(1.0)
        result.update(memory(proc.pid))
        path = os.path.join(manifests, "bench.yaml")
        text = open(path).read()
        result["reload_s"] = []
        old = last
        for i in range(reloads):
            new = f"changed{i}.example.test"
            text = text.replace(f'"host": "{old}"', f'"host": "{new}"')
            with open(path + ".tmp", "w") as f:
                f.write(text)
            t1 = time.monotonic()
            os.rename(path + ".tmp", path)
            while get(args.port, new) != 200:
                if time.monotonic() - t1 > 20:
                    sys.exit("change not live after 20 s")
                time.sleep(0.002)
            result["reload_s"].append(time.monotonic() - t1)
            old = new
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--port", type=int, default=18280, help="portier's HTTP port on 127.0.0.1")
    ap.add_argument("--bin", default=os.environ.get("PORTIER_BIN",
                                                    os.path.join(HERE, "..", "target", "release", "portier")))
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream_port = server.server_address[1]
    base = run(args, 1, upstream_port, 0)
    big = run(args, args.hosts, upstream_port, args.reloads)
    per_route = (big["VmHWM"] - base["VmHWM"]) / max(args.hosts - 1, 1)
    for r in (base, big):
        print(f"hosts={r['hosts']:>6}  start->last host {r['startup_s']:.3f} s  "
              f"VmHWM {r['VmHWM'] / 1024:.1f} MiB  VmRSS {r['VmRSS'] / 1024:.1f} MiB")
    print(f"KiB per route above the 1-host baseline (VmHWM): {per_route:.2f}")
    if big["reload_s"]:
        rs = sorted(big["reload_s"])
        print(f"one Ingress changed -> live: median {rs[len(rs) // 2]:.3f} s, max {rs[-1]:.3f} s "
              f"({', '.join(f'{x:.3f}' for x in big['reload_s'])})")


if __name__ == "__main__":
    main()
