//! Route lookup never panics, whatever the table and the request (STYLE.md §6, §12).
//!
//! Input layout: up to 16 leading bytes describe routes (low bits: path type, high bit: default
//! backend instead of a path). The rest is text split on '\n': first a host and a path for each
//! route (an empty host is a rule without host; an invalid one is left out, as compile does), then
//! request host and path pairs, looked up after `normalize_host` as the data plane does.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portier_core::HostMatch;
use portier_snapshot::{normalize_host, Action, PathMatch, PathType, Route, RouteTableBuilder, RoutePolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(count % 16).min(rest.len());
    let (spec, text) = rest.split_at(n);
    let text = String::from_utf8_lossy(text);
    let mut lines = text.split('\n');
    let policy = Arc::new(RoutePolicy::default());
    let mut builder = RouteTableBuilder::new();
    for &b in spec {
        let host = lines.next().unwrap_or_default();
        let path = lines.next().unwrap_or("/");
        let host = if host.is_empty() {
            None
        } else {
            match host.parse::<HostMatch>() {
                Ok(h) => Some(h),
                Err(_) => continue,
            }
        };
        let path_type = match b % 3 {
            0 => PathType::Exact,
            1 => PathType::Prefix,
            _ => PathType::ImplementationSpecific,
        };
        let fallback = b & 0x80 != 0;
        let route = Route {
            host,
            path: if fallback { PathMatch::any() } else { PathMatch::new(path_type, path) },
            path_type,
            ingress: "fuzz/ingress".into(),
            backend: "fuzz/backend:80".into(),
            action: Action::Unavailable { reason: "fuzz".into() },
            https_redirect: false,
            policy: policy.clone(),
            attached: Default::default(),
        };
        let _ = if fallback { builder.fallback(route) } else { builder.add(route) };
    }
    let table = builder.build();
    let _ = table.len();
    while let (Some(host), Some(path)) = (lines.next(), lines.next()) {
        let host = normalize_host(host);
        if let Some(route) = table.find(&host, path) {
            let _ = route.path.as_str();
        }
    }
});
