use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn route(host: Option<&str>, path_type: PathType, path: &str, backend: &str) -> Route {
    Route {
        host: host.map(|h| h.parse().expect("test host is valid")),
        path: PathMatch::new(path_type, path),
        path_type,
        ingress: "ns/ing".into(),
        backend: backend.into(),
        action: Action::Unavailable { reason: "test".into() },
        https_redirect: false,
        policy: Default::default(),
        attached: Default::default(),
    }
}

fn table(routes: Vec<Route>) -> RouteTable {
    let mut b = RouteTableBuilder::new();
    for r in routes {
        b.add(r).expect("no duplicates in test tables");
    }
    b.build()
}

fn backend_of(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    t.find(host, path).map(|r| r.backend.to_string())
}

#[test]
fn prefix_matches_whole_elements() {
    // Ingress spec, "Examples" table of path matching.
    let cases = [
        ("/", "/anything", true),
        ("/foo", "/foo", true),
        ("/foo", "/foo/", true),
        ("/foo", "/foo/bar", true),
        ("/foo", "/foobar", false),
        ("/foo/", "/foo", true),
        ("/foo/", "/foo/bar", true),
        ("/aaa/bb", "/aaa/bbb", false),
        ("/aaa/bbb", "/aaa/bbb/ccc", true),
        ("/aaa/bbb", "/aaa/bbbxyz", false),
        ("/foo", "/Foo", false),
    ];
    for (prefix, path, want) in cases {
        let m = PathMatch::new(PathType::Prefix, prefix);
        assert_eq!(m.matches(path), want, "Prefix {prefix} vs {path}");
        let m = PathMatch::new(PathType::ImplementationSpecific, prefix);
        assert_eq!(m.matches(path), want, "ImplementationSpecific {prefix} vs {path}");
    }
}

#[test]
fn exact_matches_whole_path_only() {
    let cases = [
        ("/foo", "/foo", true),
        ("/foo", "/foo/", false),
        ("/foo", "/bar", false),
        ("/foo/", "/foo", false),
    ];
    for (exact, path, want) in cases {
        assert_eq!(
            PathMatch::new(PathType::Exact, exact).matches(path),
            want,
            "Exact {exact} vs {path}"
        );
    }
}

#[test]
fn precedence_within_a_host() {
    let t = table(vec![
        route(Some("a.example"), PathType::Prefix, "/", "root"),
        route(Some("a.example"), PathType::Prefix, "/api", "api-prefix"),
        route(Some("a.example"), PathType::Exact, "/api", "api-exact"),
        route(Some("a.example"), PathType::Prefix, "/api/v1", "v1"),
    ]);
    let cases = [
        ("/", Some("root")),
        ("/api", Some("api-exact")),
        ("/api/", Some("api-prefix")),
        ("/api/x", Some("api-prefix")),
        ("/api/v1/x", Some("v1")),
        ("/apix", Some("root")),
    ];
    for (path, want) in cases {
        assert_eq!(backend_of(&t, "a.example", path).as_deref(), want, "{path}");
    }
}

#[test]
fn host_precedence() {
    let mut b = RouteTableBuilder::new();
    for r in [
        route(Some("www.shop.example"), PathType::Prefix, "/exact", "exact"),
        route(Some("*.shop.example"), PathType::Prefix, "/", "wild"),
        route(None, PathType::Prefix, "/", "any"),
    ] {
        b.add(r).unwrap();
    }
    b.fallback(route(None, PathType::Prefix, "/", "default")).unwrap();
    b.fallback(route(Some("www.shop.example"), PathType::Prefix, "/", "www-default"))
        .unwrap();
    let t = b.build();
    let cases = [
        ("www.shop.example", "/exact", Some("exact")),
        // The exact host has no "/" path: its own default backend serves, not the wildcard.
        ("www.shop.example", "/other", Some("www-default")),
        ("api.shop.example", "/x", Some("wild")),
        ("a.b.shop.example", "/x", Some("any")),
        ("shop.example", "/x", Some("any")),
        ("", "/x", Some("any")),
    ];
    for (host, path, want) in cases {
        assert_eq!(backend_of(&t, host, path).as_deref(), want, "{host}{path}");
    }
}

#[test]
fn hosts_short_and_long_are_found_and_listed_in_order() {
    // Around the inline key's 30 bytes: names up to it live in the map slot, longer ones boxed.
    let names: Vec<String> = [
        "a.example".to_owned(),
        format!("{}.example", "b".repeat(21)), // 29 bytes
        format!("{}.example", "c".repeat(22)), // 30
        format!("{}.example", "d".repeat(23)), // 31
        format!("{}.{}.example", "e".repeat(40), "f".repeat(15)),
        format!("{}.example", vec!["g".repeat(47); 4].join(".")),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        names.iter().map(String::len).collect::<Vec<_>>(),
        [9, 29, 30, 31, 64, 199]
    );
    let mut routes: Vec<Route> = names.iter().map(|h| route(Some(h), PathType::Prefix, "/", h)).collect();
    routes.push(route(Some("*.a.example"), PathType::Prefix, "/", "wild"));
    routes.push(route(
        Some(&format!("*.{}.example", "w".repeat(40))),
        PathType::Prefix,
        "/",
        "long-wild",
    ));
    let t = table(routes);
    for h in &names {
        assert_eq!(backend_of(&t, h, "/x").as_deref(), Some(h.as_str()));
        assert_eq!(backend_of(&t, &format!("{h}x"), "/x"), None);
    }
    assert_eq!(backend_of(&t, "b.a.example", "/").as_deref(), Some("wild"));
    let long = format!("x.{}.example", "w".repeat(40));
    assert_eq!(backend_of(&t, &long, "/").as_deref(), Some("long-wild"));
    let mut sorted = names.clone();
    sorted.sort();
    let listed: Vec<String> = t.iter().take(names.len()).map(|r| r.backend.to_string()).collect();
    assert_eq!(listed, sorted);
}

#[test]
fn unmatched_is_none_without_default_backend() {
    let t = table(vec![route(Some("a.example"), PathType::Prefix, "/app", "app")]);
    assert_eq!(backend_of(&t, "a.example", "/other"), None);
    assert_eq!(backend_of(&t, "b.example", "/app"), None);
}

#[test]
fn duplicate_path_is_refused() {
    let mut b = RouteTableBuilder::new();
    b.add(route(Some("a.example"), PathType::Prefix, "/x/", "first"))
        .unwrap();
    let existing = b
        .add(route(Some("a.example"), PathType::Prefix, "/x", "second"))
        .unwrap_err();
    assert_eq!(&*existing.backend, "first");
    // Same path, other type: both are kept.
    b.add(route(Some("a.example"), PathType::Exact, "/x", "exact")).unwrap();
}

#[test]
fn normalize_host_cases() {
    let cases = [
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        ("example.com.", "example.com"),
        ("example.com.:443", "example.com"),
        ("[::1]:8080", "[::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("", ""),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_host(raw), want, "{raw}");
    }
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-c]{1,3}", 0..4).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    #[test]
    fn exact_host_beats_wildcard(label in "[a-z]{1,12}", zone in "[a-z]{1,12}\\.example", path in arb_path()) {
        let t = table(vec![
            route(Some(&format!("*.{zone}")), PathType::Prefix, "/", "wild"),
            route(Some(&format!("{label}.{zone}")), PathType::Prefix, "/", "exact"),
        ]);
        let got = backend_of(&t, &format!("{label}.{zone}"), &path);
        prop_assert_eq!(got.as_deref(), Some("exact"));
    }

    #[test]
    fn longest_prefix_wins(prefixes in prop::collection::btree_set(arb_path(), 1..6), path in arb_path()) {
        let t = table(prefixes.iter().map(|p| route(Some("h.example"), PathType::Prefix, p, p)).collect());
        let want = prefixes
            .iter()
            .filter(|p| PathMatch::new(PathType::Prefix, p).matches(&path))
            .max_by_key(|p| p.trim_end_matches('/').len())
            .cloned();
        prop_assert_eq!(backend_of(&t, "h.example", &path), want);
    }

    #[test]
    fn insertion_order_does_not_matter(mut paths in prop::collection::btree_set(arb_path(), 1..6), probe in arb_path(), seed in any::<u64>()) {
        let list: Vec<String> = std::mem::take(&mut paths).into_iter().collect();
        let mut shuffled = list.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let build = |ps: &[String]| {
            let mut b = RouteTableBuilder::new();
            for p in ps {
                let _ = b.add(route(Some("h.example"), PathType::Prefix, p, p));
                let _ = b.add(route(Some("h.example"), PathType::Exact, p, &format!("={p}")));
            }
            b.build()
        };
        prop_assert_eq!(backend_of(&build(&list), "h.example", &probe), backend_of(&build(&shuffled), "h.example", &probe));
    }

    #[test]
    fn lookup_never_panics(host in ".{0,40}", path in ".{0,60}") {
        let t = table(vec![
            route(Some("a.example"), PathType::Prefix, "/", "a"),
            route(Some("*.example"), PathType::Exact, "/x", "w"),
            route(None, PathType::Prefix, "/p", "any"),
        ]);
        let _ = t.find(&normalize_host(&host), &path);
    }
}

#[test]
fn routes_are_shared_not_copied() {
    let t = table(vec![route(Some("a.example"), PathType::Prefix, "/", "a")]);
    let r = t.find("a.example", "/").unwrap();
    assert_eq!(Arc::strong_count(r), 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn paths_short_and_long_match_alike() {
    // Around the inline name's 30 bytes, for both path types.
    for n in [1, 28, 29, 30, 31, 120] {
        let p = format!("/{}", "p".repeat(n));
        let prefix = PathMatch::new(PathType::Prefix, &format!("{p}/"));
        let exact = PathMatch::new(PathType::Exact, &p);
        assert_eq!(prefix.as_str(), p);
        assert_eq!(exact.as_str(), p);
        for (path, prefix_matches, exact_matches) in [
            (p.clone(), true, true),
            (format!("{p}/"), true, false),
            (format!("{p}/x"), true, false),
            (format!("{p}x"), false, false),
            (p[..p.len() - 1].to_owned(), false, false),
        ] {
            assert_eq!(prefix.matches(&path), prefix_matches, "{prefix} against {path}");
            assert_eq!(exact.matches(&path), exact_matches, "{exact} against {path}");
        }
    }
    assert_eq!(format!("{:?}", PathMatch::new(PathType::Exact, "/a")), r#"Exact("/a")"#);
}

#[test]
fn attached_state_is_made_once_and_ignored_by_equality() {
    let a = route(Some("a.example"), PathType::Prefix, "/", "b");
    let b = route(Some("a.example"), PathType::Prefix, "/", "b");
    let mut made = 0;
    for _ in 0..3 {
        let v = a.attached.get_or_init(|| {
            made += 1;
            Arc::new(7_u32)
        });
        assert_eq!(v, Some(&7));
    }
    assert_eq!(made, 1);
    // Another type finds the slot taken.
    assert_eq!(a.attached.get_or_init(|| Arc::new("other")), None);
    assert_eq!(a, b);
}
