"""HTTP/2 at the frame level: rapid reset, CONTINUATION flood, HPACK bomb, malformed fields,
content-length mismatches. h2c with prior knowledge on the plain listener unless noted."""
import threading
import time

import pytest

from conftest import figure, get
from h2raw import CONTINUATION, DATA, END_HEADERS, END_STREAM, H2, HEADERS, RST_STREAM, block, frame, \
    hpack_int, literal, request_headers


def test_h2c_prior_knowledge_request(env):
    c = H2(env.gw.http)
    try:
        kind, status, body, _ = c.request(1, request_headers("/public/h2c-ok"))
    finally:
        c.close()
    assert (kind, status) == ("response", 200), (kind, status)
    assert b"/public/h2c-ok" in body


def test_h2_over_tls_alpn(env):
    c = H2(env.gw.https, tls_sni="a.test")
    try:
        kind, status, body, _ = c.request(1, [(":method", "GET"), (":scheme", "https"), (":path", "/tls-h2"),
                                              (":authority", "a.test")])
    finally:
        c.close()
    assert (kind, status) == ("response", 200), (kind, status)
    assert b'"upstream": "pub"' in body


def test_rapid_reset_stays_responsive(env):
    # Caddy 2.6 (Go net/http before 1.21.3) is vulnerable to rapid reset (CVE-2023-44487).
    n = 3000
    before = env.pub.count(lambda r: r["path"].startswith("/public/rr"))
    c = H2(env.gw.http)
    sent = 0
    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t = time.time()
            try:
                r = get(env.gw.http, "/public/rr-probe", timeout=5)
                latencies.append(time.time() - t if r and r.status == 200 else 99)
            except OSError:
                latencies.append(99)
            time.sleep(0.05)

    th = threading.Thread(target=probe, daemon=True)
    th.start()
    t0 = time.time()
    try:
        batch = b""
        for i in range(n):
            sid = 2 * i + 1
            batch += frame(HEADERS, END_HEADERS | END_STREAM, sid, block(request_headers(f"/public/rr{i}")))
            batch += frame(RST_STREAM, 0, sid, (8).to_bytes(4, "big"))  # CANCEL
            if len(batch) > 32768:
                c.send(batch)
                sent = i + 1
                batch = b""
            if time.time() - t0 > 10:
                break
        if batch:
            c.send(batch)
            sent = n
    except OSError:
        pass  # the server may close the connection: that is a fine answer
    finally:
        c.close()
    time.sleep(1.0)
    stop.set()
    th.join(6)
    forwarded = env.pub.count(lambda r: r["path"].startswith("/public/rr")
                              and r["path"] != "/public/rr-probe") - 0
    forwarded -= before if before else 0
    worst = max(latencies) if latencies else None
    figure("h2 rapid reset", f"{sent} HEADERS+RST sent before close/stop, {forwarded} reached the upstream, "
           f"probe worst latency {worst * 1000 if worst else 0:.0f} ms")
    r = get(env.gw.http, "/public/after-rr", timeout=5)
    assert r.status == 200
    assert latencies and worst < 2, f"probe latency during the attack: {worst}"
    assert forwarded <= max(100, sent // 5), f"{forwarded} of {sent} reset streams reached the upstream"


def test_continuation_flood_is_closed_and_bounded(env):
    # Caddy 2.6 (Go net/http before 1.22.2) buffers endless CONTINUATION frames (CVE-2023-45288).
    rss0 = env.gw.rss()
    c = H2(env.gw.http)
    sent = 0
    closed = False
    try:
        c.send(frame(HEADERS, 0, 1, block(request_headers("/public/contflood"))))
        chunk = frame(CONTINUATION, 0, 1, literal("x-flood", "a" * 16000))
        t0 = time.time()
        while sent < (32 << 20) and time.time() - t0 < 10:
            c.send(chunk * 16)
            sent += len(chunk) * 16
            c.s.setblocking(False)
            try:
                d = c.s.recv(65536)
                if d == b"" or b"\x07" in d[3:4]:
                    closed = True
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            c.s.setblocking(True)
            if closed:
                break
    except OSError:
        closed = True
    if not closed:
        closed = c.drain_until_closed(3) is not None
    c.close()
    rss1 = env.gw.rss()
    figure("h2 CONTINUATION flood", f"{sent >> 10} KiB sent before close, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")
    assert closed, f"connection still open after {sent >> 20} MiB of CONTINUATION"
    assert sent < (16 << 20), f"{sent >> 20} MiB accepted before closing"
    assert rss1 - rss0 < (64 << 20)
    assert "/public/contflood" not in env.pub.paths()
    assert get(env.gw.http, "/public/after-cont").status == 200


def test_hpack_bomb_is_bounded(env):
    rss0 = env.gw.rss()
    c = H2(env.gw.http)
    try:
        # One 4000-byte entry in the dynamic table (index 62), then 16000 one-byte references:
        # ~16 KiB on the wire, ~64 MiB decoded.
        blk = block(request_headers("/public/hpackbomb")) + literal("x-b", "b" * 4000, indexing=True)
        blk += b"\xbe" * 16000
        frames = b""
        first = True
        for i in range(0, len(blk), 16000):
            part = blk[i:i + 16000]
            last = i + 16000 >= len(blk)
            frames += frame(HEADERS if first else CONTINUATION, (END_HEADERS if last else 0) | (END_STREAM if first else 0),
                            1, part)
            first = False
        try:
            c.send(frames)
        except OSError:
            pass
        kind, status, _, _ = c.outcome(1, timeout=5)
    finally:
        c.close()
    rss1 = env.gw.rss()
    figure("h2 HPACK bomb", f"outcome {kind} {status}, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")
    assert kind in ("rst", "goaway", "eof") or (status is not None and status >= 400), (kind, status)
    assert "/public/hpackbomb" not in env.pub.paths()
    assert rss1 - rss0 < (64 << 20)
    assert get(env.gw.http, "/public/after-bomb").status == 200


MALFORMED = {
    "cr-in-value": [("x-a", "a\rb")],
    "lf-in-value": [("x-a", "a\nx-injected: 1")],
    "crlf-in-value": [("x-a", "a\r\nx-injected: 1")],
    "nul-in-value": [("x-a", "a\x00b")],
    "uppercase-name": [("X-Upper", "v")],
    "cr-in-name": [("x-a\r", "v")],
    "space-in-name": [("x a", "v")],
    "colon-in-name": [("x:a", "v")],
    "connection": [("connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "keep-alive": [("keep-alive", "timeout=5")],
    "proxy-connection": [("proxy-connection", "keep-alive")],
    "upgrade": [("upgrade", "websocket")],
    "te-gzip": [("te", "gzip")],
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_field_is_rejected_not_forwarded(env, case):
    path = f"/public/h2bad-{case}"
    c = H2(env.gw.http)
    try:
        kind, status, _, _ = c.request(1, request_headers(path, extra=MALFORMED[case]))
    finally:
        c.close()
    assert kind in ("rst", "goaway", "eof") or (status is not None and 400 <= status < 500), (kind, status)
    assert path not in env.pub.paths(), f"{case} forwarded to the upstream"


@pytest.mark.parametrize("bad_path", ["/public/p\r\nx: y", "/public/p\x00", "/public/p q", "public/rel", ""])
def test_malformed_path_pseudo_header(env, bad_path):
    before = len(env.pub.paths())
    c = H2(env.gw.http)
    try:
        kind, status, _, _ = c.request(1, [(":method", "GET"), (":scheme", "http"), (":path", bad_path),
                                           (":authority", "x.test")])
    finally:
        c.close()
    assert kind in ("rst", "goaway", "eof") or (status is not None and 400 <= status < 500), (kind, status)
    assert not [p for p in env.pub.paths()[before:] if p.startswith("/public/p") or "rel" in p]


@pytest.mark.parametrize("declared,sent", [(10, 5), (5, 10)])
def test_content_length_data_mismatch_is_stream_error(env, declared, sent):
    path = f"/public/h2cl-{declared}-{sent}"
    c = H2(env.gw.http)
    try:
        c.send(frame(HEADERS, END_HEADERS, 1, block(request_headers(path, method="POST",
                                                                    extra=[("content-length", str(declared))]))))
        c.send(frame(DATA, END_STREAM, 1, b"d" * sent))
        kind, status, _, _ = c.outcome(1, timeout=5)
    finally:
        c.close()
    assert kind in ("rst", "goaway", "eof") or (status is not None and 400 <= status < 500), (kind, status)
    got = [r for r in env.pub.requests if r["path"] == path]
    assert not got or got[0]["body_len"] == declared and False, f"upstream got {got}"
