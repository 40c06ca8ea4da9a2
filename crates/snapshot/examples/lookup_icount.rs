//! Route lookups for an instruction-count regression check (`scripts/icount.sh`, run under
//! valgrind; the budget is `bench/icount-budget`). Wall time is not measured here: on shared CI
//! machines it is noise, while valgrind's instruction counts are (almost) deterministic.
//!
//! ```text
//! lookup_icount HOSTS CASE N
//! ```
//!
//! builds a route table of `HOSTS` hosts (every tenth a `*.` wildcard, four paths each), then does
//! `N` lookups of `CASE`:
//!
//! | case       | host                                   | path                                    |
//! |------------|----------------------------------------|-----------------------------------------|
//! | `exact`    | an exact host of the table             | `/api/v1/items` (a Prefix route)         |
//! | `wildcard` | `xI.` + a wildcard host's parent       | `/api/v1/items`                         |
//! | `miss`     | a host and a parent the table lacks    | `/api/v1/items`                         |
//! | `long`     | an exact host                          | a 12-segment path under `/api/v3/items` |
//!
//! Each case cycles through 1,024 different hosts (and, for `miss`, parents), so the hash map's
//! probe lengths (which depend on std's random hash keys) average out and the count repeats from
//! run to run. Everything but the lookups (building the table and the query list) is the same for
//! every `N`, so `(Ir(N) - Ir(0)) / N` is the cost of one lookup.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;

use portier_core::HostMatch;
use portier_snapshot::{Action, ClusterId, PathMatch, PathType, Route, RouteTable, RouteTableBuilder};

const PATHS: [&str; 4] = ["/", "/api/v1/items", "/api/v2", "/api/v3/items"];
const DISTINCT_QUERIES: usize = 1024;

fn is_wildcard(h: usize) -> bool {
    h % 10 == 9
}

fn table(hosts: usize) -> RouteTable {
    let mut b = RouteTableBuilder::new();
    let ingress: Arc<str> = "bench/ing".into();
    let backend: Arc<str> = "bench/svc:80".into();
    for h in 0..hosts {
        let host = if is_wildcard(h) {
            format!("*.w{h}.example.test")
        } else {
            format!("h{h}.example.test")
        };
        for (i, path) in PATHS.iter().enumerate() {
            let path_type = if i == 2 { PathType::Exact } else { PathType::Prefix };
            let added = b.add(Route {
                host: Some(host.parse::<HostMatch>().expect("synthetic host is valid")),
                path: PathMatch::new(path_type, path),
                path_type,
                ingress: ingress.clone(),
                backend: backend.clone(),
                action: Action::Proxy(ClusterId::new(0)),
                https_redirect: false,
                policy: Default::default(),
                attached: Default::default(),
            });
            assert!(added.is_ok(), "synthetic routes do not conflict");
        }
    }
    b.build()
}

/// The (host, path) pairs of one case: `DISTINCT_QUERIES` hosts spread over the table.
fn queries(hosts: usize, case: &str) -> Option<Vec<(String, String)>> {
    let exact: Vec<usize> = (0..hosts).filter(|&h| !is_wildcard(h)).collect();
    let wild: Vec<usize> = (0..hosts).filter(|&h| is_wildcard(h)).collect();
    let pick = |from: &[usize], i: usize| from[i * from.len() / DISTINCT_QUERIES % from.len()];
    let long = "/api/v3/items/2024/06/01/orders/42/lines/7/details/extra/more";
    (0..DISTINCT_QUERIES)
        .map(|i| {
            Some(match case {
                "exact" => (format!("h{}.example.test", pick(&exact, i)), "/api/v1/items".to_owned()),
                "wildcard" => (
                    format!("x{i}.w{}.example.test", pick(&wild, i)),
                    "/api/v1/items".to_owned(),
                ),
                "miss" => (format!("nowhere.m{i}.example.test"), "/api/v1/items".to_owned()),
                "long" => (format!("h{}.example.test", pick(&exact, i)), long.to_owned()),
                _ => return None,
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [hosts, case, n] => hosts
            .parse::<usize>()
            .ok()
            .zip(n.parse::<u64>().ok())
            .map(|(h, n)| (h, case, n)),
        _ => None,
    };
    let Some((hosts, case, n)) = parsed.filter(|(h, _, _)| *h >= 10) else {
        eprintln!("usage: lookup_icount HOSTS(>=10) exact|wildcard|miss|long N");
        return ExitCode::from(2);
    };
    let table = table(hosts);
    let Some(queries) = queries(hosts, case) else {
        eprintln!("unknown case {case:?}: exact, wildcard, miss or long");
        return ExitCode::from(2);
    };
    // Every query must behave as its case says, or the figure measures something else.
    for (host, path) in &queries {
        let found = table.find(host, path).map(|r| r.path.as_str().to_owned());
        let want = match case.as_str() {
            "exact" | "wildcard" => Some("/api/v1/items"),
            "miss" => None,
            _ => Some("/api/v3/items"),
        };
        assert_eq!(found.as_deref(), want, "{case}: {host}{path}");
    }

    let mut hits = 0u64;
    let mut i = 0;
    for _ in 0..n {
        let (host, path) = &queries[i];
        if black_box(&table)
            .find(black_box(host.as_str()), black_box(path.as_str()))
            .is_some()
        {
            hits += 1;
        }
        i = (i + 1) % DISTINCT_QUERIES;
    }
    black_box(hits);
    ExitCode::SUCCESS
}
