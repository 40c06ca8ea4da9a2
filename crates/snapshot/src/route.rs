use foldhash::HashMap;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use portier_core::HostMatch;

use crate::{ClusterId, RoutePolicy};

/// Every route of the snapshot, indexed by host.
///
/// Lookup follows the Ingress specification: the exact host wins over a `*.` wildcard (which covers
/// exactly one label), which wins over rules without a host. Within the chosen host the longest
/// matching path wins, and `Exact` wins over `Prefix` at equal length. A host whose paths do not match
/// falls back to the `spec.defaultBackend` of its Ingress, if any; rules without a host fall back to
/// the catch-all default backend. There is no fall-through from one host to another: a request for
/// `www.shop.example` never reaches the routes of `*.shop.example`, as in ingress-nginx.
#[derive(Debug, Default, PartialEq)]
pub struct RouteTable {
    exact: HashMap<Name, HostRoutes>,
    wildcard: HashMap<Name, HostRoutes>,
    any_host: HostRoutes,
    len: usize,
}

/// The routes of one host, longest path first.
///
/// The first route is kept apart from the rest: most hosts have one path, and with thousands of
/// hosts every allocation a lookup reaches into is a cache miss (at 10,000 hosts, each one cost
/// ~1% of a proxied request's CPU).
#[derive(Debug, Default, PartialEq)]
pub struct HostRoutes {
    first: Option<Arc<Route>>,
    rest: Box<[Arc<Route>]>,
    fallback: Option<Arc<Route>>,
}

/// Names this long or shorter are kept inside their owner.
const INLINE: usize = 30;

/// A host name (the key of the host index) or a route's path. One of up to [`INLINE`] bytes
/// (most are) is stored in place: in the map's own slot, in the route, so comparing it reads the
/// line the lookup already fetched instead of a boxed string elsewhere. With 10,000 hosts that
/// line is cold on every request. Looked up, hashed and ordered as its bytes; always UTF-8, as it
/// is made from a `&str`.
#[derive(Clone)]
pub struct Name(NameRepr);

#[derive(Clone)]
enum NameRepr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

/// One path of one Ingress rule, and what to do with a request that matches it.
#[derive(Debug, PartialEq)]
pub struct Route {
    /// The rule's host; `None` for rules without a host and for the catch-all default backend.
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// The path type as written in the Ingress, for views.
    pub path_type: PathType,
    /// `namespace/name` of the Ingress the route comes from: the metric and access-log label.
    pub ingress: Arc<str>,
    /// What the backend is called in metrics and logs: `namespace/service:port`, or
    /// `StaticResponse namespace/name`.
    pub backend: Arc<str>,
    pub action: Action,
    /// Redirect plain-HTTP requests to HTTPS (the host is in the Ingress' `spec.tls`).
    pub https_redirect: bool,
    /// Limits and access rules; shared by every route of one Ingress.
    pub policy: Arc<RoutePolicy>,
    /// What the data plane resolves for this route on its first request and keeps while the
    /// snapshot lives: its metric handles. Not part of what the route means: ignored by `==`.
    pub attached: Attached,
}

/// A slot the data plane fills once per route, so that a request reaches the route's own state
/// through the route it already holds. With 10,000 hosts every request's route is cold, and a
/// lookup in a map of its own beside the route cost ~5 more cache misses per request
/// (callgrind's cache simulation). Typed by the data plane, which the snapshot cannot name.
///
/// It holds an `Arc` so that state shared beyond one snapshot (counts that outlive a reload) is
/// one pointer away from the route, not two.
#[derive(Default)]
pub struct Attached(OnceLock<Arc<dyn Any + Send + Sync>>);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Proxy to the endpoints of a cluster.
    Proxy(ClusterId),
    /// Answer with a fixed response.
    Static(Arc<StaticReply>),
    /// The route exists but its backend cannot be used (missing Service, unknown port, …): 503.
    Unavailable { reason: Arc<str> },
}

/// A fixed response served by the gateway itself.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticReply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A compiled path matcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The whole path, case-sensitive.
    Exact(Name),
    /// Whole path elements. Stored without trailing slashes, so `/` is the empty prefix that
    /// matches everything.
    Prefix(Name),
}

/// `pathType` as the Ingress API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    Exact,
    Prefix,
    /// Matched as `Prefix` until regular-expression paths arrive.
    ImplementationSpecific,
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub route: &'a Arc<Route>,
}

/// Paths a host may have before [`RouteTableBuilder`] indexes them by path.
const SEEN_AFTER: usize = 8;

/// Builds a [`RouteTable`]. Routes of several Ingresses for the same host merge; a second route with
/// the same host, path and match type is refused, so the caller decides who wins (compile adds the
/// oldest Ingress first).
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    hosts: HashMap<Option<HostMatch>, HostBuilder>,
}

#[derive(Debug, Default)]
struct HostBuilder {
    routes: Vec<Arc<Route>>,
    /// Index of each path in `routes`, once the host has more than a few: most hosts have one or
    /// two paths, and a map per host would cost more than the routes.
    seen: Option<HashMap<PathMatch, usize>>,
    fallback: Option<Arc<Route>>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Finds the route for a normalized host (see [`normalize_host`]; empty when the request has no
    /// host) and a request path (without the query).
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.host_routes(host).and_then(|h| h.find(path))
    }

    fn host_routes(&self, host: &str) -> Option<&HostRoutes> {
        if !self.exact.is_empty() {
            if let Some(h) = self.exact.get(host.as_bytes()) {
                return Some(h);
            }
        }
        if !self.wildcard.is_empty() {
            if let Some((first, parent)) = host.split_once('.') {
                if !first.is_empty() {
                    if let Some(h) = self.wildcard.get(parent.as_bytes()) {
                        return Some(h);
                    }
                }
            }
        }
        Some(&self.any_host)
    }

    /// Number of routes, fallbacks included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route in a stable order: exact hosts, wildcard hosts, then rules without host; hosts
    /// sorted by name; within a host in match order, the fallback last.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.entries().map(|(r, _)| r)
    }

    /// Like [`iter`](Self::iter), with `true` for default-backend fallbacks.
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<Route>, bool)> {
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by(|a, b| a.0.cmp(b.0));
        let mut wildcard: Vec<_> = self.wildcard.iter().collect();
        wildcard.sort_by(|a, b| a.0.cmp(b.0));
        exact
            .into_iter()
            .chain(wildcard)
            .map(|(_, h)| h)
            .chain(std::iter::once(&self.any_host))
            .flat_map(|h| {
                h.first
                    .iter()
                    .chain(h.rest.iter())
                    .map(|r| (r, false))
                    .chain(h.fallback.iter().map(|r| (r, true)))
            })
    }
}

// === impl HostRoutes ===

impl HostRoutes {
    fn new(routes: Vec<Arc<Route>>, fallback: Option<Arc<Route>>) -> Self {
        let mut routes = routes.into_iter();
        Self {
            first: routes.next(),
            rest: routes.collect(),
            fallback,
        }
    }

    fn find(&self, path: &str) -> Option<&Arc<Route>> {
        match &self.first {
            Some(r) if r.path.matches(path) => Some(r),
            _ => self.rest.iter().find(|r| r.path.matches(path)),
        }
        .or(self.fallback.as_ref())
    }
}

// === impl Name ===

impl Name {
    fn new(s: &str) -> Self {
        let b = s.as_bytes();
        Name(match u8::try_from(b.len()) {
            Ok(len) if b.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..b.len()].copy_from_slice(b);
                NameRepr::Inline { len, bytes }
            }
            _ => NameRepr::Boxed(b.into()),
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            // `min` rather than a bounds check: no panic path on every compare.
            NameRepr::Inline { len, bytes } => &bytes[..usize::from(*len).min(INLINE)],
            NameRepr::Boxed(b) => b,
        }
    }

    pub fn as_str(&self) -> &str {
        // Made from a `&str`: never fails.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

// Hash, Eq and Ord agree with `[u8]`'s, as `Borrow` requires.
impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl PathMatch ===

impl PathMatch {
    /// Compiles an Ingress path. `ImplementationSpecific` is matched as `Prefix`.
    pub fn new(path_type: PathType, path: &str) -> Self {
        match path_type {
            PathType::Exact => PathMatch::Exact(Name::new(path)),
            PathType::Prefix | PathType::ImplementationSpecific => {
                PathMatch::Prefix(Name::new(path.trim_end_matches('/')))
            }
        }
    }

    /// The catch-all used for default backends.
    pub fn any() -> Self {
        PathMatch::Prefix(Name::new(""))
    }

    // Ingress spec: `Prefix` matches element by element, so "/foo" matches "/foo" and "/foo/bar" but
    // not "/foobar"; a trailing slash on either side is ignored.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p.as_bytes() == path.as_bytes(),
            PathMatch::Prefix(p) => {
                let p = p.as_bytes();
                p.is_empty()
                    || match path.as_bytes().strip_prefix(p) {
                        Some(rest) => rest.first().is_none_or(|&b| b == b'/'),
                        None => false,
                    }
            }
        }
    }

    /// Precedence key: longer paths first, `Exact` before `Prefix` at equal length.
    fn precedence(&self) -> (std::cmp::Reverse<usize>, u8) {
        match self {
            PathMatch::Exact(p) => (std::cmp::Reverse(p.len()), 0),
            PathMatch::Prefix(p) => (std::cmp::Reverse(p.len()), 1),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) => p.as_str(),
            PathMatch::Prefix(p) if p.is_empty() => "/",
            PathMatch::Prefix(p) => p.as_str(),
        }
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Exact(p) => write!(f, "= {p}"),
            PathMatch::Prefix(_) => write!(f, "{}*", self.as_str()),
        }
    }
}

// === impl PathType ===

impl PathType {
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

impl std::str::FromStr for PathType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "Exact" => Ok(PathType::Exact),
            "Prefix" => Ok(PathType::Prefix),
            "ImplementationSpecific" => Ok(PathType::ImplementationSpecific),
            _ => Err(()),
        }
    }
}

// === impl RouteTableBuilder ===

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route under its host. Returns the route already holding the same host and path, if any.
    pub fn add(&mut self, route: Route) -> Result<(), Arc<Route>> {
        let host = self.hosts.entry(route.host.clone()).or_default();
        let existing = match &host.seen {
            Some(seen) => seen.get(&route.path).copied(),
            None => host.routes.iter().position(|r| r.path == route.path),
        };
        if let Some(i) = existing {
            return Err(host.routes[i].clone());
        }
        if host.seen.is_none() && host.routes.len() >= SEEN_AFTER {
            host.seen = Some(
                host.routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.path.clone(), i))
                    .collect(),
            );
        }
        if let Some(seen) = host.seen.as_mut() {
            seen.insert(route.path.clone(), host.routes.len());
        }
        host.routes.push(Arc::new(route));
        Ok(())
    }

    /// Sets what serves requests for `route.host` that match none of its paths (for rules without a
    /// host: every request that matches nothing else). Returns the fallback already set, if any.
    pub fn fallback(&mut self, route: Route) -> Result<(), Arc<Route>> {
        let host = self.hosts.entry(route.host.clone()).or_default();
        if let Some(existing) = &host.fallback {
            return Err(existing.clone());
        }
        host.fallback = Some(Arc::new(route));
        Ok(())
    }

    pub fn build(self) -> RouteTable {
        let mut table = RouteTable::default();
        for (host, b) in self.hosts {
            let HostBuilder {
                mut routes, fallback, ..
            } = b;
            // Stable: routes that tie on precedence keep insertion order (cannot happen after the
            // duplicate check, but keeps the table deterministic regardless).
            routes.sort_by_key(|r| r.path.precedence());
            table.len += routes.len() + usize::from(fallback.is_some());
            let hr = HostRoutes::new(routes, fallback);
            match host {
                Some(HostMatch::Exact(h)) => {
                    table.exact.insert(Name::new(h.as_str()), hr);
                }
                Some(HostMatch::Wildcard { parent }) => {
                    table.wildcard.insert(Name::new(parent.as_str()), hr);
                }
                None => table.any_host = hr,
            }
        }
        table
    }
}

/// Normalizes a request's host (`Host` header or `:authority`) for lookup: the port is dropped, ASCII
/// is lower-cased, a trailing dot is removed. Borrows when nothing changes, which is the common case.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        // IPv6 literal: "[::1]:8080" keeps the brackets, drops the port.
        match raw.find(']') {
            Some(i) => &raw[..=i],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    let h = without_port.strip_suffix('.').unwrap_or(without_port);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

// === impl Attached ===

impl Attached {
    /// The value of type `T` in the slot, made by `init` if the slot is empty. `None` when the
    /// slot already holds another type.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> Arc<T>) -> Option<&T> {
        let value: &(dyn Any + Send + Sync) = &**self.0.get_or_init(|| init());
        value.downcast_ref()
    }
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Attached(set)"
        } else {
            "Attached(empty)"
        })
    }
}

impl PartialEq for Attached {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
