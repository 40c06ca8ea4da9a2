//! Header rewriting between the client and the upstream: hop-by-hop removal (RFC 9110 §7.6.1)
//! and the `X-Forwarded-*` family that tells the upstream who the client is.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::Version;

static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What the upstream is told about the client connection.
#[derive(Debug)]
pub(crate) struct Forwarded<'a> {
    /// The client's IP address, already a header value.
    pub(crate) client_ip: &'a HeaderValue,
    /// The port the client connected to.
    pub(crate) local_port: &'a HeaderValue,
    pub(crate) tls: bool,
    /// The `Host` (or `:authority`) the client sent; empty when it sent none.
    pub(crate) host: &'a HeaderValue,
}

/// Whether a request asks to switch protocols (WebSocket and friends): HTTP/1.1 with an `Upgrade`
/// header and `upgrade` among the `Connection` options (RFC 9110 §7.8). `h2c` is never an
/// upgrade here (RFC 9113 §3.1 deprecates it, and forwarding it lets a client talk HTTP/2 to the
/// upstream past the gateway's checks): such a request is served as plain HTTP/1.1.
pub(crate) fn is_upgrade_request(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(UPGRADE)
        && connection_has(headers, "upgrade")
        && !headers
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
}

/// Removes the hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`,
/// `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Trailer`, `Proxy-Authenticate`,
/// `Proxy-Authorization`, and `Upgrade`. With `keep_upgrade` (an upgrade request, or the 101 that
/// answers it) `Upgrade` stays and `Connection: upgrade` is set, so the next hop switches too.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which hop-by-hop headers are there (comparisons of known
    // names are cheap); only those are removed, each removal being a hashed lookup. Most requests
    // carry none; most upstream responses only `Connection: keep-alive`.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
        }
    }
    if present[0] && !only_connection_options(headers) {
        // Collected first: the map cannot change while its values are borrowed.
        for name in named_by_connection(headers) {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
        if *name != UPGRADE {
            headers.remove(*name);
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present[UPGRADE_INDEX] {
        headers.remove(UPGRADE);
    }
}

/// `Connection: keep-alive` or `Connection: close` alone, the common case (every keep-alive
/// upstream response): it names no header to remove.
fn only_connection_options(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONNECTION).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => {
            let v = v.as_bytes();
            v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
        }
        _ => false,
    }
}

/// The index of `name` in [`HOP_BY_HOP`]. A match on the (lowercase) text: most lengths rule
/// a name out at once, where comparing with each of the ten names cost ~500 instructions per
/// header map (callgrind).
pub(crate) fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "te" => 1,
        "transfer-encoding" => 2,
        "trailer" => 3,
        "proxy-authenticate" => 4,
        "proxy-authorization" => 5,
        "upgrade" => UPGRADE_INDEX,
        "keep-alive" => 7,
        "proxy-connection" => 8,
        "http2-settings" => 9,
        _ => return None,
    })
}

/// The hop-by-hop headers; `Connection` first.
static HOP_BY_HOP: [&HeaderName; 10] = [
    &CONNECTION,
    &TE,
    &TRANSFER_ENCODING,
    &TRAILER,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
    &UPGRADE,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &HTTP2_SETTINGS,
];
const UPGRADE_INDEX: usize = 6;

/// RFC 9113 §8.2.3: an HTTP/2 client may split `Cookie` into several fields (for compression);
/// before the request goes to HTTP/1.1 they must be one, joined with "; ".
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let joined = cookie_join(headers.get_all(COOKIE));
    // Each part was a valid value, and "; " is too: the join is one.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Cookie crumbs as one value, joined with "; " (RFC 9113 §8.2.3).
fn cookie_join<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<u8> {
    let mut joined = Vec::new();
    for value in values {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    joined
}

/// Sets `X-Forwarded-For` (appending the client to a chain the client sent, as nginx's
/// `$proxy_add_x_forwarded_for` does), `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
/// `X-Forwarded-Port`. Values the client sent for the others are replaced: they describe this hop.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    let xff = match chain(headers, fwd.client_ip) {
        Some(v) => v,
        None => fwd.client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), fwd.client_ip.clone());
    let proto = if fwd.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if fwd.host.is_empty() {
        headers.remove(&X_FORWARDED_HOST);
    } else {
        headers.insert(X_FORWARDED_HOST.clone(), fwd.host.clone());
    }
    headers.insert(X_FORWARDED_PORT.clone(), fwd.local_port.clone());
}

/// The upstream request's header lines, written straight from the client's `headers` after a
/// request line: what [`strip_hop_by_hop`] (no upgrade), [`join_cookies`] (when `join`), `host`
/// as the `Host` (when given) and [`add_forwarded`] make of the map, then the blank line. The
/// map is not changed: those edits cost five insertions and a removal pass per request
/// (~1,500 instructions), where skipping the fields while writing costs a comparison each.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
    join: bool,
    fwd: &Forwarded<'_>,
) {
    let start = out.len();
    // Usually `Connection` names no field (or is absent): written in one pass, without looking
    // it up first. When it does name some, the pass is redone without them.
    if !write_fields(out, headers, host, join, fwd, &[]) {
        let named = named_by_connection(headers);
        out.truncate(start);
        write_fields(out, headers, host, join, fwd, &named);
    }
}

/// The fields every `Connection` field of `headers` names. Usually the options are only
/// `keep-alive`, `close` or `upgrade`, which allocate nothing here.
fn named_by_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut named = Vec::new();
    for value in &headers.get_all(CONNECTION) {
        named.extend(connection_names(value));
    }
    named
}

/// The fields `Connection` names besides its options (`close`, `keep-alive`, `upgrade`).
pub(crate) fn connection_names(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    connection_tokens(value).filter_map(connection_name)
}

/// The comma-separated tokens of a `Connection` field, trimmed, empty ones left out.
pub(crate) fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> + '_ {
    value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The field a `Connection` token names; `None` for the options themselves (`close`,
/// `keep-alive`, `upgrade`) and for what is no field name.
pub(crate) fn connection_name(token: &str) -> Option<HeaderName> {
    if token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("keep-alive")
        || token.eq_ignore_ascii_case("upgrade")
    {
        return None;
    }
    HeaderName::from_bytes(token.as_bytes()).ok()
}

/// One pass of [`write_head`] with `named` left out; `false` (and a partial output) when a
/// `Connection` field names a field and `named` is empty.
fn write_fields(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
    join: bool,
    fwd: &Forwarded<'_>,
    named: &[HeaderName],
) -> bool {
    // Inlined at every call: outlined (as LLVM chose once `cookie_join` joined the calls), the
    // head of a usual request cost ~170 instructions more.
    #[inline(always)]
    fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9112 §3.2: Host first, when it is ours.
    if let Some(host) = host {
        field(out, "host", host.as_bytes());
    }
    let mut cookies: Vec<&HeaderValue> = Vec::new();
    // The client's X-Forwarded-For chain, gathered on the way (see `chain`).
    let mut chain: Vec<u8> = Vec::new();
    let xff_named = named.contains(&X_FORWARDED_FOR);
    for (name, value) in headers {
        if hop_by_hop_index(name).is_some() {
            if named.is_empty() && *name == CONNECTION && connection_names(value).next().is_some() {
                return false;
            }
            continue;
        }
        if named.contains(name) {
            continue;
        }
        match name.as_str() {
            "x-forwarded-for" => {
                if !value.is_empty() {
                    chain.extend_from_slice(value.as_bytes());
                    chain.extend_from_slice(b", ");
                }
            }
            "x-real-ip" | "x-forwarded-proto" | "x-forwarded-host" | "x-forwarded-port" => {}
            "host" if host.is_some() => {}
            "cookie" if join => cookies.push(value),
            other => field(out, other, value.as_bytes()),
        }
    }
    if !cookies.is_empty() {
        field(out, "cookie", &cookie_join(cookies));
    }
    if xff_named || chain.is_empty() {
        field(out, "x-forwarded-for", fwd.client_ip.as_bytes());
    } else {
        chain.extend_from_slice(fwd.client_ip.as_bytes());
        field(out, "x-forwarded-for", &chain);
    }
    field(out, "x-real-ip", fwd.client_ip.as_bytes());
    field(out, "x-forwarded-proto", if fwd.tls { b"https" } else { b"http" });
    if !fwd.host.is_empty() {
        field(out, "x-forwarded-host", fwd.host.as_bytes());
    }
    field(out, "x-forwarded-port", fwd.local_port.as_bytes());
    out.extend_from_slice(b"\r\n");
    true
}

/// The existing `X-Forwarded-For` values (several header lines join with ", ") followed by the
/// client; `None` when there is none, or when the result would not be a valid header value.
fn chain(headers: &HeaderMap, client_ip: &HeaderValue) -> Option<HeaderValue> {
    let mut values = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter(|v| !v.is_empty())
        .peekable();
    values.peek()?;
    let mut out = Vec::with_capacity(64);
    for v in values {
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.as_bytes());
    HeaderValue::from_bytes(&out).ok()
}

fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(option))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = &'static [(&'static str, &'static str)];

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        v.sort();
        v
    }

    /// `write_head` against the map edits it stands for, on random mixes of fields.
    #[test]
    fn written_head_is_the_edited_map() {
        const FIELDS: [(&str, &str); 18] = [
            ("host", "shop.example"),
            ("user-agent", "curl/8"),
            ("accept", "*/*"),
            ("connection", "keep-alive"),
            ("connection", "close, x-secret"),
            ("connection", "x-forwarded-for, host"),
            ("connection", "cookie, Upgrade"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", ""),
            ("x-real-ip", "10.0.0.9"),
            ("x-forwarded-host", "evil"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("proxy-connection", "x"),
        ];
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let client_ip = HeaderValue::from_static("192.0.2.7");
        let port = HeaderValue::from_static("8080");
        for case in 0..5_000 {
            let pairs: Vec<(&str, &str)> = (0..next() % 10).map(|_| FIELDS[(next() % 18) as usize]).collect();
            let client = map(&pairs);
            let join = next().is_multiple_of(2);
            let host = match next() % 3 {
                0 => None,
                1 => Some(HeaderValue::from_static("authority.example")),
                _ => Some(HeaderValue::from_static("127.0.0.1:80")),
            };
            let raw_host = match next() % 2 {
                0 => HeaderValue::from_static(""),
                _ => HeaderValue::from_static("shop.example"),
            };
            let fwd = Forwarded {
                client_ip: &client_ip,
                local_port: &port,
                tls: next().is_multiple_of(2),
                host: &raw_host,
            };

            let mut edited = client.clone();
            strip_hop_by_hop(&mut edited, false);
            if join {
                join_cookies(&mut edited);
            }
            if let Some(h) = &host {
                edited.insert(http::header::HOST, h.clone());
            }
            add_forwarded(&mut edited, &fwd);
            let mut want: Vec<String> = edited
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect();
            want.sort();

            let mut out = Vec::new();
            write_head(&mut out, &client, host.as_ref(), join, &fwd);
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with("\r\n\r\n") || text == "\r\n", "case {case}: {text:?}");
            let mut got: Vec<String> = text
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            got.sort();
            assert_eq!(got, want, "case {case}: {pairs:?} join={join} host={host:?}");
        }
    }

    #[test]
    fn hop_by_hop_index_follows_the_table() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in ["host", "connectio", "x-connection", "tee", "upgrade-insecure-requests"] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None, "{other}");
        }
    }

    #[test]
    fn strips_hop_by_hop_headers() {
        let cases: [(&str, Pairs, bool, &[&str]); 6] = [
            (
                "options only",
                &[("connection", "Keep-Alive"), ("keep-alive", "timeout=5"), ("x-a", "1")],
                false,
                &["x-a"],
            ),
            (
                "fixed list",
                &[
                    ("keep-alive", "timeout=5"),
                    ("proxy-connection", "keep-alive"),
                    ("te", "trailers"),
                    ("transfer-encoding", "chunked"),
                    ("trailer", "x-sum"),
                    ("proxy-authenticate", "Basic"),
                    ("proxy-authorization", "Basic eA=="),
                    ("upgrade", "websocket"),
                    ("accept", "*/*"),
                ],
                false,
                &["accept"],
            ),
            (
                "named by connection, over several lines",
                &[
                    ("connection", "keep-alive, X-Hop"),
                    ("connection", "x-other"),
                    ("x-hop", "1"),
                    ("x-other", "2"),
                    ("x-end", "3"),
                ],
                false,
                &["x-end"],
            ),
            (
                "upgrade kept on upgrade",
                &[
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-key", "k"),
                ],
                true,
                &["connection", "sec-websocket-key", "upgrade"],
            ),
            (
                "invalid token ignored",
                &[("connection", "bad name, x-a"), ("x-a", "1"), ("x-b", "2")],
                false,
                &["x-b"],
            ),
            ("nothing to do", &[("x-b", "2")], false, &["x-b"]),
        ];
        for (name, input, keep_upgrade, want) in cases {
            let mut h = map(input);
            strip_hop_by_hop(&mut h, keep_upgrade);
            assert_eq!(names(&h), want, "{name}");
            if keep_upgrade {
                assert_eq!(h[CONNECTION], "upgrade", "{name}");
            }
        }
    }

    #[test]
    fn detects_upgrade_requests() {
        let cases = [
            (
                Version::HTTP_11,
                &[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")][..],
                true,
            ),
            (Version::HTTP_11, &[("upgrade", "websocket")][..], false),
            (
                Version::HTTP_11,
                &[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c")][..],
                false,
            ),
            (Version::HTTP_11, &[("connection", "upgrade")][..], false),
            (
                Version::HTTP_10,
                &[("connection", "upgrade"), ("upgrade", "websocket")][..],
                false,
            ),
            (
                Version::HTTP_2,
                &[("connection", "upgrade"), ("upgrade", "websocket")][..],
                false,
            ),
        ];
        for (i, (version, headers, want)) in cases.into_iter().enumerate() {
            assert_eq!(is_upgrade_request(version, &map(headers)), want, "case {i}");
        }
    }

    #[test]
    fn sets_forwarded_headers() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let port = HeaderValue::from_static("8443");
        let cases: [(Pairs, &str, bool, &str, Option<&str>); 4] = [
            (&[], "shop.example", true, "10.0.0.9", Some("shop.example")),
            (
                &[("x-forwarded-for", "1.1.1.1")],
                "shop.example:8080",
                false,
                "1.1.1.1, 10.0.0.9",
                Some("shop.example:8080"),
            ),
            (
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "2.2.2.2"),
                    ("x-forwarded-host", "evil"),
                ],
                "",
                false,
                "1.1.1.1, 2.2.2.2, 10.0.0.9",
                None,
            ),
            (
                &[("x-forwarded-proto", "https"), ("x-real-ip", "6.6.6.6")],
                "a",
                false,
                "10.0.0.9",
                Some("a"),
            ),
        ];
        for (i, (input, host, tls, want_xff, want_host)) in cases.into_iter().enumerate() {
            let mut h = map(input);
            let host = HeaderValue::from_str(host).unwrap();
            add_forwarded(
                &mut h,
                &Forwarded {
                    client_ip: &ip,
                    local_port: &port,
                    tls,
                    host: &host,
                },
            );
            assert_eq!(h["x-forwarded-for"], want_xff, "case {i}");
            assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1, "case {i}");
            assert_eq!(h["x-real-ip"], "10.0.0.9", "case {i}");
            assert_eq!(h["x-forwarded-proto"], if tls { "https" } else { "http" }, "case {i}");
            assert_eq!(h["x-forwarded-port"], "8443", "case {i}");
            assert_eq!(
                h.get("x-forwarded-host").map(|v| v.to_str().unwrap()),
                want_host,
                "case {i}"
            );
        }
    }
}
