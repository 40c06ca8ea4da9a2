"""Request smuggling over HTTP/1.1: every ambiguous framing is rejected with 400 and the
connection is closed, and the upstream never sees the request hidden behind it."""
import pytest

from conftest import connect, get, read_until_eof

SMUGGLED = b"GET /public/smuggled HTTP/1.1\r\nHost: x.test\r\n\r\n"

CASES = {
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
    "http10-te": b"POST /public/s HTTP/1.0\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl-te": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n",
    "dup-cl": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 0\r\nContent-Length: 47\r\n\r\n",
    # HAProxy 2.6 accepts identical Content-Length list values (RFC 9110 §8.6 permits merging them).
    "cl-list": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl-sign": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: +5\r\n\r\nhello",
    "obs-fold-te": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET /public/s HTTP/1.1\r\nHost: x.test\r\nX-Folded: a\r\n b\r\n\r\n",
    "bare-cr": b"GET /public/s HTTP/1.1\r\nHost: x.test\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
    "bare-lf-in-header": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-identity": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te-xchunked": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-tab-prefixed": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-dup": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /public/s HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(CASES))
def test_ambiguous_framing_is_400_and_closed(env, case):
    before = len(env.pub.paths())
    s = connect(env.gw.http)
    try:
        s.sendall(CASES[case] + SMUGGLED)
        data, eof = read_until_eof(s, timeout=3)
    finally:
        s.close()
    first = data.split(b"\r\n", 1)[0]
    assert first.startswith(b"HTTP/1.1 400") or first.startswith(b"HTTP/1.0 400"), f"{case}: first response {first!r}"
    assert eof, f"{case}: connection left open after 400"
    assert data.count(b"HTTP/1.") == 1, f"{case}: more than one response: {data[:300]!r}"
    seen = env.pub.paths()[before:]
    assert "/public/smuggled" not in seen, f"{case}: the upstream saw the smuggled request ({seen})"
    assert not [p for p in seen if p == "/public/s"], f"{case}: the ambiguous request was forwarded"


def test_h2c_upgrade_is_not_forwarded(env):
    before = len(env.pub.requests)
    r = get(env.gw.http, "/public/h2c", headers=[
        ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    assert r.status != 101, r
    for req in env.pub.requests[before:]:
        names = {k for k, _ in req["headers"]}
        assert "upgrade" not in names and "http2-settings" not in names, req["headers"]


def test_keepalive_pipelining_is_framed_correctly(env):
    """Control: two honest pipelined requests give two responses and two upstream requests."""
    before = len(env.pub.paths())
    s = connect(env.gw.http)
    try:
        s.sendall(b"POST /public/p1 HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /public/p2 HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n")
        data, eof = read_until_eof(s, timeout=5)
    finally:
        s.close()
    assert data.count(b"HTTP/1.1 200") == 2, data[:300]
    assert env.pub.paths()[before:] == ["/public/p1", "/public/p2"]
