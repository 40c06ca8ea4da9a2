use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Per-route limits and access rules, from Ingress annotations over the global settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePolicy {
    /// Largest request body accepted, in bytes; `None` means unlimited (ingress-nginx `0`).
    /// Decided from `Content-Length` before the upstream is contacted, and by counting streamed
    /// bytes for bodies without one: 413 either way.
    pub max_body_bytes: Option<u64>,
    /// Establishing the upstream connection (`proxy-connect-timeout`).
    pub connect_timeout: Duration,
    /// Waiting for the upstream's response headers, and between two reads of its body
    /// (`proxy-read-timeout`).
    pub read_timeout: Duration,
    /// Between two writes of the request body to the upstream (`proxy-send-timeout`).
    pub send_timeout: Duration,
    /// Client address rules (`whitelist-source-range`, `denylist-source-range`); `None` admits all.
    pub source: Option<SourceFilter>,
}

/// Which client addresses may use a route. Deny wins over allow; a non-empty allow list admits
/// only its members (ingress-nginx semantics). Refused clients get 403.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SourceFilter {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// Settings that apply to every listener and connection, from the ingress-nginx-style ConfigMap
/// (`--configmap NS/NAME`). A connection reads them from the snapshot that is live when it is
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSettings {
    /// Time allowed for a client to send the request head (`client-header-timeout`; slowloris).
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body (`client-body-timeout`).
    pub client_body_timeout: Duration,
    /// Largest request head in bytes: request line plus header section (from
    /// `large-client-header-buffers`, `number × size`). Larger: 431.
    pub max_header_bytes: usize,
    /// Longest single line of the request head (request line or one header field), from
    /// `large-client-header-buffers` (its `size`). Longer: 431.
    pub max_header_line_bytes: usize,
    /// Most header fields in one request. More: 431.
    pub max_header_count: usize,
    /// How long an idle keep-alive connection is kept open (`keep-alive`).
    pub keep_alive_timeout: Duration,
    /// Requests served on one keep-alive connection before it is closed (`keep-alive-requests`).
    pub keep_alive_requests: u32,
    /// How long an idle upstream connection stays in the pool (`upstream-keepalive-timeout`).
    pub upstream_keepalive_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection (`http2-max-concurrent-streams`).
    pub http2_max_concurrent_streams: u32,
    /// Route policy for Ingresses without annotations (`proxy-body-size`, `proxy-*-timeout`).
    pub default_policy: RoutePolicy,
}

// === impl RoutePolicy ===

impl Default for RoutePolicy {
    /// ingress-nginx's defaults: 1 MiB bodies, 5 s connect, 60 s read and send.
    fn default() -> Self {
        Self {
            max_body_bytes: Some(1024 * 1024),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            source: None,
        }
    }
}

impl RoutePolicy {
    /// Whether a client address may use the route.
    pub fn admits(&self, client: IpAddr) -> bool {
        self.source.as_ref().is_none_or(|f| f.admits(client))
    }
}

// === impl SourceFilter ===

impl SourceFilter {
    pub fn admits(&self, client: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client))
    }
}

// === impl GlobalSettings ===

impl Default for GlobalSettings {
    fn default() -> Self {
        Self {
            // nginx defaults to 60 s; an edge facing the internet needs a tighter bound on slow heads.
            client_header_timeout: Duration::from_secs(10),
            client_body_timeout: Duration::from_secs(60),
            // ingress-nginx `large-client-header-buffers: 4 8k`.
            max_header_bytes: 32 * 1024,
            max_header_line_bytes: 8 * 1024,
            max_header_count: 100,
            keep_alive_timeout: Duration::from_secs(75),
            keep_alive_requests: 1000,
            upstream_keepalive_timeout: Duration::from_secs(60),
            http2_max_concurrent_streams: 128,
            default_policy: RoutePolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_filter_rules() {
        let f = SourceFilter {
            allow: vec!["10.0.0.0/8".parse().unwrap(), "192.168.1.7/32".parse().unwrap()],
            deny: vec!["10.9.0.0/16".parse().unwrap()],
        };
        let cases = [
            ("10.1.2.3", true),
            ("10.9.1.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("::ffff:10.1.2.3", true),
            ("::1", false),
        ];
        for (ip, want) in cases {
            assert_eq!(f.admits(ip.parse().unwrap()), want, "{ip}");
        }
        let deny_only = SourceFilter {
            allow: vec![],
            deny: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(!deny_only.admits("127.0.0.1".parse().unwrap()));
        assert!(deny_only.admits("127.0.0.2".parse().unwrap()));
    }
}
