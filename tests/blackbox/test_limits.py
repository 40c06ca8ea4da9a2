"""Request limits: header section size and count (431), body size (413) before the upstream."""
import socket
import time

from conftest import connect, get, raw, read_response


def test_header_section_over_limit_is_431(env):
    # 40 headers of 1 KiB = 40 KiB, past the default large-client-header-buffers "4 8k" (32 KiB).
    hdrs = [(f"x-fill-{i}", "a" * 1000) for i in range(40)]
    r = get(env.gw.http, "/public/hdr-big", headers=hdrs)
    assert r is not None and r.status == 431, r
    assert "/public/hdr-big" not in env.pub.paths()


def test_single_header_line_over_buffer_is_rejected(env):
    # One 16 KiB header line is longer than one 8k buffer of "4 8k" (total head ~16 KiB < 32 KiB).
    # nginx rejects it ("client sent too long header line", answered as 400); 431 is the RFC 6585 code.
    r = get(env.gw.http, "/public/hdr-line", headers=[("x-long", "b" * 16384)])
    assert r is not None and r.status in (400, 431), r
    assert "/public/hdr-line" not in env.pub.paths()


def test_more_than_100_header_fields_is_431(env):
    hdrs = [(f"x-n{i}", "v") for i in range(101)]
    r = get(env.gw.http, "/public/hdr-count", headers=hdrs)
    assert r is not None and r.status == 431, r
    assert "/public/hdr-count" not in env.pub.paths()


def test_100_header_fields_pass(env):
    # 100 fields in total including Host and Connection.
    hdrs = [(f"x-n{i}", "v") for i in range(98)]
    r = get(env.gw.http, "/public/hdr-count-ok", headers=hdrs)
    assert r.status == 200, r


def test_content_length_over_limit_is_413_without_contacting_upstream(env):
    before = env.adm.count() + env.pub.count()
    s = connect(env.gw.http)
    try:
        # Announce 20 KiB on a 10k route and send no body: the answer must come from the head alone.
        s.sendall(b"POST /limited/cl HTTP/1.1\r\nHost: x.test\r\nContent-Length: 20480\r\n\r\n")
        r = read_response(s, timeout=3)
    finally:
        s.close()
    assert r is not None and r.status == 413, r
    assert r.h("x-portier-error") == "body-too-large", r
    time.sleep(0.2)
    assert env.adm.count() + env.pub.count() == before, "upstream was contacted"


def test_default_body_limit_is_1m(env):
    s = connect(env.gw.http)
    try:
        s.sendall(b"POST /public/big HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1048577\r\n\r\n")
        r = read_response(s, timeout=3)
    finally:
        s.close()
    assert r is not None and r.status == 413, r
    assert "/public/big" not in env.pub.paths()


def test_chunked_body_over_limit_is_413(env):
    s = connect(env.gw.http)
    r = None
    try:
        s.sendall(b"POST /limited/chunked HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"1000\r\n" + b"c" * 4096 + b"\r\n"
        try:
            for _ in range(8):  # 32 KiB > 10k
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = read_response(s, timeout=5)
    finally:
        s.close()
    assert r is not None and r.status == 413, r
    got = [p for p in env.pub.paths() if p == "/limited/chunked"]
    assert not got, "the upstream received a complete over-limit body"


def test_body_exactly_at_limit_passes(env):
    r = get(env.gw.http, "/limited/exact", method="POST", body=b"e" * 10240)
    assert r.status == 200, r
    assert b'"body_len": 10240' in r.body


def test_body_one_over_limit_is_413(env):
    r = get(env.gw.http, "/limited/over", method="POST", body=b"e" * 10241)
    assert r.status == 413, r
