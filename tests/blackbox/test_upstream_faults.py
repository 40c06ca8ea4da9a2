"""Upstream faults: refused, silent, closing, and dying mid-body upstreams."""
import time

from conftest import connect, get, read_response


def test_connection_refused_is_502_fast(env):
    t = time.time()
    r = get(env.gw.http, "/refused/x", timeout=5)
    dt = time.time() - t
    assert r.status == 502, r
    assert r.h("x-portier-error") == "upstream-connect", r
    assert dt < 2, f"took {dt:.2f}s"


def test_silent_upstream_is_504_at_read_timeout(env):
    t = time.time()
    r = get(env.gw.http, "/faults/hang", timeout=15)
    dt = time.time() - t
    assert r.status == 504, r
    assert r.h("x-portier-error") == "upstream-timeout", r
    assert 1.5 <= dt <= 4, f"504 after {dt:.2f}s with proxy-read-timeout 2"


def test_upstream_closing_before_response_is_502(env):
    r = get(env.gw.http, "/faults/close", timeout=10)
    assert r.status == 502, r
    assert r.h("x-portier-error") in ("upstream-reset", "upstream-protocol"), r


def test_upstream_dying_mid_body_aborts_client_response(env):
    s = connect(env.gw.http, timeout=10)
    t = time.time()
    try:
        s.sendall(b"GET /faults/diebody HTTP/1.1\r\nHost: x.test\r\n\r\n")
        r = read_response(s, timeout=8)
    finally:
        s.close()
    dt = time.time() - t
    assert dt < 6, f"client hung {dt:.1f}s"
    assert r is not None
    assert r.status == 200
    assert not r.complete or len(r.body) < 100000, "a truncated body was presented as complete"


def test_still_serving_after_faults(env):
    for _ in range(5):
        assert get(env.gw.http, "/public/after-faults").status == 200
    assert env.gw.alive()
