"""1,000 concurrent keep-alive connections, two requests each."""
import selectors
import socket
import time

from conftest import figure

N = 1000


def test_1000_concurrent_keepalive_connections(env):
    socks = []
    t0 = time.time()
    for _ in range(N):
        s = socket.create_connection(env.gw.http, timeout=10)
        socks.append(s)
    ok_total = 0
    for round_ in range(2):
        sel = selectors.DefaultSelector()
        bufs = {}
        for i, s in enumerate(socks):
            s.sendall(f"GET /public/conc{round_}-{i} HTTP/1.1\r\nHost: x.test\r\n\r\n".encode())
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
            bufs[i] = b""
        done, statuses = set(), {}
        deadline = time.time() + 30
        while len(done) < N and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                i = key.data
                try:
                    d = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    statuses[i] = "eof"
                    done.add(i)
                    sel.unregister(key.fileobj)
                    continue
                bufs[i] += d
                if b"\r\n\r\n" in bufs[i]:
                    head, body = bufs[i].split(b"\r\n\r\n", 1)
                    cl = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                    if cl and len(body) >= int(cl[0].split(b":")[1]):
                        statuses[i] = int(head.split(b" ")[1])
                        done.add(i)
                        sel.unregister(key.fileobj)
        sel.close()
        for s in socks:
            s.setblocking(True)
        ok = sum(1 for v in statuses.values() if v == 200)
        ok_total += ok
        assert ok == N, (f"round {round_}: {ok} of {N} got 200; others: "
                         f"{sorted(set(v for v in statuses.values() if v != 200))}, {N - len(done)} unanswered")
    for s in socks:
        s.close()
    figure("concurrency", f"{N} keep-alive connections x 2 requests: {ok_total} x 200 in {time.time() - t0:.1f}s")
    assert env.gw.alive()
