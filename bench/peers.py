#!/usr/bin/env python3
"""Side-by-side reverse-proxy benchmark: direct vs nginx vs haproxy vs caddy vs a candidate.

Topology (2 cores): the proxy under test is pinned to one CPU (default 0); the load
generator (wrk / h2load) and the upstream (a 1-worker nginx returning a fixed 256-byte
200) share the other CPU (default 1).  Every proxy gets an equivalent minimal config:
one host, one path prefix, upstream keep-alive, access logs off, 1 worker/thread.

Run `bench/peers.sh --help` for options and README.md for the candidate contract.
`--portier` benchmarks portier (this repository's target/release/portier) as the candidate.
Only Python 3.11 stdlib; external tools: nginx haproxy caddy wrk h2load openssl taskset.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent                    # the portier repository this copy of the harness lives in
PORTIER_CANDIDATE = HERE / "candidate.py"
LUA_REPORT = HERE / "lua" / "report.lua"
LUA_HOSTS = HERE / "lua" / "hosts.lua"

HOST = "bench.example.test"          # the one routed host in the basic scenarios
PREFIX = "/api/"                      # the one routed path prefix
PATH = "/api/bench"                   # what the load generators request
ECHO_PATH = "/api/__echo"             # backend echoes Host / X-Forwarded-* (probe only)
# 256-byte fixed body: letters/digits only so it can be inlined in nginx config.
BODY = ("portierbench" + "0123456789abcdefghijklmnopqrstuvwxyz" * 8)[:255] + "\n"
TLS13_SUITE = "TLS_AES_128_GCM_SHA256"  # the one suite every client offers (README: TLS)

ALL_SCENARIOS = ["h1", "h1-rate", "h1-tls", "h2-tls", "routes"]
DEFAULT_SCENARIOS = ["h1", "h1-rate", "h1-tls", "h2-tls"]
PEERS = ["direct", "nginx", "haproxy", "caddy"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
IS_ROOT = os.geteuid() == 0


def route_host(i: int) -> str:
    return f"h{i:04d}.example.test"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc helpers

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def mem_kib(pids: list[int]) -> dict[str, int]:
    """Memory of a process tree, in KiB.

    rss/hwm: the biggest process's VmRSS/VmHWM plus the private pages of the others, so
    pages a forked worker shares with its master (nginx's parsed config) count once;
    for a single process they are exactly VmRSS/VmHWM.  rss_sum/pss: plain sums."""
    procs = []
    for p in pids:
        m = {"VmHWM": 0, "VmRSS": 0, "Pss": 0, "Private_Clean": 0, "Private_Dirty": 0}
        for fn in (f"/proc/{p}/status", f"/proc/{p}/smaps_rollup"):
            try:
                with open(fn) as f:
                    for line in f:
                        k, _, v = line.partition(":")
                        if k in m:
                            m[k] = int(v.split()[0])
            except (OSError, ValueError, IndexError):
                pass
        procs.append(m)
    if not procs:
        return {"hwm": 0, "rss": 0, "rss_sum": 0, "pss": 0, "procs": 0}
    procs.sort(key=lambda m: m["VmRSS"], reverse=True)
    private_rest = sum(m["Private_Clean"] + m["Private_Dirty"] for m in procs[1:])
    return {"hwm": procs[0]["VmHWM"] + private_rest, "rss": procs[0]["VmRSS"] + private_rest,
            "rss_sum": sum(m["VmRSS"] for m in procs), "pss": sum(m["Pss"] for m in procs),
            "procs": len(procs)}


def cpu_stat() -> dict[str, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                out[name] = [int(v) for v in vals[:8]]
    return out


def cpu_delta(a: dict, b: dict, cpu: int) -> dict[str, int]:
    x, y = a[f"cpu{cpu}"], b[f"cpu{cpu}"]
    d = [j - i for i, j in zip(x, y)]
    user, nice, system, idle, iowait, irq, softirq, steal = d
    busy = user + nice + system + irq + softirq + steal
    return {"busy": busy, "total": busy + idle + iowait, "irq": irq + softirq, "steal": steal}


def established_to(port: int) -> int:
    """Count ESTABLISHED TCP connections whose remote end is 127.0.0.1:port."""
    want = f"0100007F:{port:04X}"
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[2] == want and parts[3] == "01":
                    n += 1
    except OSError:
        pass
    return n


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------- processes

def sched_prefix(args, cpu: int) -> list[str]:
    """Priority + CPU pinning wrapper; the same for proxy, upstream and load generator.

    With --sched slice the task attributes are set on this harness itself (inherited by
    every child), so only the pinning shows up in the command line."""
    pre = ["nice", "-n", str(args.nice)] if args.sched == "nice" and args.nice else []
    return pre + ["taskset", "-c", str(cpu)]


def child_setup(args):
    """preexec_fn for every benchmark child.  Children run in their own session, and with
    CONFIG_SCHED_AUTOGROUP (Debian's default) each session is its own scheduling group:
    a task's nice value then only ranks it inside that group, so the group itself gets
    the same niceness."""
    if args.sched == "none" or args.nice >= 0:
        return None
    val = str(args.nice).encode()

    def setup():
        try:
            fd = os.open("/proc/self/autogroup", os.O_WRONLY)
            try:
                os.write(fd, val)
            finally:
                os.close(fd)
        except OSError:
            pass  # no autogroup support: plain nice still applies
    return setup


def set_own_slice(nice: int, slice_us: int) -> str | None:
    """SCHED_OTHER with `nice` and an EEVDF custom slice (Linux >= 6.12): a woken
    benchmark task then preempts a CPU-bound neighbour within ~slice instead of waiting
    out the neighbour's 3 ms slice.  Inherited across fork/exec/threads."""
    import ctypes

    class SchedAttr(ctypes.Structure):
        _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32),
                    ("flags", ctypes.c_uint64), ("nice", ctypes.c_int32),
                    ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                    ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64),
                    ("util_min", ctypes.c_uint32), ("util_max", ctypes.c_uint32)]
    if platform.machine() != "x86_64":
        return "sched_setattr syscall number only wired for x86_64"
    libc = ctypes.CDLL(None, use_errno=True)
    attr = SchedAttr(size=ctypes.sizeof(SchedAttr), policy=0, flags=0, nice=nice,
                     runtime=slice_us * 1000)
    if libc.syscall(314, 0, ctypes.byref(attr), 0) != 0:  # SYS_sched_setattr
        return os.strerror(ctypes.get_errno())
    return None


class Proc:
    """A pinned, prioritised child in its own session; stopped by PID."""

    live: list["Proc"] = []

    def __init__(self, name: str, argv: list[str], prefix: list[str], logfile: Path,
                 env: dict | None = None, cwd: str | None = None, preexec=None):
        self.name = name
        self.argv = prefix + argv
        self.logfile = logfile
        self._log = open(logfile, "ab")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                  start_new_session=True, preexec_fn=preexec)
        self.pid = self.p.pid
        self.known: set[int] = {self.pid}
        Proc.live.append(self)

    def tree(self) -> list[int]:
        if self.p.poll() is not None:
            return []
        pids = proc_tree(self.pid)
        self.known.update(pids)
        return pids

    def alive(self) -> bool:
        return self.p.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        self.tree()
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # anything we ever saw in its tree that is still around gets SIGKILL, by PID
        for pid in sorted(self.known):
            if pid != self.pid and os.path.exists(f"/proc/{pid}"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=5)
        self._log.close()
        if self in Proc.live:
            Proc.live.remove(self)


def stop_all() -> None:
    for p in list(Proc.live):
        try:
            p.stop(grace=3)
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log(f"cleanup of {p.name} (pid {p.pid}) failed: {e}")


# --------------------------------------------------------------------------- HTTP probes

def http_get(port: int, host: str, path: str, tls: bool = False, timeout: float = 2.0):
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def alpn_selected(port: int, offer=("h2", "http/1.1")) -> str | None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(offer))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        with ctx.wrap_socket(s, server_hostname=HOST) as t:
            return t.selected_alpn_protocol()


def wait_ready(proc: Proc | None, port: int, host: str, timeout: float) -> float:
    """Poll until GET host/api/bench returns 200; returns seconds since spawn."""
    t0 = proc.t0 if proc else time.monotonic()
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc={proc.p.returncode}):\n{proc.log_tail()}")
        try:
            st, body = http_get(port, host, PATH, timeout=1.0)
            if st == 200 and body == BODY:
                return time.monotonic() - t0
            last = f"status {st}, body {body[:60]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = str(e)
        time.sleep(0.005)
    raise RuntimeError(f"not ready after {timeout}s on port {port} ({last})"
                       + (f"\n{proc.log_tail()}" if proc else ""))


def probe(name: str, ports: dict, scenario: str, n_routes: int) -> list[str]:
    """Functional equivalence checks; returns a list of warnings (empty = all good)."""
    warns = []
    tls = scenario in ("h1-tls", "h2-tls")
    port = ports["https"] if tls else ports["http"]
    host = route_host(n_routes) if scenario == "routes" else HOST
    st, body = http_get(port, host, PATH, tls=tls)
    if st != 200 or body != BODY:
        raise RuntimeError(f"{name}: GET {host}{PATH} -> {st} {body[:80]!r}")
    if name == "direct":
        return warns
    scheme = "https" if tls else "http"
    st, body = http_get(port, host, ECHO_PATH, tls=tls)
    seen = dict(kv.split("=", 1) for kv in body.split() if "=" in kv)
    if st != 200:
        warns.append(f"echo probe status {st}")
    else:
        if seen.get("host", "").split(":")[0] != host:
            warns.append(f"upstream saw Host={seen.get('host')!r} (expected {host})")
        if "127.0.0.1" not in seen.get("xff", ""):
            warns.append("no X-Forwarded-For to upstream")
        if seen.get("xfp") != scheme:
            warns.append(f"X-Forwarded-Proto={seen.get('xfp')!r} (expected {scheme})")
    st, _ = http_get(port, "unknown.example.test", PATH, tls=tls)
    if st != 404:
        warns.append(f"unknown Host -> {st} (expected 404: not host-routed?)")
    st, _ = http_get(port, host, "/other", tls=tls)
    if st != 404:
        warns.append(f"path outside {PREFIX} -> {st} (expected 404: not prefix-routed?)")
    if scenario == "routes":
        st, _ = http_get(port, route_host(1), PATH)
        if st != 200:
            warns.append(f"{route_host(1)} -> {st} (expected 200)")
    if tls:
        proto = alpn_selected(ports["https"])
        if proto != "h2":
            warns.append(f"ALPN offered h2,http/1.1 -> {proto!r} (expected h2)")
    return warns


# --------------------------------------------------------------------------- configs

def nginx_common(ctx: dict, name: str) -> str:
    d = ctx["dir"]
    return f"""worker_processes 1;
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
events {{ worker_connections 8192; }}
"""


def nginx_temp_paths(d: str) -> str:
    return "\n".join(f"  {k}_temp_path {d}/tmp-{k};" for k in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def backend_conf(ctx: dict) -> str:
    d = ctx["dir"]
    return nginx_common(ctx, "backend") + f"""http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
{nginx_temp_paths(d)}
  server {{
    listen 127.0.0.1:{ctx['upstream_port']} default_server backlog=4096;
    listen 127.0.0.1:{ctx['upstream_tls_port']} ssl http2 default_server backlog=4096;
    ssl_certificate {ctx['cert']};
    ssl_certificate_key {ctx['key']};
    ssl_protocols TLSv1.2 TLSv1.3;  # nginx 1.22 leaves TLSv1.3 out of its default
    location = {ECHO_PATH} {{
      default_type text/plain;
      return 200 "host=$http_host xff=$http_x_forwarded_for xfp=$http_x_forwarded_proto\\n";
    }}
    location / {{
      default_type text/plain;
      return 200 "{BODY.strip()}\\n";
    }}
  }}
}}
"""


def nginx_conf(ctx: dict, n_routes: int) -> str:
    d = ctx["dir"]
    hp, sp = ctx["http_port"], ctx["https_port"]
    loc = f"location {PREFIX} {{ proxy_pass http://backend; }}"
    if n_routes:
        servers = "\n".join(
            f"  server {{ listen 127.0.0.1:{hp}; server_name {route_host(i)}; {loc} }}"
            for i in range(1, n_routes + 1))
    else:
        servers = f"""  server {{
    listen 127.0.0.1:{hp};
    listen 127.0.0.1:{sp} ssl http2;
    server_name {HOST};
    {loc}
    location / {{ return 404; }}
  }}"""
    return nginx_common(ctx, "nginx") + f"""http {{
  access_log off;
  # nginx closes a client keep-alive connection after 1000 requests by default
  # (and upstream ones too): raise both, the peers have no such limit.
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
{nginx_temp_paths(d)}
  ssl_certificate {ctx['cert']};
  ssl_certificate_key {ctx['key']};
  ssl_protocols TLSv1.2 TLSv1.3;  # 1.22's default lacks TLSv1.3
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto $scheme;
  upstream backend {{
    server 127.0.0.1:{ctx['upstream_port']};
    keepalive 1024;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{hp} default_server;
    listen 127.0.0.1:{sp} ssl http2 default_server;
    server_name _;
    return 404;
  }}
{servers}
}}
"""


def haproxy_cfg(ctx: dict, n_routes: int) -> str:
    hp, sp = ctx["http_port"], ctx["https_port"]
    if n_routes:
        # the idiomatic way to route thousands of hosts: one map lookup (ebtree)
        route = (f"  use_backend %[req.hdr(host),field(1,:),lower,map_str({ctx['dir']}/hosts.map,be_404)]"
                 f" if {{ path_beg {PREFIX} }}")
    else:
        route = (f"  use_backend be_app if {{ req.hdr(host),field(1,:),lower -m str {HOST} }}"
                 f" {{ path_beg {PREFIX} }}")
    return f"""global
  nbthread 1
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  # no 'log' line: logging off

defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s

frontend fe
  bind 127.0.0.1:{hp}
  bind 127.0.0.1:{sp} ssl crt {ctx['pem']} alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
{route}
  default_backend be_404

backend be_app
  server s1 127.0.0.1:{ctx['upstream_port']}

backend be_404
  http-request return status 404
"""


def caddyfile(ctx: dict, n_routes: int) -> str:
    hp, sp = ctx["http_port"], ctx["https_port"]
    head = f"""{{
	admin off
	auto_https off
	grace_period 1s
	default_sni {HOST}
	servers {{
		protocols h1 h2
	}}
}}

(proxy) {{
	handle {PREFIX}* {{
		reverse_proxy 127.0.0.1:{ctx['upstream_port']} {{
			transport http {{
				keepalive 300s
				# default is 32 idle conns per host: with 64 client conns that
				# churns upstream connections, the peers keep up to 1024.
				keepalive_idle_conns 1024
				keepalive_idle_conns_per_host 1024
			}}
		}}
	}}
	handle {{
		respond 404
	}}
}}

http://:{hp} {{
	respond 404
}}
"""
    if n_routes:
        sites = "".join(f"http://{route_host(i)}:{hp} {{\n\timport proxy\n}}\n"
                        for i in range(1, n_routes + 1))
        return head + sites
    return head + f"""
https://:{sp} {{
	tls {ctx['cert']} {ctx['key']}
	respond 404
}}

http://{HOST}:{hp} {{
	import proxy
}}

https://{HOST}:{sp} {{
	tls {ctx['cert']} {ctx['key']}
	import proxy
}}
"""


def routes_json(ctx: dict, n_routes: int) -> str:
    hosts = [route_host(i) for i in range(1, n_routes + 1)] if n_routes else [HOST]
    doc = {
        "listen": {"http": f"127.0.0.1:{ctx['http_port']}",
                   "https": f"127.0.0.1:{ctx['https_port']}"},
        "tls": {"cert": ctx["cert"], "key": ctx["key"]},
        "upstreams": {"backend": [f"127.0.0.1:{ctx['upstream_port']}"]},
        "routes": [{"host": h, "path_prefix": PREFIX, "upstream": "backend"} for h in hosts],
    }
    return json.dumps(doc, indent=1)


def prepare_proxy(name: str, ctx: dict, scenario: str, args) -> tuple[list[str], dict]:
    """Write config for `name`; return (argv, env)."""
    n_routes = args.routes if scenario == "routes" else 0
    d = Path(ctx["dir"])
    env = dict(os.environ)
    if name == "nginx":
        conf = d / "nginx.conf"
        conf.write_text(nginx_conf(ctx, n_routes))
        return [ctx["bin"]["nginx"], "-p", str(d), "-c", str(conf)], env
    if name == "haproxy":
        if n_routes:
            (d / "hosts.map").write_text(
                "".join(f"{route_host(i)} be_app\n" for i in range(1, n_routes + 1)))
        conf = d / "haproxy.cfg"
        conf.write_text(haproxy_cfg(ctx, n_routes))
        return [ctx["bin"]["haproxy"], "-db", "-f", str(conf)], env
    if name == "caddy":
        conf = d / "Caddyfile"
        conf.write_text(caddyfile(ctx, n_routes))
        env.update(GOMAXPROCS="1", HOME=str(d), XDG_DATA_HOME=str(d / "xdg-data"),
                   XDG_CONFIG_HOME=str(d / "xdg-config"))
        return [ctx["bin"]["caddy"], "run", "--adapter", "caddyfile", "--config", str(conf)], env
    if name == args.candidate_name:
        rj = d / "routes.json"
        rj.write_text(routes_json(ctx, n_routes))
        subs = {"http_port": ctx["http_port"], "https_port": ctx["https_port"],
                "upstream_port": ctx["upstream_port"], "cert": ctx["cert"], "key": ctx["key"],
                "routes": str(rj), "workdir": str(d), "scenario": scenario}
        cmd = args.candidate
        for k, v in subs.items():
            cmd = cmd.replace("{" + k + "}", str(v))
        (d / "candidate.cmd").write_text(cmd + "\n")
        return shlex.split(cmd), env
    raise ValueError(name)


# --------------------------------------------------------------------------- load generators

def loadgen_argv(scenario: str, ctx: dict, args, port: int, duration: int, logfile: Path | None):
    if scenario == "h1-rate":
        # fixed offered load, well under every saturation point: CPU% and latency at
        # equal work, free of the closed-loop ceiling of the shared load core
        argv = [ctx["bin"]["h2load"], "--h1", "-t1", f"-c{args.connections}",
                f"--rps={args.rate / args.connections:g}", "-D", str(duration),
                "-H", f":authority: {HOST}"]
        if logfile:
            argv += [f"--log-file={logfile}"]
        return argv + [f"http://127.0.0.1:{port}{PATH}"]
    if scenario == "h2-tls":
        argv = [ctx["bin"]["h2load"], "-t1", f"-c{args.h2_connections}", f"-m{args.h2_streams}",
                "-D", str(duration), f"--tls13-ciphers={TLS13_SUITE}",
                "-H", f":authority: {HOST}"]  # a 'host:' header would be a duplicate -> 400
        if logfile:
            argv += [f"--log-file={logfile}"]
        return argv + [f"https://127.0.0.1:{port}{PATH}"]
    scheme = "https" if scenario == "h1-tls" else "http"
    argv = [ctx["bin"]["wrk"], "-t1", f"-c{args.connections}", f"-d{duration}s", "--timeout", "5s"]
    if scenario == "routes":
        argv += ["-s", str(LUA_HOSTS)]
    else:
        argv += ["-s", str(LUA_REPORT), "-H", f"Host: {HOST}"]
    return argv + [f"{scheme}://127.0.0.1:{port}{PATH}"]


def parse_wrk(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            j = json.loads(line[len("BENCH_JSON "):])
            secs = j["duration_us"] / 1e6
            errs = j["err_connect"] + j["err_read"] + j["err_write"] + j["err_timeout"]
            return {"requests": j["requests"], "seconds": secs, "rps": j["requests"] / secs,
                    "p50_ms": j["p50_us"] / 1e3, "p99_ms": j["p99_us"] / 1e3,
                    "max_ms": j["max_us"] / 1e3, "errors": errs, "non_2xx": j["err_status"]}
    raise RuntimeError("no BENCH_JSON line in wrk output:\n" + out[-2000:])


def parse_h2load(out: str, logfile: Path) -> dict:
    import re
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (m and r and c):
        raise RuntimeError("cannot parse h2load output:\n" + out[-2000:])
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    done = int(r.group(3))
    lat = []
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] / 1e3 if lat else float("nan")
    return {"requests": done, "seconds": secs, "rps": float(m.group(3)),
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": (lat[-1] / 1e3) if lat else 0,
            "errors": int(r.group(5)) + int(r.group(6)) + int(r.group(7)),
            "non_2xx": int(c.group(2)) + int(c.group(3)) + int(c.group(4))}


def run_load(scenario, ctx, args, port, duration, rundir: Path, tag: str) -> dict:
    logfile = rundir / f"h2load-{tag}.log" if scenario in ("h2-tls", "h1-rate") else None
    argv = loadgen_argv(scenario, ctx, args, port, duration, logfile)
    prefix = sched_prefix(args, args.load_cpu)
    env = dict(os.environ, OPENSSL_CONF=ctx["client_openssl_conf"],
               BENCH_HOSTS=str(args.routes), BENCH_SEED="42")
    p = subprocess.run(prefix + argv, capture_output=True, text=True, env=env,
                       timeout=duration + 60, start_new_session=True,
                       preexec_fn=child_setup(args))
    out = p.stdout + p.stderr
    (rundir / f"loadgen-{tag}.out").write_text(" ".join(shlex.quote(a) for a in prefix + argv)
                                               + "\n\n" + out)
    if p.returncode != 0:
        raise RuntimeError(f"load generator failed (rc={p.returncode}):\n{out[-2000:]}")
    res = parse_h2load(out, logfile) if logfile else parse_wrk(out)
    if logfile:
        logfile.unlink(missing_ok=True)  # can be large
    res["cmd"] = " ".join(shlex.quote(a) for a in prefix + argv)
    return res


# --------------------------------------------------------------------------- one measurement

def run_flags(rec: dict, args) -> list[str]:
    flags = []
    is_proxy = rec["proxy"] != "direct"
    if rec["errors"] or rec["non_2xx"]:
        flags.append(f"errors={rec['errors']},non2xx={rec['non_2xx']}")
    if rec["scenario"] == "h1-rate":
        if rec["rps"] < 0.97 * args.rate:
            flags.append(f"below-rate({rec['rps'] / args.rate:.0%})")
    elif is_proxy and rec["load_core_busy_pct"] > 95:
        # CPU 1 (load generator + upstream) was full.  With idle time left on the proxy
        # core, req/s is the harness's limit.  With both cores full, req/s is the lower of
        # two capacities, and an event loop that has spare time spends it on smaller
        # batches, so CPU us/req then reads ~ 1/(req/s) as well: compare h1-rate instead.
        flags.append("load-core-bound" if rec["proxy_cpu_pct"] < 90 else "both-cores-full")
    # Other processes only hurt when they took CPU the benchmark wanted: on the proxy
    # core, or on the load core while the proxy was waiting for it (or for direct).
    # (h1-rate leaves both cores mostly idle, so only the proxy core counts there.)
    noisy = rec["other_proxy_core_pct"] > args.noise_limit or (
        rec["scenario"] != "h1-rate" and rec["other_load_core_pct"] > args.noise_limit
        and (not is_proxy or rec["proxy_cpu_pct"] < 90))
    if noisy:
        flags.append(f"noise={rec['other_cpu_pct']:.0f}%")
    return flags


def measure(name: str, scenario: str, ctx: dict, args, backend: Proc, rep: int) -> dict:
    n_routes = args.routes if scenario == "routes" else 0
    rundir = Path(ctx["root"]) / f"{name}-{scenario}-r{rep}"
    rundir.mkdir(parents=True, exist_ok=True)
    ctx = dict(ctx, dir=str(rundir))
    tls = scenario in ("h1-tls", "h2-tls")
    rec = {"proxy": name, "scenario": scenario, "repeat": rep, "routes": n_routes or 1,
           "flags": [], "warnings": []}
    proxy = None
    try:
        if name == "direct":
            port = ctx["upstream_tls_port"] if tls else ctx["upstream_port"]
            rec["cmd_proxy"] = "(none: load generator talks to the upstream)"
        else:
            for p in (ctx["http_port"], ctx["https_port"]):
                if not port_free(p):
                    raise RuntimeError(f"port {p} busy")
            argv, env = prepare_proxy(name, ctx, scenario, args)
            # peers run inside their run dir; the candidate where peers.sh was invoked,
            # so relative paths in its template work
            cwd = os.getcwd() if name == args.candidate_name else str(rundir)
            proxy = Proc(name, argv, sched_prefix(args, args.proxy_cpu), rundir / f"{name}.log",
                         env=env, cwd=cwd, preexec=child_setup(args))
            rec["cmd_proxy"] = " ".join(shlex.quote(a) for a in proxy.argv)
            ready_host = route_host(n_routes) if n_routes else HOST
            rec["startup_s"] = wait_ready(proxy, ctx["http_port"], ready_host,
                                          args.ready_timeout)
            if tls:  # the TLS listener may come up a moment later than the plain one
                deadline = time.monotonic() + 10
                while True:
                    try:
                        st, _ = http_get(ctx["https_port"], HOST, PATH, tls=True)
                        if st == 200:
                            break
                    except (OSError, http.client.HTTPException):
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("TLS listener not ready\n" + proxy.log_tail())
                    time.sleep(0.01)
            rec["idle_mem_kib"] = mem_kib(proxy.tree())
            port = ctx["https_port"] if tls else ctx["http_port"]
        ports = {"http": port, "https": port} if name == "direct" else \
            {"http": ctx["http_port"], "https": ctx["https_port"]}
        rec["warnings"] = probe(name, ports, scenario, n_routes)
        for w in rec["warnings"]:
            log(f"  WARN {name}/{scenario}: {w}")

        if args.warmup > 0:
            run_load(scenario, ctx, args, port, args.warmup, rundir, "warmup")

        # ---- measured run: counters before/after, one mid-run memory sample
        ptree = proxy.tree() if proxy else []
        btree = backend.tree()
        mid = {}

        def sampler():
            time.sleep(args.duration / 2)
            if proxy:
                mid["mem"] = mem_kib(proxy.tree())
            mid["up_conns"] = established_to(ctx["upstream_port"])
        th = threading.Thread(target=sampler, daemon=True)
        s0, p0, b0 = cpu_stat(), cpu_ticks(ptree), cpu_ticks(btree)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        th.start()
        res = run_load(scenario, ctx, args, port, args.duration, rundir, "measure")
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s1, p1, b1 = cpu_stat(), cpu_ticks(ptree), cpu_ticks(btree)
        th.join(timeout=5)
        rec.update(res)

        wall = res["seconds"] * CLK_TCK
        pc, lc = cpu_delta(s0, s1, args.proxy_cpu), cpu_delta(s0, s1, args.load_cpu)
        lg_ticks = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * CLK_TCK
        # CPU used by processes that are not part of this benchmark, per core that matters
        other_load = max(0.0, lc["busy"] - lc["irq"] - (b1 - b0) - lg_ticks)
        other_proxy = max(0.0, pc["busy"] - pc["irq"] - (p1 - p0)) if proxy else 0.0
        rec["proxy_cpu_pct"] = 100.0 * (p1 - p0) / wall if proxy else None
        rec["cpu_us_per_req"] = ((p1 - p0) / CLK_TCK * 1e6 / res["requests"]
                                 if proxy and res["requests"] else None)
        rec["load_core_busy_pct"] = 100.0 * lc["busy"] / max(1, lc["total"])
        rec["proxy_core_busy_pct"] = 100.0 * pc["busy"] / max(1, pc["total"])
        rec["backend_cpu_pct"] = 100.0 * (b1 - b0) / wall
        rec["loadgen_cpu_pct"] = 100.0 * lg_ticks / wall
        rec["other_load_core_pct"] = 100.0 * other_load / max(1, lc["total"])
        rec["other_proxy_core_pct"] = 100.0 * other_proxy / max(1, pc["total"])
        rec["other_cpu_pct"] = rec["other_load_core_pct"] + rec["other_proxy_core_pct"]
        rec["steal_ticks"] = pc["steal"] + lc["steal"]
        rec["upstream_conns_mid"] = mid.get("up_conns")
        if proxy:
            end = mem_kib(proxy.tree())
            rec["peak_rss_kib"] = max(m["hwm"] for m in (rec.get("idle_mem_kib"), mid.get("mem"), end) if m)
            rec["mid_mem_kib"] = mid.get("mem")
            rec["end_mem_kib"] = end
        rec["flags"] = run_flags(rec, args)
        return rec
    finally:
        if proxy:
            proxy.stop()


# --------------------------------------------------------------------------- reporting

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _half_range_pct(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    return 50.0 * (max(xs) - min(xs)) / statistics.median(xs)


def summarize(records: list[dict], proxies: list[str], scenarios: list[str]) -> list[dict]:
    rows = []
    for sc in scenarios:
        base = {}
        for px in proxies:
            rs = [r for r in records if r["proxy"] == px and r["scenario"] == sc and "rps" in r]
            if not rs:
                continue
            # runs where other processes took CPU the benchmark needed are left out of the
            # statistics as long as two clean runs remain
            clean = [r for r in rs if not any(f.startswith("noise") for f in r["flags"])]
            n_all = len(rs)
            if len(clean) >= 2:
                rs = clean
            rps = [r["rps"] for r in rs]
            m = med(rps)
            row = {"scenario": sc, "proxy": px, "runs": len(rs), "runs_total": n_all, "rps": m,
                   "rps_min": min(rps), "rps_max": max(rps),
                   "spread_pct": 100.0 * (max(rps) - min(rps)) / m if m else 0,
                   "p50_ms": med([r["p50_ms"] for r in rs]),
                   "p99_ms": med([r["p99_ms"] for r in rs]),
                   "peak_rss_mib": (max(r["peak_rss_kib"] for r in rs) / 1024
                                    if rs[0].get("peak_rss_kib") is not None else None),
                   "idle_rss_mib": (med([r["idle_mem_kib"]["rss"] for r in rs]) / 1024
                                    if rs[0].get("idle_mem_kib") else None),
                   "startup_s": med([r.get("startup_s") for r in rs]),
                   "startup_min": min((r["startup_s"] for r in rs if r.get("startup_s") is not None), default=None),
                   "startup_max": max((r["startup_s"] for r in rs if r.get("startup_s") is not None), default=None),
                   "proxy_cpu_pct": med([r.get("proxy_cpu_pct") for r in rs]),
                   "cpu_us_per_req": med([r.get("cpu_us_per_req") for r in rs]),
                   "cpu_us_spread_pct": _half_range_pct([r.get("cpu_us_per_req") for r in rs]),
                   "load_core_busy_pct": med([r["load_core_busy_pct"] for r in rs]),
                   "other_cpu_pct": max(r["other_cpu_pct"] for r in rs),
                   "upstream_conns": med([r.get("upstream_conns_mid") for r in rs]),
                   "flags": sorted({f for r in rs for f in r["flags"]}
                                   | ({f"noisy-runs-dropped={n_all - len(rs)}"} if n_all > len(rs) else set())),
                   "warnings": sorted({w for r in rs for w in r["warnings"]})}
            base[px] = m
            rows.append(row)
        for row in rows:
            if row["scenario"] != sc:
                continue
            row["vs_direct"] = row["rps"] / base["direct"] if base.get("direct") else None
            row["vs_nginx"] = row["rps"] / base["nginx"] if base.get("nginx") else None
    return rows


def fmt(x, spec=".0f", none="-"):
    return none if x is None else format(x, spec)


def render(rows: list[dict], args) -> str:
    out = []
    hdr = ("| scenario | proxy | req/s (median) | spread | p50 ms | p99 ms | peak RSS MiB "
           "| proxy CPU % | CPU µs/req | vs direct | vs nginx | flags |")
    out.append(hdr)
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        n = str(r["runs"]) if r["runs"] == r["runs_total"] else f"{r['runs']} of {r['runs_total']}"
        out.append("| {sc} | {px} | {rps} | ±{sp}% ({n}) | {p50} | {p99} | {rss} | {cpu} | {us} | {vd} | {vn} | {fl} |".format(
            sc=r["scenario"], px=r["proxy"], rps=fmt(r["rps"], ",.0f"),
            sp=fmt(r["spread_pct"] / 2, ".1f"), n=n,
            p50=fmt(r["p50_ms"], ".2f"), p99=fmt(r["p99_ms"], ".2f"),
            rss=fmt(r["peak_rss_mib"], ".1f"), cpu=fmt(r["proxy_cpu_pct"], ".0f"),
            us=fmt(r["cpu_us_per_req"], ".1f") + (f" ±{r['cpu_us_spread_pct']:.0f}%"
                                                   if r.get("cpu_us_spread_pct") is not None else ""),
            vd=fmt(r["vs_direct"], ".2f"), vn=fmt(r["vs_nginx"], ".2f"),
            fl=" ".join(r["flags"]) or ""))
    rt = [r for r in rows if r["scenario"] == "routes" and r["proxy"] != "direct"]
    if rt:
        h1 = {r["proxy"]: r for r in rows if r["scenario"] == "h1"}
        out.append("")
        out.append(f"Route scale ({args.routes} host rules, random Host per request):")
        out.append("")
        out.append("| proxy | start-up s (median, min–max) | idle RSS MiB | peak RSS MiB "
                   "| KiB/route | req/s | vs own h1 | upstream conns |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rt:
            base = h1.get(r["proxy"])
            per_route = None
            if base and base.get("idle_rss_mib") is not None and r.get("idle_rss_mib") is not None:
                per_route = (r["idle_rss_mib"] - base["idle_rss_mib"]) * 1024 / args.routes
            out.append("| {px} | {st} ({a}–{b}) | {idle} | {peak} | {kr} | {rps} | {vh} | {uc} |".format(
                px=r["proxy"], st=fmt(r["startup_s"], ".2f"), a=fmt(r["startup_min"], ".2f"),
                b=fmt(r["startup_max"], ".2f"), idle=fmt(r["idle_rss_mib"], ".1f"),
                peak=fmt(r["peak_rss_mib"], ".1f"), kr=fmt(per_route, ".2f"),
                rps=fmt(r["rps"], ",.0f"),
                vh=fmt(r["rps"] / base["rps"] if base else None, ".2f"),
                uc=fmt(r["upstream_conns"], ".0f")))
    warns = [(r["scenario"], r["proxy"], w) for r in rows for w in r["warnings"]]
    if warns:
        out.append("")
        out.append("Probe warnings (config not equivalent?):")
        for sc, px, w in warns:
            out.append(f"- {px}/{sc}: {w}")
    return "\n".join(out)


def render_details(records: list[dict], meta: dict, args) -> str:
    """Header with settings and versions, per-round req/s, and the exact commands."""
    a = meta["args"]
    out = ["## Settings", ""]
    out.append(f"- started {meta['started']}; {os.cpu_count()} CPUs ({meta['versions'].get('cpu')}), "
               f"kernel {meta['versions'].get('kernel')}")
    out.append("- " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items()
                                if k not in ("cpu", "kernel")))
    out.append(f"- invocation: `bench/peers.sh {' '.join(shlex.quote(x) for x in meta['argv'][1:])}`")
    out.append(f"- duration {a['duration']} s + warm-up {a['warmup']} s per run; wrk -t1 "
               f"-c{a['connections']}; h2load -t1 -c{a['h2_connections']} -m{a['h2_streams']}; "
               f"{a['repeat']} round(s), interleaved; sched={a['sched']}"
               + (f" (nice {a['nice']}, slice {a['slice_us']} us)" if a['sched'] == 'slice' else
                  f" (nice {a['nice']})" if a['sched'] == 'nice' else "")
               + f"; proxy on cpu{a['proxy_cpu']}, load generator + upstream on cpu{a['load_cpu']}")
    out += ["", "## Per-round req/s", "", "| scenario | proxy | rounds |", "| --- | --- | --- |"]
    keys = []
    for r in records:
        k = (r["scenario"], r["proxy"])
        if k not in keys:
            keys.append(k)
    for sc, px in keys:
        vals = [f"{r['rps']:,.0f}" if "rps" in r else "failed"
                for r in records if r["scenario"] == sc and r["proxy"] == px]
        out.append(f"| {sc} | {px} | {' / '.join(vals)} |")
    out += ["", "## Commands (round 1)", ""]
    seen = set()
    for r in records:
        if r.get("repeat") != 1 or "cmd" not in r:
            continue
        out.append(f"- {r['scenario']} / {r['proxy']}:")
        out.append(f"  - proxy: `{r['cmd_proxy']}`")
        out.append(f"  - load: `{r['cmd']}`")
        seen.add(r["scenario"])
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def tool_versions(bins: dict) -> dict:
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            line = (p.stdout + p.stderr).strip().splitlines()[0]
            return line.split(" - ")[0].split(" Copyright")[0].strip()
        except Exception:  # noqa: BLE001
            return "?"
    flags = {"nginx": "-v", "haproxy": "-v", "caddy": "version", "h2load": "--version", "wrk": "-v"}
    v = {k: first([bins[k], f]) for k, f in flags.items() if k in bins}
    v["kernel"] = platform.release()
    try:
        with open("/proc/cpuinfo") as f:
            v["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        v["cpu"] = "?"
    return v


def portier_version() -> str:
    """`portier --version` plus the repository's commit (with `-dirty` for local changes)."""
    def out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return p.stdout.strip() if p.returncode == 0 else ""
        except Exception:  # noqa: BLE001
            return ""
    version = out([os.environ["PORTIER_BIN"], "--version"]) or "?"
    commit = out(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    return f"{version} ({commit})" if commit else version


def make_tls(root: Path) -> dict:
    cert, key, pem = root / "cert.pem", root / "key.pem", root / "combined.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                    "-subj", f"/CN={HOST}", "-addext",
                    f"subjectAltName=DNS:{HOST},DNS:*.example.test,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    conf = root / "client-openssl.cnf"
    conf.write_text(f"""# Load-generator side only: offer exactly one TLS 1.3 suite so every
# proxy negotiates the same cipher (OpenSSL servers follow the client's order,
# Go and rustls may not).
openssl_conf = bench_init
[bench_init]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_client
[bench_client]
MinProtocol = TLSv1.3
Ciphersuites = {TLS13_SUITE}
""")
    for p in (cert, key, pem):
        p.chmod(0o644)  # nginx workers run as 'nobody' when started as root
    return {"cert": str(cert), "key": str(key), "pem": str(pem), "client_openssl_conf": str(conf)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="peers.sh", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each run")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (h1, h1-tls, routes)")
    ap.add_argument("--h2-connections", type=int, default=16, help="h2load connections (h2-tls)")
    ap.add_argument("--h2-streams", type=int, default=4,
                    help="h2load concurrent streams per connection (16x4 = 64 in flight, like h1)")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                    help=f"comma list of {','.join(ALL_SCENARIOS)} or 'all'")
    ap.add_argument("--proxies", default=",".join(PEERS),
                    help="comma list; the candidate is added when --candidate is given")
    ap.add_argument("--candidate", help="command template for the proxy under test "
                    "(placeholders: {http_port} {https_port} {upstream_port} {cert} {key} "
                    "{routes} {workdir} {scenario})")
    ap.add_argument("--candidate-name", default="candidate")
    ap.add_argument("--portier", action="store_true",
                    help="benchmark portier as the candidate: short for --candidate-name portier "
                    "--candidate 'python3 bench/candidate.py {routes} {workdir} {http_port} "
                    "{https_port}' (works from any directory). Binary: $PORTIER_BIN, else "
                    "$CARGO_TARGET_DIR/release/portier, else target/release/portier of this repo")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; runs are interleaved by round")
    ap.add_argument("--routes", type=int, default=10000, help="host rules in the 'routes' scenario")
    ap.add_argument("--rate", type=int, default=10000,
                    help="offered req/s in 'h1-rate' (h2load --h1 --rps, spread over --connections)")
    ap.add_argument("--port-base", type=int, default=18000,
                    help="ports used: base+1 upstream, base+2 upstream TLS, base+80 http, base+443 https")
    ap.add_argument("--proxy-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1, help="CPU for load generator + upstream")
    ap.add_argument("--sched", choices=["slice", "nice", "none"],
                    default="slice" if IS_ROOT else "none",
                    help="priority of proxy, upstream and load generator over other processes: "
                    "nice = --nice for the tasks and their autogroups; slice = the same plus a "
                    "short EEVDF slice (Linux >= 6.12) so they preempt CPU hogs at once; "
                    "none = leave alone. nice/slice need root")
    ap.add_argument("--slice-us", type=int, default=100, help="slice used by --sched slice")
    ap.add_argument("--nice", type=int, default=-20, help="niceness used by --sched nice")
    ap.add_argument("--noise-limit", type=float, default=5.0,
                    help="flag a run when other processes used more than this %% of a core")
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    ap.add_argument("--out", help="directory for results.json, results.md, configs and logs")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir")
    ap.add_argument("--report", metavar="RESULTS_JSON",
                    help="no benchmark: re-render the tables of an earlier --out run "
                    "(flags re-derived with this version's rules)")
    a = ap.parse_args(argv)
    if a.portier and not a.report:
        if a.candidate:
            ap.error("--portier and --candidate exclude each other")
        if a.candidate_name == "candidate":
            a.candidate_name = "portier"
        binary = portier_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            ap.error(f"--portier: no portier binary at {binary}; build it with "
                     f"`cargo build --release -p portier` in {REPO}, or set PORTIER_BIN")
        os.environ["PORTIER_BIN"] = str(binary)  # candidate.py reads it; children inherit it
        if "debug" in binary.parts:
            print(f"warning: {binary} is a debug build; benchmark a release build "
                  "(cargo build --release -p portier)", file=sys.stderr)
        a.candidate = (f"{shlex.quote(sys.executable)} {shlex.quote(str(PORTIER_CANDIDATE))} "
                       "{routes} {workdir} {http_port} {https_port}")
    a.scenarios = ALL_SCENARIOS if a.scenarios == "all" else [s for s in a.scenarios.split(",") if s]
    bad = [s for s in a.scenarios if s not in ALL_SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}")
    if a.candidate_name in PEERS:
        ap.error(f"--candidate-name {a.candidate_name!r} clashes with a peer")
    if not 1024 <= a.port_base <= 65535 - 443:
        ap.error("--port-base out of range")
    a.proxies = [p for p in a.proxies.split(",") if p]
    if a.candidate and a.candidate_name not in a.proxies:
        a.proxies.append(a.candidate_name)
    for p in a.proxies:
        if p not in PEERS and p != a.candidate_name:
            ap.error(f"unknown proxy {p!r} (use --candidate for your own)")
    if a.candidate_name in a.proxies and not a.candidate:
        ap.error("--candidate template missing")
    if a.sched != "none" and not IS_ROOT and a.nice < 0:
        print(f"--sched {a.sched} needs root; using --sched none", file=sys.stderr)
        a.sched = "none"
    return a


def portier_binary() -> Path:
    """The portier binary --portier runs: $PORTIER_BIN, else the release build in
    $CARGO_TARGET_DIR (relative to the current directory, as cargo reads it), else the
    release build in this repository's target/."""
    if os.environ.get("PORTIER_BIN"):
        return Path(os.environ["PORTIER_BIN"]).resolve()
    if os.environ.get("CARGO_TARGET_DIR"):
        return (Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "portier").resolve()
    return REPO / "target" / "release" / "portier"


def report(args) -> int:
    doc = json.loads(Path(args.report).read_text())
    meta, runs = doc["meta"], doc["runs"]
    saved = argparse.Namespace(**meta["args"])
    for r in runs:
        if "rps" in r and "other_proxy_core_pct" in r:
            r["flags"] = run_flags(r, saved)
    rows = summarize(runs, saved.proxies, saved.scenarios)
    text = "# peers.sh results\n\n" + render(rows, saved) + "\n\n" + render_details(runs, meta, saved)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.md").write_text(text + "\n")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args)
    bins = {}
    need = ["wrk", "h2load", "openssl", "taskset", "nginx"]
    need += [p for p in ("haproxy", "caddy") if p in args.proxies]
    for b in need:
        path = shutil.which(b) or (f"/usr/sbin/{b}" if os.path.exists(f"/usr/sbin/{b}") else None)
        if not path:
            print(f"missing tool: {b}  (Debian: apt-get install nginx haproxy caddy wrk "
                  f"nghttp2-client openssl util-linux)", file=sys.stderr)
            return 2
        bins[b] = path
    if os.cpu_count() and max(args.proxy_cpu, args.load_cpu) >= os.cpu_count():
        print("need at least 2 CPUs", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.load_cpu})  # keep this harness off the proxy's core
    if args.sched == "slice":
        err = set_own_slice(args.nice, args.slice_us)
        if err:
            print(f"--sched slice unavailable ({err}); falling back to --sched nice",
                  file=sys.stderr)
            args.sched = "nice"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    base = args.port_base
    ctx = {"upstream_port": base + 1, "upstream_tls_port": base + 2,
           "http_port": base + 80, "https_port": base + 443, "bin": bins}
    for p in (ctx["upstream_port"], ctx["upstream_tls_port"], ctx["http_port"], ctx["https_port"]):
        if not port_free(p):
            print(f"port {p} is in use; pick another --port-base", file=sys.stderr)
            return 2

    versions = tool_versions(bins)
    if args.portier:
        versions["portier"] = portier_version()
    root = Path(tempfile.mkdtemp(prefix="portier-bench-"))
    root.chmod(0o755)
    ctx["root"] = str(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    records: list[dict] = []
    started = _dt.datetime.now().isoformat(timespec="seconds")
    backend = None
    try:
        ctx.update(make_tls(root))
        bdir = root / "backend"
        bdir.mkdir()
        bctx = dict(ctx, dir=str(bdir))
        (bdir / "backend.conf").write_text(backend_conf(bctx))
        backend = Proc("backend", [bins["nginx"], "-p", str(bdir), "-c", str(bdir / "backend.conf")],
                       sched_prefix(args, args.load_cpu), bdir / "backend.log",
                       preexec=child_setup(args))
        wait_ready(backend, ctx["upstream_port"], HOST, 15)
        log(f"upstream: nginx 1 worker on cpu{args.load_cpu} at 127.0.0.1:{ctx['upstream_port']}"
            f" (TLS {ctx['upstream_tls_port']}); work dir {root}")
        log(f"sched={args.sched}{f' nice={args.nice}' if args.sched in ('nice', 'slice') else ''}: proxy on "
            f"cpu{args.proxy_cpu}, load generator + upstream on cpu{args.load_cpu}")
        total = args.repeat * len(args.scenarios) * len(args.proxies)
        i = 0
        for rep in range(1, args.repeat + 1):
            for sc in args.scenarios:
                for px in args.proxies:
                    i += 1
                    log(f"[{i}/{total}] round {rep} {sc:7s} {px}")
                    try:
                        rec = measure(px, sc, ctx, args, backend, rep)
                    except Exception as e:  # noqa: BLE001 - report and continue
                        log(f"  FAILED: {e}")
                        records.append({"proxy": px, "scenario": sc, "repeat": rep,
                                        "error": str(e)})
                        continue
                    records.append(rec)
                    extra = f" startup {rec['startup_s']:.2f}s" if rec.get("startup_s") else ""
                    log(f"  {rec['rps']:,.0f} req/s p50 {rec['p50_ms']:.2f}ms p99 {rec['p99_ms']:.2f}ms"
                        f" proxyCPU {fmt(rec['proxy_cpu_pct'])}% loadcore {rec['load_core_busy_pct']:.0f}%"
                        f" other {rec['other_cpu_pct']:.1f}%{extra} {' '.join(rec['flags'])}")
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        stop_all()
        rows = summarize(records, args.proxies, args.scenarios)
        table = render(rows, args)
        print(table)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            meta = {"started": started, "argv": sys.argv, "versions": versions,
                    "args": {k: v for k, v in vars(args).items()}}
            (out / "results.json").write_text(json.dumps(
                {"meta": meta, "summary": rows, "runs": records}, indent=1, default=str))
            (out / "results.md").write_text("# peers.sh results\n\n" + table + "\n\n"
                                            + render_details(records, meta, args) + "\n")
            for sub in sorted(root.iterdir()):
                if sub.is_dir():
                    dst = out / "runs" / sub.name
                    dst.mkdir(parents=True, exist_ok=True)
                    for f in sub.iterdir():
                        if f.is_file() and f.stat().st_size < 5_000_000:
                            shutil.copy2(f, dst / f.name)
            log(f"results written to {out}")
        if args.keep:
            log(f"work dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [r for r in records if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
