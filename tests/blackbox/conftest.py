"""Fixtures for portier's black-box battery: the binary, manifest directories, portier processes,
and Python upstreams that can answer, hang, refuse, or die mid-response. Everything listens on
127.0.0.1 only; every wait is bounded."""
import datetime
import http.client
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PORTIER_BIN", REPO / "target" / "debug" / "portier"))
NOFILE = 8192

_LIVE = []  # running gateways, for log dumps on failure


# --------------------------------------------------------------------------- file limits
def raise_nofile(n=NOFILE):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


raise_nofile()


# --------------------------------------------------------------------------- certificates
def make_cert(*names):
    """Self-signed ECDSA certificate for `names`; returns (cert_pem, key_pem) as str."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


def cert_serial(pem_der):
    from cryptography import x509

    return x509.load_der_x509_certificate(pem_der).serial_number


# --------------------------------------------------------------------------- upstream
class Upstream:
    """A raw-socket HTTP/1.1 server. Behaviour by path:
    .../hang      reads the request, never answers
    .../close     closes right after reading the request
    .../diebody   sends headers announcing 100000 bytes, 1000 bytes, then closes
    .../slow      answers 200 after 2 s
    .../ws        with Upgrade: answers 101, then echoes bytes
    anything else 200 with a JSON body {upstream, path, headers, body_len}
    Every parsed request is recorded in .requests (dicts); .raw keeps every byte received."""

    def __init__(self, name):
        self.name = name
        self.requests = []
        self.raw = bytearray()
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2048)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, pred=lambda r: True):
        with self.lock:
            return sum(1 for r in self.requests if pred(r))

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.raw.clear()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            c.settimeout(60)
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    with self.lock:
                        self.raw += d
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].decode("latin1").split(" ", 2)
                headers = []
                for ln in lines[1:]:
                    k, _, v = ln.decode("latin1").partition(":")
                    headers.append((k.strip().lower(), v.strip()))
                hd = {}
                for k, v in headers:
                    hd.setdefault(k, v)
                body = b""
                if "chunked" in hd.get("transfer-encoding", "").lower():
                    while True:
                        while b"\r\n" not in buf:
                            d = c.recv(65536)
                            if not d:
                                return
                            buf += d
                        size_line, buf = buf.split(b"\r\n", 1)
                        size = int(size_line.split(b";")[0], 16)
                        while len(buf) < size + 2:
                            d = c.recv(65536)
                            if not d:
                                return
                            buf += d
                        body += buf[:size]
                        buf = buf[size + 2 :]
                        if size == 0:
                            break
                else:
                    n = int(hd.get("content-length", "0") or 0)
                    while len(buf) < n:
                        d = c.recv(65536)
                        if not d:
                            return
                        buf += d
                    body, buf = buf[:n], buf[n:]
                req = {"method": method, "path": target, "headers": headers, "hd": hd, "body_len": len(body)}
                with self.lock:
                    self.requests.append(req)
                if "/hang" in target:
                    while c.recv(65536):
                        pass
                    return
                if "/close" in target:
                    return
                if "/diebody" in target:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
                    time.sleep(0.2)
                    return
                if "/slow" in target:
                    time.sleep(2)
                if "/ws" in target and "upgrade" in hd:
                    c.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    )
                    if buf:
                        c.sendall(buf)
                    c.settimeout(120)
                    while True:
                        d = c.recv(65536)
                        if not d:
                            return
                        c.sendall(d)
                out = json.dumps(
                    {"upstream": self.name, "path": target, "headers": headers, "body_len": len(body)}
                ).encode()
                c.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: "
                    + self.name.encode()
                    + b"\r\nContent-Length: "
                    + str(len(out)).encode()
                    + b"\r\n\r\n"
                    + out
                )
                if hd.get("connection", "").lower() == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass


def refused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------- manifests
def docs_yaml(docs):
    """JSON is YAML: one document per object."""
    return "\n---\n".join(json.dumps(d, indent=1) for d in docs) + "\n"


INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "portier", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
    "spec": {"controller": "portier.dev/ingress-controller"},
}


def service(name, port):
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name + "-1", "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
         "endpoints": [{"addresses": ["127.0.0.1"]}]},
    ]


def paths(*items):
    """items: (path, service) or (path, service, pathType)."""
    out = []
    for it in items:
        p, svc = it[0], it[1]
        ptype = it[2] if len(it) > 2 else "Prefix"
        out.append({"path": p, "pathType": ptype,
                    "backend": {"service": {"name": svc, "port": {"name": "http"}}}})
    return out


def ingress(name, rules, annotations=None, tls=None):
    """rules: list of (host or None, paths(...))."""
    spec = {"rules": [dict(({"host": h} if h else {}), http={"paths": p}) for h, p in rules]}
    if tls:
        spec["tls"] = tls
    md = {"name": name}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": md, "spec": spec}


def tls_secret(name, cert, key):
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name},
            "stringData": {"tls.crt": cert, "tls.key": key}}


def configmap(name, data, namespace="default"):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


# --------------------------------------------------------------------------- portier
def vm_status(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Gateway:
    def __init__(self, name, config_dir, configmap_ref=None, extra_args=()):
        if not BIN.exists():
            pytest.fail(f"portier binary not found at {BIN}; build it (cargo build -p portier) or set PORTIER_BIN")
        self.name = name
        self.dir = Path(config_dir)
        self.log_path = self.dir.parent / f"{name}.stderr.log"
        self._log = open(self.log_path, "wb")
        args = [str(BIN), "serve", "--config", str(self.dir), "--http-listen", "127.0.0.1:0",
                "--https-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--access-log", "off",
                *extra_args]
        if configmap_ref:
            args += ["--configmap", configmap_ref]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log,
                                     preexec_fn=lambda: raise_nofile())
        self.pid = self.proc.pid
        _LIVE.append(self)
        self.addrs = {}
        deadline = time.time() + 15
        while time.time() < deadline and len(self.addrs) < 3:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"portier exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    f = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if f.get("message") == "listening" and "addr" in f:
                    h, p = f["addr"].rsplit(":", 1)
                    self.addrs[f["listener"]] = (h, int(p))
            time.sleep(0.05)
        if len(self.addrs) < 3:
            self.stop()
            pytest.fail(f"portier did not log its three listeners:\n{self.log_tail()}")
        self.http, self.https, self.admin = self.addrs["http"], self.addrs["https"], self.addrs["admin"]
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.admin_get("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

    def log_tail(self, n=60):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def admin_get(self, path):
        c = http.client.HTTPConnection(*self.admin, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def generation(self):
        return json.loads(self.admin_get("/api/v1/routes")[1])["generation"]

    def write(self, fname, docs):
        """Atomic write (rename) of a manifest file into the config dir."""
        tmp = self.dir / f".{fname}.tmp"
        tmp.write_text(docs_yaml(docs))
        os.replace(tmp, self.dir / fname)

    def reload(self, fname, docs, timeout=5):
        g = self.generation()
        self.write(fname, docs)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.generation() > g:
                return
            time.sleep(0.02)
        raise AssertionError(f"generation did not increase within {timeout}s after writing {fname}")

    def rss(self):
        return vm_status(self.pid, "VmRSS")

    def hwm(self):
        return vm_status(self.pid, "VmHWM")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if self in _LIVE:
            _LIVE.remove(self)


def start_gateway(tmp_path, name, docs, configmap_ref=None, extra_args=()):
    d = tmp_path / f"{name}-config"
    d.mkdir()
    (d / "all.yaml").write_text(docs_yaml(docs))
    return Gateway(name, d, configmap_ref, extra_args)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for gw in list(_LIVE):
            rep.sections.append((f"portier {gw.name} stderr (tail)", gw.log_tail()))


# --------------------------------------------------------------------------- the shared gateway
class Env:
    pass


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """One long-lived portier for most classes (so the memory test sees the whole battery)."""
    tmp = tmp_path_factory.mktemp("shared")
    e = Env()
    e.pub, e.adm, e.flt = Upstream("pub"), Upstream("adm"), Upstream("flt")
    e.a_cert = make_cert("a.test")
    e.b_cert = make_cert("b.test")
    docs = [INGRESS_CLASS,
            *service("pub", e.pub.port), *service("adm", e.adm.port), *service("flt", e.flt.port),
            *service("refused", refused_port()),
            tls_secret("a-cert", *e.a_cert), tls_secret("b-cert", *e.b_cert),
            ingress("open", [(None, paths(("/public", "pub"), ("/exact", "pub", "Exact"), ("/ws", "pub"),
                                          ("/refused", "refused")))]),
            ingress("limited", [(None, paths(("/limited", "pub")))],
                    {"nginx.ingress.kubernetes.io/proxy-body-size": "10k"}),
            ingress("faults", [(None, paths(("/faults", "flt")))],
                    {"nginx.ingress.kubernetes.io/proxy-read-timeout": "2",
                     "nginx.ingress.kubernetes.io/proxy-connect-timeout": "2",
                     "nginx.ingress.kubernetes.io/proxy-send-timeout": "2"}),
            ingress("admin", [(None, paths(("/admin", "adm")))],
                    {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"}),
            ingress("denied", [(None, paths(("/denied", "adm")))],
                    {"nginx.ingress.kubernetes.io/denylist-source-range": "127.0.0.0/8"}),
            ingress("a", [("a.test", paths(("/", "pub")))], tls=[{"hosts": ["a.test"], "secretName": "a-cert"}]),
            ingress("b", [("b.test", paths(("/", "adm")))], tls=[{"hosts": ["b.test"], "secretName": "b-cert"}]),
            ]
    d = tmp / "config"
    d.mkdir()
    (d / "all.yaml").write_text(docs_yaml(docs))
    e.gw = Gateway("shared", d)
    time.sleep(0.3)
    e.idle_hwm = e.gw.hwm()
    e.idle_rss = e.gw.rss()
    yield e
    figure("memory (shared portier, at teardown)", f"RSS idle {e.idle_rss/2**20:.1f} MiB, VmHWM idle "
          f"{e.idle_hwm/2**20:.1f} MiB, VmHWM end {(e.gw.hwm() or 0)/2**20:.1f} MiB")
    e.gw.stop()
    for u in (e.pub, e.adm, e.flt):
        u.close()


# --------------------------------------------------------------------------- clients
def connect(addr, timeout=5):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tls_connect(addr, sni, alpn=("http/1.1",), timeout=5):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    s = connect(addr, timeout)
    return ctx.wrap_socket(s, server_hostname=sni)


def read_until_eof(s, timeout=3.0, limit=1 << 22):
    """Returns (data, eof): eof is False when the peer kept the connection open past `timeout`."""
    data = b""
    deadline = time.time() + timeout
    while len(data) < limit:
        left = deadline - time.time()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return data, True
        if not d:
            return data, True
        data += d
    return data, False


class Resp:
    def __init__(self, status, headers, body, complete):
        self.status, self.headers, self.body, self.complete = status, headers, body, complete

    def h(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def __repr__(self):
        return (f"<Resp {self.status} x-portier-error={self.h('x-portier-error')} "
                f"x-upstream={self.h('x-upstream')} body={self.body[:120]!r} complete={self.complete}>")


def read_response(s, timeout=5.0, head_only=False):
    """Reads one HTTP/1.1 response; complete=False when the body was cut short."""
    buf = b""
    deadline = time.time() + timeout
    s.settimeout(timeout)

    def more():
        nonlocal buf
        left = deadline - time.time()
        if left <= 0:
            raise socket.timeout(f"no complete response within {timeout}s (got {buf[:120]!r})")
        s.settimeout(left)
        d = s.recv(65536)
        buf += d
        return bool(d)

    while b"\r\n\r\n" not in buf:
        if not more():
            if not buf:
                return None
            raise ConnectionError(f"EOF inside response head: {buf!r}")
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    r = Resp(status, headers, b"", True)
    if head_only or status in (101, 204, 304) or 100 <= status < 200:
        r.body = buf
        return r
    te, cl = r.h("transfer-encoding"), r.h("content-length")
    try:
        if te and "chunked" in te.lower():
            body = b""
            while True:
                while b"\r\n" not in buf:
                    if not more():
                        r.body, r.complete = body, False
                        return r
                line, buf = buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                while len(buf) < n + 2:
                    if not more():
                        r.body, r.complete = body + buf, False
                        return r
                body += buf[:n]
                buf = buf[n + 2:]
                if n == 0:
                    break
            r.body = body
        elif cl is not None:
            n = int(cl)
            while len(buf) < n:
                if not more():
                    r.body, r.complete = buf, False
                    return r
            r.body = buf[:n]
        else:
            while more():
                pass
            r.body = buf
    except (ConnectionResetError, ssl.SSLError):
        r.body, r.complete = buf, False
    return r


def raw(addr, data, timeout=5.0):
    s = connect(addr, timeout)
    try:
        s.sendall(data)
        return read_response(s, timeout)
    finally:
        s.close()


def get(addr, path, host="x.test", headers=(), timeout=5.0, method="GET", body=b""):
    h = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    for k, v in headers:
        h += f"{k}: {v}\r\n"
    if body or method in ("POST", "PUT"):
        h += f"Content-Length: {len(body)}\r\n"
    return raw(addr, h.encode("latin1") + b"\r\n" + body, timeout)


# --------------------------------------------------------------------------- figures
FIGURES = {}


def figure(key, value):
    """A measured figure, printed in the terminal summary (and written to $BLACKBOX_FIGURES)."""
    FIGURES[key] = value


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("black-box figures")
    for k, v in FIGURES.items():
        terminalreporter.write_line(f"{k}: {v}")
    out = os.environ.get("BLACKBOX_FIGURES")
    if out:
        Path(out).write_text(json.dumps(FIGURES, indent=1) + "\n")
