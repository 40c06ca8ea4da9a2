#!/usr/bin/env python3
"""Memory per idle keep-alive client connection (issue 4, item 6).

Starts `portier serve` on a 1-route configuration (bench/candidate.py's manifests, its own small
upstream), opens N client connections that each complete one request and then stay open and idle,
and reports the growth of portier's VmRSS divided by N.

    python3 bench/idle_conns.py [--connections 10000] [--bin target/release/portier] [--tls]

With --tls the connections are TLS 1.3 (HTTP/1.1 by ALPN) to a one-host configuration with a
fresh self-signed certificate (openssl), so the growth includes rustls's per-connection state.

Raises its own open-file limit; N above the hard limit fails early with a clear message.
"""
import argparse
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import candidate  # noqa: E402
from scale import Upstream, get, memory  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=18281)
    ap.add_argument("--bin", default=os.environ.get("PORTIER_BIN",
                                                    os.path.join(HERE, "..", "target", "release", "portier")))
    ap.add_argument("--tls", action="store_true", help="TLS 1.3 connections (port + 1)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"open-file hard limit {hard} < {need}: raise it (ulimit -Hn) or use fewer --connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    # Many requests arrive at once: a deep accept queue instead of http.server's 5.
    ThreadingHTTPServer.request_queue_size = 4096
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="portier-idle-")
    https = f"127.0.0.1:{args.port + 1}" if args.tls else "127.0.0.1:0"
    routes = {"listen": {"http": f"127.0.0.1:{args.port}", "https": https},
              "tls": {"cert": "", "key": ""},
              "upstreams": {"backend": [f"127.0.0.1:{server.server_address[1]}"]},
              "routes": [{"host": "bench.example.test", "path_prefix": "/api/", "upstream": "backend"},
                         {"host": "other.example.test", "path_prefix": "/api/", "upstream": "backend"}]}
    if args.tls:
        # bench/candidate.py writes the TLS Secret for a one-host configuration only.
        routes["routes"] = routes["routes"][:1]
        routes["tls"] = {"cert": os.path.join(work, "c.pem"), "key": os.path.join(work, "k.pem")}
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", routes["tls"]["key"], "-out", routes["tls"]["cert"], "-days", "2",
                        "-subj", "/CN=bench.example.test", "-addext", "subjectAltName=DNS:bench.example.test"],
                       check=True, capture_output=True)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])

    def connect() -> socket.socket:
        if not args.tls:
            return socket.create_connection(("127.0.0.1", args.port))
        return tls.wrap_socket(socket.create_connection(("127.0.0.1", args.port + 1)),
                               server_hostname="bench.example.test")
    routes_file = os.path.join(work, "routes.json")
    json.dump(routes, open(routes_file, "w"))
    manifests = candidate.write_manifests(routes_file, work)
    # The portier process gets the raised limit through inheritance.
    proc = subprocess.Popen([args.bin, "serve", "--config", manifests, "--http-listen", f"127.0.0.1:{args.port}",
                             "--https-listen", https, "--admin-listen", "127.0.0.1:0",
                             "--access-log", "off", "--configmap", "bench/portier", "--worker-threads", "1",
                             "--state-dir", os.path.join(work, "state")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "portier.log"), "w"))
    conns = []
    try:
        t0 = time.monotonic()
        while get(args.port, "bench.example.test") != 200:
            if proc.poll() is not None or time.monotonic() - t0 > 30:
                sys.exit(f"portier did not start; see {work}/portier.log")
            time.sleep(0.01)
        request = b"GET /api/bench HTTP/1.1\r\nHost: bench.example.test\r\n\r\n"
        # Warm up the paths a connection takes, so the baseline includes them.
        for _ in range(200):
            s = connect()
            s.sendall(request)
            drain([s])
            s.close()
        time.sleep(0.5)
        before = memory(proc.pid)["VmRSS"]
        for i in range(args.connections):
            s = connect()
            s.sendall(request)
            conns.append(s)
            if len(conns) % 100 == 0:
                drain(conns[-100:])
        drain(conns[len(conns) - len(conns) % 100:])
        time.sleep(1.0)
        after = memory(proc.pid)
        per = (after["VmRSS"] - before) / args.connections
        kind = "TLS keep-alive connections" if args.tls else "keep-alive connections"
        print(f"{args.connections} idle {kind}: VmRSS {before / 1024:.1f} -> "
              f"{after['VmRSS'] / 1024:.1f} MiB, {per:.2f} KiB per connection (VmHWM {after['VmHWM'] / 1024:.1f} MiB)")
    finally:
        for s in conns:
            s.close()
        proc.terminate()
        proc.wait()


def drain(batch) -> None:
    """Reads each connection's response head and body (a small one), leaving it idle."""
    for s in batch:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += s.recv(4096)


if __name__ == "__main__":
    main()
