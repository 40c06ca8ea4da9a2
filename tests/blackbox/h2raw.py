"""Frame-level HTTP/2 client pieces: frames built by hand (so malformed ones can be sent),
HPACK via the `hpack` package that `h2` depends on."""
import socket
import ssl
import struct
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(**kv):
    ids = {"header_table_size": 1, "max_concurrent_streams": 3, "initial_window_size": 4}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kv.items()))


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def literal(name, value, indexing=False):
    """Literal header field with a literal name, no Huffman: any bytes go through unchanged."""
    name = name if isinstance(name, bytes) else name.encode()
    value = value if isinstance(value, bytes) else value.encode()
    return (bytes([0x40 if indexing else 0x00]) + hpack_int(len(name), 7) + name
            + hpack_int(len(value), 7) + value)


def block(headers):
    return b"".join(literal(k, v) for k, v in headers)


def request_headers(path="/public/h2", authority="x.test", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority), *extra]


class H2:
    def __init__(self, addr, tls_sni=None, timeout=5):
        s = socket.create_connection(addr, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_sni:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            s = ctx.wrap_socket(s, server_hostname=tls_sni)
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        self.s = s
        self.buf = b""
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.closed = False
        self.send(PREFACE + settings(initial_window_size=1 << 24) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24)))

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _frame(self, deadline):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            left = deadline - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, ssl.SSLError, OSError):
                d = b""
            if not d:
                self.closed = True
                return ("eof",)
            self.buf += d
        n = int.from_bytes(self.buf[:3], "big")
        t, fl, sid = self.buf[3], self.buf[4], struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        if t == SETTINGS and not fl & ACK:
            try:
                self.send(frame(SETTINGS, ACK, 0))
            except OSError:
                pass
        if t == PING and not fl & ACK:
            try:
                self.send(frame(PING, ACK, 0, payload))
            except OSError:
                pass
        if t == HEADERS:
            pad = 0
            if fl & 0x8:
                pad, payload = payload[0], payload[1:]
            if fl & 0x20:
                payload = payload[5:]
            if pad:
                payload = payload[:-pad]
            try:
                hs = self.dec.decode(payload, raw=True)
            except Exception as e:  # noqa: BLE001
                hs = [("decode-error", str(e))]
            return ("headers", sid, [(k.decode() if isinstance(k, bytes) else k,
                                      v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in hs],
                    bool(fl & END_STREAM))
        if t == DATA:
            if payload:
                try:
                    self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                              + (frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload)))
                                 if not fl & END_STREAM else b""))
                except OSError:
                    pass
            return ("data", sid, payload, bool(fl & END_STREAM))
        if t == RST_STREAM:
            return ("rst", sid, struct.unpack(">I", payload[:4])[0])
        if t == GOAWAY:
            return ("goaway", struct.unpack(">I", payload[4:8])[0])
        return ("other", t, sid)

    def outcome(self, sid, timeout=5):
        """Waits for the end of stream `sid`: returns (kind, status, body, events) where kind is
        'response', 'rst', 'goaway', 'eof' or 'timeout'."""
        deadline = time.time() + timeout
        status, body, events = None, b"", []
        while True:
            ev = self._frame(deadline)
            if ev is None:
                return "timeout", status, body, events
            events.append(ev[:2] if ev[0] == "data" else ev)
            if ev[0] == "eof":
                return "eof", status, body, events
            if ev[0] == "goaway":
                return "goaway", status, body, events
            if ev[0] == "rst" and ev[1] == sid:
                return "rst", status, body, events
            if ev[0] == "headers" and ev[1] == sid:
                for k, v in ev[2]:
                    if k == ":status":
                        status = int(v)
                if ev[3]:
                    return "response", status, body, events
            if ev[0] == "data" and ev[1] == sid:
                body += ev[2]
                if ev[3]:
                    return "response", status, body, events

    def drain_until_closed(self, timeout):
        deadline = time.time() + timeout
        while True:
            ev = self._frame(deadline)
            if ev is None:
                return None
            if ev[0] in ("eof", "goaway"):
                return ev

    def request(self, sid, headers, body=None, timeout=5):
        self.send(frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), sid, block(headers)))
        if body:
            self.send(frame(DATA, END_STREAM, sid, body))
        return self.outcome(sid, timeout)
