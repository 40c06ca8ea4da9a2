//! Route lookup cost as the table grows (100 / 10,000 / 100,000 routes). Decides whether RouteTable
//! needs more than a host hash map plus a short per-host path list (ARCHITECTURE.md, routing).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use portier_core::HostMatch;
use portier_snapshot::{Action, ClusterId, PathMatch, PathType, Route, RouteTable, RouteTableBuilder};

const PATHS_PER_HOST: usize = 10;

/// `n` routes: `n / 10` hosts with ten paths each, one in ten hosts a wildcard.
fn synthetic_table(n: usize) -> RouteTable {
    let mut b = RouteTableBuilder::new();
    let hosts = (n / PATHS_PER_HOST).max(1);
    let ingress: Arc<str> = "bench/ing".into();
    let backend: Arc<str> = "bench/svc:80".into();
    for h in 0..hosts {
        let host = if h % 10 == 9 {
            format!("*.w{h}.example.test")
        } else {
            format!("h{h}.example.test")
        };
        for p in 0..PATHS_PER_HOST {
            let path = format!("/api/v{p}/items");
            let _ = b.add(Route {
                host: Some(host.parse::<HostMatch>().expect("synthetic host is valid")),
                path: PathMatch::new(PathType::Prefix, &path),
                path_type: PathType::Prefix,
                ingress: ingress.clone(),
                backend: backend.clone(),
                action: Action::Proxy(ClusterId::new(0)),
                https_redirect: false,
                policy: Default::default(),
                attached: Default::default(),
            });
        }
    }
    b.build()
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [100, 10_000, 100_000] {
        let table = synthetic_table(n);
        let hosts = (n / PATHS_PER_HOST).max(1);
        // A host in the middle of the table, a path that matches the 6th of its 10 routes.
        let exact = format!("h{}.example.test", hosts / 2 - usize::from(hosts / 2 % 10 == 9));
        group.bench_with_input(BenchmarkId::new("exact_host", n), &table, |b, t| {
            b.iter(|| t.find(black_box(&exact), black_box("/api/v5/items/42")))
        });
        let wild = format!("x.w{}.example.test", (hosts / 10) * 10 - 1);
        group.bench_with_input(BenchmarkId::new("wildcard_host", n), &table, |b, t| {
            b.iter(|| t.find(black_box(&wild), black_box("/api/v5/items/42")))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &table, |b, t| {
            b.iter(|| t.find(black_box("nowhere.example.test"), black_box("/api/v5/items/42")))
        });
    }
    group.finish();
}

criterion_group!(benches, route_lookup);
criterion_main!(benches);
