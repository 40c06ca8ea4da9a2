//! Holds the dependency rule of ARCHITECTURE.md: each portier crate may depend only on the portier
//! crates listed there, and the data plane never sees Kubernetes types.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const ALLOWED: &[(&str, &[&str])] = &[
    ("portier-core", &[]),
    ("portier-model", &["portier-core"]),
    ("portier-provider-files", &["portier-core", "portier-model"]),
    ("portier-snapshot", &["portier-core"]),
    (
        "portier-compile",
        &["portier-core", "portier-model", "portier-snapshot"],
    ),
    ("portier-telemetry", &["portier-core"]),
    (
        "portier-dataplane",
        &["portier-core", "portier-snapshot", "portier-telemetry"],
    ),
    ("portier-admin-api", &["portier-core"]),
    (
        "portier-acme",
        &["portier-core", "portier-snapshot", "portier-telemetry"],
    ),
    (
        "portier-admin",
        &[
            "portier-core",
            "portier-snapshot",
            "portier-telemetry",
            "portier-admin-api",
        ],
    ),
];

/// External crates a portier crate must not depend on directly.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("portier-snapshot", &["k8s-openapi", "kube", "hyper", "tokio"]),
    (
        "portier-dataplane",
        &["k8s-openapi", "kube", "portier-model", "portier-compile"],
    ),
    ("portier-compile", &["hyper", "tokio", "kube"]),
    ("portier-core", &["tokio", "hyper", "k8s-openapi"]),
    (
        "portier-acme",
        &[
            "k8s-openapi",
            "kube",
            "portier-model",
            "portier-compile",
            "portier-dataplane",
        ],
    ),
];

#[test]
fn crate_dependencies_follow_the_pipeline() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages array") {
        let name = pkg["name"].as_str().unwrap_or_default().to_owned();
        let normal: BTreeSet<String> = pkg["dependencies"]
            .as_array()
            .expect("dependencies array")
            .iter()
            .filter(|d| d["kind"].is_null()) // normal dependencies; dev and build deps may differ
            .map(|d| d["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        deps.insert(name, normal);
    }
    let mut problems = Vec::new();
    for (krate, allowed) in ALLOWED {
        let Some(actual) = deps.get(*krate) else {
            problems.push(format!("{krate} is not in the workspace"));
            continue;
        };
        for d in actual.iter().filter(|d| d.starts_with("portier-")) {
            if !allowed.contains(&d.as_str()) {
                problems.push(format!("{krate} depends on {d}, which ARCHITECTURE.md does not allow"));
            }
        }
    }
    for (krate, forbidden) in FORBIDDEN {
        for d in deps.get(*krate).into_iter().flatten() {
            if forbidden.contains(&d.as_str()) {
                problems.push(format!("{krate} must not depend on {d}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
