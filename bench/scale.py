#!/usr/bin/env python3
"""Route scale of portier (issue 4, items 4 and 5): start-up, memory per route and hot-reload
latency with N Ingress hosts, each an Ingress + Service + EndpointSlice written by
bench/candidate.py exactly as the peer benchmark's `routes` scenario gets them.

    cargo build --release -p portier
    python3 bench/scale.py                 # 10,000 hosts, 5 reloads
    python3 bench/scale.py --hosts 1000 --reloads 3 --bin target/release/portier
    python3 bench/scale.py --reloads 0 --load-reloads 50   # item 5: 50 reloads under load

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


class Load:
    """Keep-alive clients each sending one request to a random host every 1/rate s, timing every
    answer: the figure is the slowest request and the failures while reloads happen. The clients
    run in a child process so that this process's upstream and polling share no lock with them."""

    def __init__(self, port: int, hosts: list, conns: int, rate: float):
        import multiprocessing
        self.port, self.hosts, self.conns, self.interval = port, hosts, conns, 1.0 / rate
        ctx = multiprocessing.get_context("fork")
        self.stopping = ctx.Event()
        self.queue = ctx.Queue()
        self.proc = ctx.Process(target=self.child, daemon=True)

    def start(self):
        self.proc.start()

    def child(self):
        self.lock = threading.Lock()
        self.latencies, self.failures = [], []
        threads = [threading.Thread(target=self.client, args=(i,)) for i in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.queue.put((self.latencies, self.failures))

    def stop(self) -> dict:
        self.stopping.set()
        latencies, failures = self.queue.get()
        self.proc.join()
        lat = sorted(latencies)
        self.failures = failures
        return {"requests": len(lat) + len(self.failures), "failures": len(self.failures),
                "failure_samples": self.failures[:5], "max_ms": lat[-1] * 1e3 if lat else None,
                "p99_ms": lat[int(len(lat) * 0.99)] * 1e3 if lat else None,
                "over_50ms": sum(1 for x in lat if x > 0.050)}

    def client(self, seed: int):
        import random
        rnd = random.Random(seed)
        sock, buf = None, b""
        next_at = time.monotonic()
        while not self.stopping.is_set():
            next_at += self.interval
            host = rnd.choice(self.hosts)
            t0 = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
                    buf = b""
                sock.sendall(f"GET /api/bench HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                status, buf = read_response(sock, buf)
                dt = time.monotonic() - t0
                with self.lock:
                    if status == 200:
                        self.latencies.append(dt)
                    else:
                        self.failures.append(f"{host}: status {status}")
            except OSError as e:
                with self.lock:
                    self.failures.append(f"{host}: {e}")
                if sock:
                    sock.close()
                sock = None
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        if sock:
            sock.close()


def read_response(sock, buf: bytes):
    """One HTTP/1.1 response with a content-length body; returns (status, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed in the body")
        rest += chunk
    return status, rest[need:]


def start_nginx_upstream():
    """A 1-worker nginx answering 200 on 127.0.0.1, when nginx is installed: under load the Python
    upstream would add its own pauses to the latencies measured."""
    import atexit
    import shutil
    if not shutil.which("nginx"):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="portier-scale-upstream-")
    temps = "".join(f" {k}_temp_path {d}/tmp-{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = os.path.join(d, "up.conf")
    with open(conf, "w") as f:
        f.write(f"worker_processes 1; daemon off; pid {d}/up.pid; error_log {d}/up.err warn;\n"
                "events { worker_connections 4096; }\n"
                f"http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s; {temps}\n"
                f" server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain; return 200 \"ok\\n\"; }} }} }}\n")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.01)
    proc.terminate()
    return None


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
        old = last

        def rename_last_host(new: str) -> float:
            """Renames the last host in the manifest file (by rename, as editors and ConfigMap
            mounts do); the seconds until the new name answers 200."""
            nonlocal text, old
            text = text.replace(f'"host": "{old}"', f'"host": "{new}"')
            with open(path + ".tmp", "w") as f:
                f.write(text)
            t1 = time.monotonic()
            os.rename(path + ".tmp", path)
            while get(args.port, new) != 200:
                if time.monotonic() - t1 > 20:
                    sys.exit("change not live after 20 s")
                time.sleep(0.002)
            old = new
            return time.monotonic() - t1

        result["reload_s"] = []
        for i in range(reloads):
            result["reload_s"].append(rename_last_host(f"changed{i}.example.test"))
            time.sleep(0.5)
        if args.load_reloads and n > 1:
            # The same load without reloads first: the client's and the machine's own noise floor.
            quiet = Load(args.port, hosts[:-1], args.load_conns, args.load_rate)
            quiet.start()
            time.sleep(10.0)
            result["quiet"] = quiet.stop()
            load = Load(args.port, hosts[:-1], args.load_conns, args.load_rate)
            load.start()
            time.sleep(1.0)
            live = []
            for i in range(args.load_reloads):
                live.append(rename_last_host(f"loaded{i}.example.test"))
                time.sleep(0.05)
            time.sleep(1.0)
            result["load"] = load.stop()
            result["load"]["live_s"] = live
    finally:
        proc.terminate()
        proc.wait()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--load-reloads", type=int, default=0,
                    help="then this many more reloads while clients send requests (issue 4 item 5: 50)")
    ap.add_argument("--load-conns", type=int, default=8, help="keep-alive clients during --load-reloads")
    ap.add_argument("--load-rate", type=float, default=100.0, help="requests/s per client during --load-reloads")
    ap.add_argument("--port", type=int, default=18280, help="portier's HTTP port on 127.0.0.1")
    ap.add_argument("--bin", default=os.environ.get("PORTIER_BIN",
                                                    os.path.join(HERE, "..", "target", "release", "portier")))
    args = ap.parse_args()
    nginx = start_nginx_upstream() if args.load_reloads else None
    if nginx:
        upstream_port = nginx[1]
    else:
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
    if "load" in big:
        ld = big["load"]
        live = sorted(ld["live_s"])
        print(f"{len(live)} reloads under load ({args.load_conns} clients x {args.load_rate:g} req/s, random hosts): "
              f"{ld['requests']} requests, {ld['failures']} failed, {ld['over_50ms']} over 50 ms, "
              f"p99 {ld['p99_ms']:.1f} ms, max {ld['max_ms']:.1f} ms; change live median {live[len(live) // 2]:.3f} s, "
              f"max {live[-1]:.3f} s")
        q = big["quiet"]
        print(f"same load for 10 s without reloads: {q['requests']} requests, {q['failures']} failed, "
              f"{q['over_50ms']} over 50 ms, p99 {q['p99_ms']:.1f} ms, max {q['max_ms']:.1f} ms")
        for f in ld["failure_samples"]:
            print(f"  failure: {f}")


if __name__ == "__main__":
    main()
