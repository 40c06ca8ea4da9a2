"""Slow clients: slowloris headers and slow bodies are cut off by the ConfigMap timeouts while
normal clients keep being served; the ConfigMap limits are applied."""
import socket
import threading
import time

import pytest

from conftest import INGRESS_CLASS, Upstream, configmap, connect, figure, get, ingress, paths, read_response, \
    read_until_eof, service, start_gateway
from h2raw import H2

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture(scope="module")
def slow_gw(tmp_path_factory):
    up = Upstream("slowpub")
    docs = [INGRESS_CLASS, *service("pub", up.port),
            ingress("open", [(None, paths(("/public", "pub")))]),
            configmap("portier-config", {
                "client-header-timeout": str(HEADER_TIMEOUT),
                "client-body-timeout": str(BODY_TIMEOUT),
                "large-client-header-buffers": "4 1k",
                "max-header-count": "20",
                "proxy-body-size": "2k",
                "keep-alive-requests": "3",
                "http2-max-concurrent-streams": "10",
            }, namespace="portier")]
    gw = start_gateway(tmp_path_factory.mktemp("slow"), "slow", docs, configmap_ref="portier/portier-config")
    gw.up = up
    yield gw
    gw.stop()
    up.close()


def slowloris(addr, n, duration, close_deadline=None):
    """n connections each sending one header byte per second. Returns (closed_at list, latencies)."""
    socks = []
    for _ in range(n):
        s = connect(addr)
        s.sendall(b"GET /public/slowloris HTTP/1.1\r\nHost: x.test\r\n")
        socks.append(s)
    start = time.time()
    closed_at = [None] * n
    lat, errors = [], []
    stop = threading.Event()

    def normal():
        while not stop.is_set():
            t = time.time()
            try:
                r = get(addr, "/public/normal", timeout=5)
                lat.append(time.time() - t)
                if r is None or r.status != 200:
                    errors.append(repr(r))
            except OSError as e:
                errors.append(repr(e))
            time.sleep(0.02)

    th = threading.Thread(target=normal, daemon=True)
    th.start()
    while time.time() - start < duration and None in closed_at:
        for i, s in enumerate(socks):
            if closed_at[i] is not None:
                continue
            s.setblocking(False)
            try:
                d = s.recv(4096)
                if d == b"" or d.startswith(b"HTTP/1.1 408"):
                    closed_at[i] = time.time() - start
            except BlockingIOError:
                try:
                    s.send(b"X")
                except OSError:
                    closed_at[i] = time.time() - start
            except OSError:
                closed_at[i] = time.time() - start
        time.sleep(1.0)
    stop.set()
    th.join(6)
    for s in socks:
        s.close()
    lat.sort()
    return closed_at, lat, errors


def p99(lat):
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None


def test_slowloris_closed_by_header_timeout(slow_gw):
    closed_at, lat, errors = slowloris(slow_gw.http, 200, duration=10)
    still_open = sum(1 for c in closed_at if c is None)
    last = max((c for c in closed_at if c is not None), default=None)
    figure("slowloris (200 conns, client-header-timeout 2)",
           f"{200 - still_open} closed, last at {last}s; normal client {len(lat)} requests, "
           f"p50 {lat[len(lat) // 2] * 1000 if lat else 0:.1f} ms, p99 {(p99(lat) or 0) * 1000:.1f} ms, errors {len(errors)}")
    assert still_open == 0, f"{still_open} slowloris connections still open after 10 s"
    assert last <= HEADER_TIMEOUT + 3, f"last slowloris connection closed after {last}s"
    assert not errors, errors[:5]
    assert p99(lat) < 1.0


def test_slowloris_default_settings_keep_serving(env):
    """Against default settings (shared gateway): normal clients keep getting 200 while 200
    slowloris connections are open."""
    closed_at, lat, errors = slowloris(env.gw.http, 200, duration=5)
    figure("slowloris (200 conns, default settings)",
           f"{sum(1 for c in closed_at if c is not None)} closed within 5 s; normal client {len(lat)} requests, "
           f"p99 {(p99(lat) or 0) * 1000:.1f} ms, errors {len(errors)}")
    assert not errors, errors[:5]
    assert lat and p99(lat) < 1.0


def test_slow_body_is_408_or_closed(slow_gw):
    s = connect(slow_gw.http, timeout=10)
    t = time.time()
    try:
        s.sendall(b"POST /public/slowbody HTTP/1.1\r\nHost: x.test\r\nContent-Length: 100\r\n\r\n0123456789")
        data, eof = read_until_eof(s, timeout=BODY_TIMEOUT + 5)
    finally:
        s.close()
    dt = time.time() - t
    assert eof or data.startswith(b"HTTP/1.1 408"), f"still open after {dt:.1f}s: {data[:100]!r}"
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    assert dt <= BODY_TIMEOUT + 3, f"closed after {dt:.1f}s"


def test_configmap_header_buffer_limit(slow_gw):
    # One 1500-byte line does not fit one 1k buffer of "4 1k" (nginx: 400 "too long header line").
    r = get(slow_gw.http, "/public/cm-hdr", headers=[("x-long", "a" * 1500)])
    assert r.status in (400, 431), r
    # Five 1000-byte lines exceed 4 x 1k in total.
    r = get(slow_gw.http, "/public/cm-hdr2", headers=[(f"x-l{i}", "a" * 1000) for i in range(5)])
    assert r.status == 431, r


def test_configmap_max_header_count(slow_gw):
    r = get(slow_gw.http, "/public/cm-count", headers=[(f"x-{i}", "v") for i in range(25)])
    assert r.status == 431, r


def test_configmap_proxy_body_size(slow_gw):
    assert get(slow_gw.http, "/public/cm-body", method="POST", body=b"b" * 2048).status == 200
    assert get(slow_gw.http, "/public/cm-body", method="POST", body=b"b" * 2049).status == 413


def test_configmap_keep_alive_requests(slow_gw):
    s = connect(slow_gw.http)
    served = 0
    try:
        for i in range(5):
            try:
                s.sendall(f"GET /public/ka{i} HTTP/1.1\r\nHost: x.test\r\n\r\n".encode())
                r = read_response(s, timeout=3)
            except OSError:
                break
            if r is None:
                break
            served += 1
            if (r.h("connection") or "").lower() == "close":
                break
    finally:
        s.close()
    assert served == 3, f"{served} requests served on one connection with keep-alive-requests 3"


def test_configmap_http2_max_concurrent_streams(slow_gw):
    c = H2(slow_gw.http)
    try:
        deadline = time.time() + 3
        value = None
        while time.time() < deadline and value is None:
            if len(c.buf) < 9:
                c.s.settimeout(deadline - time.time())
                try:
                    d = c.s.recv(65536)
                except socket.timeout:
                    break
                if not d:
                    break
                c.buf += d
                continue
            n = int.from_bytes(c.buf[:3], "big")
            if len(c.buf) < 9 + n:
                c.buf += c.s.recv(65536)
                continue
            t, fl, payload = c.buf[3], c.buf[4], c.buf[9:9 + n]
            c.buf = c.buf[9 + n:]
            if t == 4 and not fl & 1:
                for i in range(0, len(payload), 6):
                    if int.from_bytes(payload[i:i + 2], "big") == 3:
                        value = int.from_bytes(payload[i + 2:i + 6], "big")
                break
    finally:
        c.close()
    assert value == 10, f"SETTINGS_MAX_CONCURRENT_STREAMS = {value}"
