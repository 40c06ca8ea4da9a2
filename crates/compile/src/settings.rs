//! Global settings from the ingress-nginx-style ConfigMap named by `--configmap`, and the route
//! policy keys that both the ConfigMap (as defaults) and Ingress annotations (per Ingress) set.
//!
//! Keys keep ingress-nginx's names and meaning. A key portier does not read, or a value it cannot
//! use, is a diagnostic on `data.<key>`: never silently ignored (STYLE.md §3).

use ipnet::IpNet;
use portier_core::{Diagnostic, FieldPath, Kind, ObjectRef, Severity};
use portier_model::Resource;
use portier_snapshot::{GlobalSettings, RoutePolicy, SourceFilter};

use crate::values::{self, CidrList, InvalidValue};
use crate::{Cx, Options};

/// Most header fields a request may carry (`max-header-count`, portier's own key).
const MAX_HEADER_COUNT: u32 = 10_000;
/// Most concurrent HTTP/2 streams per connection: each one holds a request in memory.
const MAX_H2_STREAMS: u32 = 10_000;

/// A route policy being assembled: ConfigMap defaults, then an Ingress' annotations over them.
/// The source ranges stay lists until [`PolicyBuilder::build`], so an annotation replaces the
/// ConfigMap's list instead of adding to it (ingress-nginx semantics).
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyBuilder {
    /// Everything but `source`.
    pub policy: RoutePolicy,
    /// `whitelist-source-range`: `None` when not set; `Some(empty)` when set but no entry is
    /// valid, which fails closed.
    pub allow: Option<Vec<IpNet>>,
    /// `denylist-source-range`.
    pub deny: Vec<IpNet>,
}

/// Where a value comes from, for the wording of diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    ConfigMap,
    Annotation,
}

// === impl PolicyBuilder ===

impl PolicyBuilder {
    /// The policy routes carry. A whitelist with no valid entry denies every address
    /// (`0.0.0.0/0` and `::/0`; IPv4-mapped clients are matched as IPv4): a broken allow list must
    /// not open the route to everyone.
    pub fn build(&self) -> RoutePolicy {
        let source = match &self.allow {
            Some(allow) if allow.is_empty() => Some(SourceFilter {
                allow: Vec::new(),
                deny: deny_all(),
            }),
            allow => {
                let allow = allow.clone().unwrap_or_default();
                (!allow.is_empty() || !self.deny.is_empty()).then(|| SourceFilter {
                    allow,
                    deny: self.deny.clone(),
                })
            }
        };
        RoutePolicy {
            source,
            ..self.policy.clone()
        }
    }

    /// Applies one policy key (`proxy-body-size`, `proxy-*-timeout`, `whitelist-source-range`,
    /// `denylist-source-range`, named without a prefix). Returns `false` when `key` is not one.
    /// An invalid value is reported on `field` and leaves the previous value in place.
    pub fn apply(
        &mut self,
        cx: &mut Cx<'_>,
        res: &Resource,
        field: &FieldPath,
        key: &str,
        value: &str,
        layer: Layer,
    ) -> bool {
        let policy = &mut self.policy;
        match key {
            "proxy-body-size" => {
                if let Some(v) = check(cx, res, field, layer, values::parse_body_size(value), SIZE_HELP) {
                    policy.max_body_bytes = v;
                }
            }
            "proxy-connect-timeout" => set_timeout(cx, res, field, layer, value, &mut policy.connect_timeout),
            "proxy-read-timeout" => set_timeout(cx, res, field, layer, value, &mut policy.read_timeout),
            "proxy-send-timeout" => set_timeout(cx, res, field, layer, value, &mut policy.send_timeout),
            "whitelist-source-range" => {
                let list = values::parse_cidrs(value);
                report_cidrs(cx, res, field, &list, key, true);
                self.allow = Some(list.valid);
            }
            "denylist-source-range" => {
                let list = values::parse_cidrs(value);
                report_cidrs(cx, res, field, &list, key, false);
                self.deny = list.valid;
            }
            _ => return false,
        }
        true
    }
}

/// Reads the ConfigMap named in `opts.configmap` into global settings and the default route
/// policy. Without `--configmap`, or when the ConfigMap is missing, the defaults apply.
pub(crate) fn from_configmap(cx: &mut Cx<'_>, opts: &Options) -> (GlobalSettings, PolicyBuilder) {
    let mut settings = GlobalSettings::default();
    let mut policy = PolicyBuilder::default();
    let Some((ns, name)) = opts.configmap.as_ref() else {
        return (settings, policy);
    };
    let Some((res, cm)) = cx.index.configmaps.get(&(ns.as_str(), name.as_str())).copied() else {
        cx.diags.push(
            Diagnostic::warning("not found; --configmap names it, so the default settings apply")
                .object(ObjectRef::namespaced(Kind::ConfigMap, ns, name))
                .help("create the ConfigMap in the configuration directory, or drop --configmap"),
        );
        return (settings, policy);
    };
    for (key, value) in cm.data.iter().flatten() {
        let field = FieldPath::new("data").field(key);
        let (key, value) = (key.as_str(), value.as_str());
        if policy.apply(cx, res, &field, key, value, Layer::ConfigMap) {
            continue;
        }
        let layer = Layer::ConfigMap;
        let s = &mut settings;
        match key {
            "client-header-timeout" => set_timeout(cx, res, &field, layer, value, &mut s.client_header_timeout),
            "client-body-timeout" => set_timeout(cx, res, &field, layer, value, &mut s.client_body_timeout),
            "upstream-keepalive-timeout" => {
                set_timeout(cx, res, &field, layer, value, &mut s.upstream_keepalive_timeout);
            }
            "keep-alive" => {
                // nginx: `keepalive_timeout 0` turns keep-alive off, so zero is allowed here.
                let parsed = values::parse_duration(value).and_then(|d| {
                    if d > values::MAX_TIMEOUT {
                        Err(InvalidValue::OutOfRange {
                            value: value.trim().to_owned(),
                            allowed: "keep-alive must be at most 7d".into(),
                        })
                    } else {
                        Ok(d)
                    }
                });
                if let Some(d) = check(cx, res, &field, layer, parsed, KEEP_ALIVE_HELP) {
                    s.keep_alive_timeout = d;
                }
            }
            "keep-alive-requests" => {
                set_count(cx, res, &field, value, u32::MAX, &mut s.keep_alive_requests);
            }
            "http2-max-concurrent-streams" => {
                set_count(
                    cx,
                    res,
                    &field,
                    value,
                    MAX_H2_STREAMS,
                    &mut s.http2_max_concurrent_streams,
                );
            }
            "max-header-count" => {
                let mut n = u32::try_from(s.max_header_count).unwrap_or(u32::MAX);
                set_count(cx, res, &field, value, MAX_HEADER_COUNT, &mut n);
                s.max_header_count = n as usize;
            }
            "large-client-header-buffers" => {
                let parsed = values::parse_header_buffers(value);
                if let Some(b) = check(cx, res, &field, layer, parsed, BUFFERS_HELP) {
                    s.max_header_bytes = b.total;
                    s.max_header_line_bytes = b.line;
                }
            }
            other => {
                cx.report(
                    Severity::Warning,
                    res,
                    field,
                    format!("key {other} is not supported by portier and has no effect"),
                )
                .set_help("remove it, or see docs/configuration.md for the ConfigMap keys portier reads");
            }
        }
    }
    if let Some(binary) = cm.binary_data.as_ref().filter(|b| !b.is_empty()) {
        let keys: Vec<&str> = binary.keys().map(String::as_str).collect();
        cx.report(
            Severity::Warning,
            res,
            FieldPath::new("binaryData"),
            format!("binaryData is not read and has no effect (keys: {})", keys.join(", ")),
        )
        .set_help("put settings under data as strings");
    }
    settings.default_policy = policy.build();
    (settings, policy)
}

const SIZE_HELP: &str = "use an nginx size such as 1m, 512k or 10g (bytes without a suffix); 0 means unlimited";
const TIMEOUT_HELP: &str =
    "use seconds (60) or nginx time units (500ms, 10s, 2m, 1h); a timeout is more than 0 and at most 7d";
const KEEP_ALIVE_HELP: &str =
    "use seconds (75) or nginx time units (500ms, 10s, 2m, 1h), at most 7d; 0 turns client keep-alive off";
const BUFFERS_HELP: &str =
    "use NUMBER SIZE as nginx does, such as \"4 8k\"; portier limits the request head to their product, from 1k to 1m";

fn deny_all() -> Vec<IpNet> {
    vec![
        IpNet::V4(ipnet::Ipv4Net::default()),
        IpNet::V6(ipnet::Ipv6Net::default()),
    ]
}

/// Reports an invalid value; `Some` with the parsed value otherwise.
fn check<T>(
    cx: &mut Cx<'_>,
    res: &Resource,
    field: &FieldPath,
    layer: Layer,
    parsed: Result<T, InvalidValue>,
    help: &str,
) -> Option<T> {
    match parsed {
        Ok(v) => Some(v),
        Err(e) => {
            let fallback = match layer {
                Layer::ConfigMap => "the default applies",
                Layer::Annotation => "the ConfigMap value or the default applies",
            };
            cx.report(Severity::Error, res, field.clone(), format!("{e}; {fallback}"))
                .set_help(help);
            None
        }
    }
}

fn set_timeout(
    cx: &mut Cx<'_>,
    res: &Resource,
    field: &FieldPath,
    layer: Layer,
    value: &str,
    slot: &mut std::time::Duration,
) {
    if let Some(d) = check(cx, res, field, layer, values::parse_timeout(value), TIMEOUT_HELP) {
        *slot = d;
    }
}

fn set_count(cx: &mut Cx<'_>, res: &Resource, field: &FieldPath, value: &str, max: u32, slot: &mut u32) {
    let help = format!("use a whole number from 1 to {max}");
    if let Some(n) = check(
        cx,
        res,
        field,
        Layer::ConfigMap,
        values::parse_count(value, 1, max),
        &help,
    ) {
        *slot = n;
    }
}

/// One error per invalid entry. The help says what the rest of the list does, because for an
/// allow list that is the difference between "some clients" and "nobody".
fn report_cidrs(cx: &mut Cx<'_>, res: &Resource, field: &FieldPath, list: &CidrList, key: &str, is_allow: bool) {
    let help = match (list.valid.is_empty(), is_allow) {
        (false, _) => "the valid entries still apply; fix or remove this one".to_owned(),
        (true, true) => format!(
            "no entry of {key} is valid, so portier fails closed: every client gets 403 until the list is fixed"
        ),
        (true, false) => format!("no entry of {key} is valid, so no client is denied"),
    };
    for e in &list.invalid {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            format!("{e}; the entry is left out"),
        )
        .set_help(help.clone());
    }
    if is_allow && list.valid.is_empty() && list.invalid.is_empty() {
        cx.report(
            Severity::Error,
            res,
            field.clone(),
            format!("{key} is set but lists no address"),
        )
        .set_help(help);
    }
}
