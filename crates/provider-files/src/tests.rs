use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portier_core::{FieldPath, Kind, ObjectRef};
use portier_model::{Change, Resource, Stored};

use super::*;

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
    - name: http
      port: 80
";

const INGRESS: &str = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules:
    - host: shop.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: web
                port:
                  number: 80
";

fn service(name: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n    - port: 80\n")
}

fn ids(resources: &[Resource]) -> Vec<String> {
    resources.iter().map(|r| r.id.to_string()).collect()
}

fn resync(change: Change) -> (Vec<Arc<Resource>>, Vec<portier_core::Diagnostic>) {
    match change {
        Change::Resync { resources, diagnostics } => (resources, diagnostics),
        other => panic!("scan returned {other:?}, want Resync"),
    }
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

#[test]
fn spans_point_at_values() {
    let text = format!("{SERVICE}---\n{INGRESS}");
    let parsed = parse_manifests("m/app.yaml", &text);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(ids(&parsed.resources), ["Service shop/web", "Ingress shop/web"]);
    let ingress = &parsed.resources[1];
    let cases = [
        // The second document starts on line 11.
        ("", (11, 1)),
        ("metadata.name", (14, 9)),
        ("spec.rules[0].host", (18, 13)),
        ("spec.rules[0].http.paths[0]", (21, 13)),
        ("spec.rules[0].http.paths[0].backend.service.port", (27, 19)),
        ("spec.rules[0].http.paths[0].backend.service.port.number", (27, 27)),
        // No position of its own: the nearest ancestor's.
        ("spec.rules[0].http.paths[0].backend.service.port.name", (27, 19)),
        ("spec.tls", (17, 3)),
    ];
    for (path, (line, col)) in cases {
        let span = ingress.origin.span(&FieldPath::new(path)).unwrap();
        assert_eq!(&*span.file, "m/app.yaml", "{path}");
        assert_eq!((span.line, span.col), (line, col), "{path}");
    }
}

/// (row, input, message contains, field, line:col, help contains)
type DiagnosticCase = (
    &'static str,
    String,
    &'static str,
    Option<&'static str>,
    (u32, u32),
    Option<&'static str>,
);

#[test]
fn bad_documents_become_diagnostics() {
    let ingress_with = |from: &str, to: &str| INGRESS.replace(from, to);
    let cases: Vec<DiagnosticCase> = vec![
        (
            "wrong type",
            ingress_with("pathType: Prefix", "pathType: 7"),
            "invalid type: integer `7`",
            Some("spec.rules[0].http.paths[0].pathType"),
            (12, 23),
            None,
        ),
        (
            "extensions/v1beta1",
            ingress_with("networking.k8s.io/v1", "extensions/v1beta1"),
            "apiVersion extensions/v1beta1 of Ingress is not supported",
            Some("apiVersion"),
            (1, 13),
            Some("use apiVersion networking.k8s.io/v1"),
        ),
        (
            "networking v1beta1",
            ingress_with("networking.k8s.io/v1", "networking.k8s.io/v1beta1"),
            "not supported",
            Some("apiVersion"),
            (1, 13),
            Some("use apiVersion networking.k8s.io/v1"),
        ),
        (
            "service in apps/v1",
            SERVICE.replace("v1", "apps/v1"),
            "apiVersion apps/v1 of Service is not supported",
            Some("apiVersion"),
            (1, 13),
            Some("use apiVersion v1"),
        ),
        (
            "missing kind",
            "apiVersion: v1\nmetadata:\n  name: x\n".to_owned(),
            "document has no kind",
            Some("kind"),
            (1, 1),
            Some("set kind"),
        ),
        (
            "missing apiVersion",
            "\n\nkind: Service\n".to_owned(),
            "document has no apiVersion",
            Some("apiVersion"),
            (3, 1),
            None,
        ),
        (
            "kind not a string",
            "apiVersion: v1\nkind: [Service]\n".to_owned(),
            "kind must be a non-empty string",
            Some("kind"),
            (2, 7),
            None,
        ),
        (
            "missing name",
            "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: shop\n".to_owned(),
            "Service has no name",
            Some("metadata.name"),
            (4, 3),
            Some("set metadata.name"),
        ),
        (
            "not a mapping",
            "- a\n- b\n".to_owned(),
            "document is not a mapping",
            None,
            (1, 1),
            None,
        ),
        (
            "duplicate key",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n".to_owned(),
            "mapping key \"name\" appears twice",
            None,
            (5, 3),
            Some("remove one"),
        ),
        (
            "bad tag",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: !!int web\n".to_owned(),
            "\"web\" is not a valid !!int",
            None,
            (4, 9),
            None,
        ),
        (
            "syntax error",
            format!("{SERVICE}---\nkey: [unclosed\n"),
            "invalid YAML",
            None,
            (12, 1),
            None,
        ),
        (
            "too deep",
            format!("a: {}{}", "[".repeat(200), "]".repeat(200)),
            "nesting is deeper than 128 levels",
            None,
            (1, 131),
            None,
        ),
    ];
    for (row, input, message, field, (line, col), help) in cases {
        let parsed = parse_manifests("app.yaml", &input);
        let [d] = parsed.diagnostics.as_slice() else {
            panic!("{row}: want one diagnostic, got {:#?}", parsed.diagnostics);
        };
        assert!(d.message.contains(message), "{row}: message {:?}", d.message);
        assert_eq!(d.field.as_ref().map(FieldPath::as_str), field, "{row}: field");
        let span = d.span.as_ref().unwrap_or_else(|| panic!("{row}: no span"));
        assert_eq!(
            (&*span.file, span.line, span.col),
            ("app.yaml", line, col),
            "{row}: span"
        );
        if let Some(help) = help {
            let got = d.help.as_deref().unwrap_or_default();
            assert!(got.contains(help), "{row}: help {got:?}");
        }
        assert!(!d.message.ends_with('.'), "{row}: message ends with a period");
        // A syntax error drops the good first document too.
        assert!(parsed.resources.is_empty(), "{row}: {:?}", ids(&parsed.resources));
    }
}

#[test]
fn decode_error_names_the_object() {
    let parsed = parse_manifests("app.yaml", &INGRESS.replace("number: 80", "number: eighty"));
    let [d] = parsed.diagnostics.as_slice() else {
        panic!("{:#?}", parsed.diagnostics)
    };
    assert_eq!(d.object, Some(ObjectRef::namespaced(Kind::Ingress, "shop", "web")));
    assert_eq!(
        d.to_string().lines().next(),
        Some("error: Ingress shop/web: spec.rules[0].http.paths[0].backend.service.port.number: invalid type: string \"eighty\", expected i32")
    );
}

#[test]
fn documents_that_are_skipped_silently() {
    let cases = [
        ("empty", ""),
        ("separators", "---\n---\n"),
        ("comments", "# nothing here\n"),
        ("trailing separator", "---\n# end\n---\n"),
        (
            "unknown kind",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        ),
        ("explicit end", "...\n"),
    ];
    for (row, input) in cases {
        let parsed = parse_manifests("a.yaml", input);
        assert!(parsed.diagnostics.is_empty(), "{row}: {:?}", parsed.diagnostics);
        assert!(parsed.resources.is_empty(), "{row}");
    }
}

#[test]
fn objects_read_like_kubectl_reads_them() {
    let cases = [
        ("namespace defaults", service("a"), "Service default/a"),
        (
            "cluster-scoped",
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portier\n  namespace: x\n".to_owned(),
            "IngressClass portier",
        ),
        (
            "flow style and quoting",
            "{apiVersion: \"v1\", kind: 'Service', metadata: {name: a, namespace: b}}".to_owned(),
            "Service b/a",
        ),
        (
            "integer keys become strings",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    1: x\ndata:\n  true: yes\n".to_owned(),
            "ConfigMap default/c",
        ),
        (
            "anchors and merge keys",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: &n c\n  labels: &l {a: x}\n  annotations:\n    <<: *l\n    b: *n\n".to_owned(),
            "ConfigMap default/c",
        ),
        (
            "static response",
            "apiVersion: portier.dev/v1alpha1\nkind: StaticResponse\nmetadata: {name: maint}\nspec: {statusCode: 503, body: down}\n".to_owned(),
            "StaticResponse default/maint",
        ),
    ];
    for (row, input, want) in cases {
        let parsed = parse_manifests("a.yaml", &input);
        assert!(parsed.diagnostics.is_empty(), "{row}: {:?}", parsed.diagnostics);
        assert_eq!(ids(&parsed.resources), [want], "{row}");
    }
}

#[test]
fn keys_and_merges_keep_their_values() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    1: x\n  annotations:\n    <<: [{a: base, b: base}]\n    b: own\ndata:\n  true: yes\n  port: \"80\"\n";
    let parsed = parse_manifests("a.yaml", text);
    let Some(Stored::ConfigMap(cm)) = parsed.resources.first().map(|r| &r.object) else {
        panic!("{:?}", parsed.diagnostics)
    };
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("1").map(String::as_str), Some("x"));
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("a").map(String::as_str), Some("base"));
    assert_eq!(annotations.get("b").map(String::as_str), Some("own"));
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.get("true").map(String::as_str), Some("yes"));
    assert_eq!(data.get("port").map(String::as_str), Some("80"));
}

#[test]
fn alias_bomb_is_rejected_fast() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, prev) in ('b'..='j').zip('a'..) {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        bomb.push_str(&format!("{i}: &{i} [{refs}]\n"));
    }
    let started = Instant::now();
    let parsed = parse_manifests("bomb.yaml", &bomb);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(parsed.resources.is_empty());
    let [d] = parsed.diagnostics.as_slice() else {
        panic!("{:#?}", parsed.diagnostics)
    };
    assert!(d.message.contains("aliases expand to more than"), "{}", d.message);
}

#[test]
fn odd_input_does_not_panic() {
    let deep_flow = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_block = (0..200).map(|i| format!("{}- x\n", "  ".repeat(i))).collect::<String>();
    let deep_map = (0..200).map(|i| format!("{}k:\n", "  ".repeat(i))).collect::<String>();
    let inputs = [
        "",
        "---",
        "- a",
        "a: [",
        "\t",
        "*unknown",
        "&a [*a]",
        "? [a]\n: b\n",
        "--- !!map\n!!str a: !!seq []\n",
        "%YAML 1.2\n---\nx\n",
        "a: &x 1\n---\nb: *x\n",
        "\u{feff}apiVersion: v1",
        "key: \"\\uD800\"",
        deep_flow.as_str(),
        deep_block.as_str(),
        deep_map.as_str(),
    ];
    for input in inputs {
        let _ = parse_manifests("x.yaml", input);
    }
}

#[test]
fn scan_keeps_objects_of_a_file_that_stops_parsing() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &format!("{}---\n{}", service("a1"), service("a2")),
    );
    write(dir.path(), "b.yaml", &service("b"));
    let mut provider = FileProvider::new(dir.path());

    let (resources, diagnostics) = resync(provider.scan().unwrap());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(resources.len(), 3);

    // Half-saved edit: a syntax error in a.yaml, and b.yaml deleted.
    write(dir.path(), "a.yaml", &format!("{}---\nspec: [", service("a1")));
    fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let (resources, diagnostics) = resync(provider.scan().unwrap());
    let names: Vec<_> = resources.iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(names, ["a1", "a2"]);
    let [d] = diagnostics.as_slice() else {
        panic!("{diagnostics:#?}")
    };
    assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    assert!(
        d.help.as_deref().unwrap_or_default().contains("keeps the 2 objects"),
        "{d}"
    );
    let label = dir.path().join("a.yaml").display().to_string();
    assert_eq!(d.span.as_ref().map(|s| &*s.file), Some(label.as_str()));

    // The same broken content again: still the old objects and the same diagnostic.
    let (resources, diagnostics) = resync(provider.scan().unwrap());
    assert_eq!(resources.len(), 2);
    assert_eq!(diagnostics.len(), 1);

    // Fixed, with one object that fails to decode: that object alone is lost.
    write(
        dir.path(),
        "a.yaml",
        &format!(
            "{}---\n{}",
            service("a1"),
            service("a2").replace("port: 80", "port: http")
        ),
    );
    let (resources, diagnostics) = resync(provider.scan().unwrap());
    let names: Vec<_> = resources.iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(names, ["a1"]);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(
        diagnostics[0].field.as_ref().map(FieldPath::as_str),
        Some("spec.ports[0].port")
    );
}

#[test]
fn scan_reports_duplicates_on_the_later_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("web"));
    write(
        dir.path(),
        "sub/b.yml",
        &format!("{}---\n{}", service("other"), service("web")),
    );
    write(dir.path(), "notes.txt", &service("ignored"));
    let (resources, diagnostics) = resync(FileProvider::new(dir.path()).scan().unwrap());
    let names: Vec<_> = resources.iter().map(|r| r.name().to_owned()).collect();
    // In id order, as the model keeps them.
    assert_eq!(names, ["other", "web"]);
    let [d] = diagnostics.as_slice() else {
        panic!("{diagnostics:#?}")
    };
    let first = dir.path().join("a.yaml").display().to_string();
    let second = dir.path().join("sub/b.yml").display().to_string();
    assert_eq!(d.object, Some(ObjectRef::namespaced(Kind::Service, "default", "web")));
    assert_eq!(d.span.as_ref().map(|s| (&*s.file, s.line)), Some((second.as_str(), 12)));
    assert!(
        d.help.as_deref().unwrap_or_default().contains(&format!("{first}:4:9")),
        "{d}"
    );
}

#[cfg(unix)]
#[test]
fn scan_reads_a_mounted_config_map_once() {
    use std::os::unix::fs::symlink;
    // The layout kubelet gives a ConfigMap volume: real files in a timestamped directory,
    // `..data` linking to it, and a link per key.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "..2024_01_01_00_00_00.1/app.yaml", &service("web"));
    symlink("..2024_01_01_00_00_00.1", dir.path().join("..data")).unwrap();
    symlink("..data/app.yaml", dir.path().join("app.yaml")).unwrap();
    symlink("missing.yaml", dir.path().join("dangling.yaml")).unwrap();
    write(dir.path(), ".hidden.yaml", &service("hidden"));
    let (resources, diagnostics) = resync(FileProvider::new(dir.path()).scan().unwrap());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let names: Vec<_> = resources.iter().map(|r| r.name().to_owned()).collect();
    assert_eq!(names, ["web"]);
    let label = dir.path().join("app.yaml").display().to_string();
    assert_eq!(resources[0].origin.file_name(), Some(label.as_str()));
}

#[test]
fn scan_fails_only_for_the_directory_itself() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = FileProvider::new(&missing).scan().unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&missing.display().to_string()), "{message}");
    assert!(message.contains("check that it exists"), "{message}");
}

#[test]
fn scan_refuses_oversized_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = fs::File::create(dir.path().join("big.yaml")).unwrap();
    // Sparse: costs no disk space.
    file.set_len(MAX_FILE_SIZE + 1).unwrap();
    let (resources, diagnostics) = resync(FileProvider::new(dir.path()).scan().unwrap());
    assert!(resources.is_empty());
    assert!(diagnostics[0].message.contains("more than"), "{:?}", diagnostics);
}

/// Waits for a change, failing after `within`.
async fn changed_within(w: &mut Watcher, within: Duration) -> bool {
    tokio::time::timeout(within, w.changed()).await.is_ok()
}

/// Swallows notifications left over from earlier steps, so the next wait proves its own step.
async fn drain(w: &mut Watcher) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    while changed_within(w, Duration::from_millis(150)).await {}
}

#[tokio::test]
async fn watcher_sees_new_subdirectories_and_renames() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = watch(dir.path()).unwrap();

    write(dir.path(), "sub/a.yaml", &service("a"));
    assert!(
        changed_within(&mut watcher, Duration::from_secs(5)).await,
        "creating sub/a.yaml"
    );
    drain(&mut watcher).await;

    // An editor's save: write a temporary file, rename it over the original.
    write(dir.path(), "sub/.a.yaml.swp", &service("b"));
    fs::rename(dir.path().join("sub/.a.yaml.swp"), dir.path().join("sub/a.yaml")).unwrap();
    assert!(
        changed_within(&mut watcher, Duration::from_secs(5)).await,
        "renaming over sub/a.yaml"
    );
    drain(&mut watcher).await;

    // Our own reads must not count as changes, or every scan would cause another.
    let _ = FileProvider::new(dir.path()).scan().unwrap();
    assert!(
        !changed_within(&mut watcher, Duration::from_millis(500)).await,
        "a scan reported a change"
    );
}

#[test]
fn list_items_are_read_with_their_own_positions() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: networking.k8s.io/v1\n  kind: Ingress\n  metadata: {name: b}\n  spec:\n    rules:\n    - host: 1.2.3.4\n      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: a, port: {number: \"x\"}}}}]}\n";
    let parsed = parse_manifests("list.yaml", text);
    assert_eq!(parsed.resources.len(), 1, "{:?}", parsed.diagnostics);
    assert_eq!(parsed.resources[0].id.name, "a");
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(
        d.field.as_ref().map(|f| f.as_str()),
        Some("spec.rules[0].http.paths[0].backend.service.port.number")
    );
    assert_eq!(d.span.as_ref().map(|s| s.line), Some(13), "{d}");
}

/// What a parse gives, with the positions compile asks for, to compare two ways of parsing.
fn outcome(r: Result<Vec<manifest::Chunk>, Box<portier_core::Diagnostic>>) -> Vec<String> {
    let chunks = match r {
        Ok(c) => c,
        Err(d) => return vec![format!("file error: {d:?}")],
    };
    let mut out = Vec::new();
    for r in manifest::resources(&chunks) {
        out.push(format!("{} {:?}", r.id, r.object));
        for path in [
            "",
            "metadata.name",
            "spec",
            "spec.ports[0].port",
            "spec.rules[0].host",
            "nope.x",
        ] {
            out.push(format!("  {path}: {:?}", r.origin.span(&FieldPath::new(path))));
        }
    }
    out.extend(chunks.iter().flat_map(|c| &c.diagnostics).map(|d| format!("{d:?}")));
    out
}

/// A long file is parsed in chunks of several documents; an edit parses again only the chunk it
/// falls in (and perhaps the next), and the result is still that of parsing the whole text.
#[test]
fn chunks_group_documents_and_an_edit_parses_only_its_own() {
    let file: Arc<str> = "many.yaml".into();
    let n = 400;
    let text: String = (0..n)
        .map(|i| format!("---\n{}", service(&format!("s{i:03}"))))
        .collect();
    let max = manifest::MAX_GROUP;
    let first = manifest::parse_chunks(&file, &text, &[]).unwrap();
    assert_eq!(manifest::resources(&first).count(), n);
    assert!(
        first.len() > n / max && first.len() < n / 4,
        "{} chunks for {n} documents",
        first.len()
    );

    // The same length and lines: every object outside the edited chunks is the very same.
    let edited = text.replace("name: s200", "name: x200");
    let second = manifest::parse_chunks(&file, &edited, &first).unwrap();
    let same = manifest::resources(&first)
        .zip(manifest::resources(&second))
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    assert!(same < n && same >= n - 2 * max, "{same} of {n} objects reused");
    assert_eq!(
        outcome(manifest::parse_chunks(&file, &edited, &first)),
        outcome(manifest::whole(&file, &edited))
    );

    // A document inserted in the middle leaves the chunks before it alone.
    let at = text
        .find("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s200")
        .unwrap();
    let inserted = format!("{}---\n{}{}", &text[..at], service("new"), &text[at..]);
    let third = manifest::parse_chunks(&file, &inserted, &first).unwrap();
    let before = manifest::resources(&first)
        .zip(manifest::resources(&third))
        .take_while(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    assert!(before >= 200 - max, "only {before} objects before the insertion reused");
    assert_eq!(
        outcome(manifest::parse_chunks(&file, &inserted, &first)),
        outcome(manifest::whole(&file, &inserted))
    );
}

#[test]
fn chunked_parse_equals_whole_parse() {
    let bomb = {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..4 {
            s += &format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            );
        }
        s
    };
    let inputs = [
        format!("{SERVICE}---\n{INGRESS}"),
        format!("# c\n---\n{SERVICE}\n---\n\n---\n{INGRESS}---\n"),
        format!("{SERVICE}...\n---\n{INGRESS}...\n"),
        format!("{}---\n{}", SERVICE.replace('\n', "\r\n"), INGRESS.replace('\n', "\r\n")),
        format!("{SERVICE}---\n{}", SERVICE.replace("name: web", "name: web\n  name: twice")),
        format!("{SERVICE}---\nkind: [\n---\n{INGRESS}"),
        format!("{SERVICE}---\nx: \"open\n---\nkind: Service\n"),
        format!("{SERVICE}--- |\n  text\n---\n{INGRESS}"),
        format!("--- |\nfoo\n---\n{SERVICE}"),
        format!("--- >\nfoo\n--- \n{SERVICE}"),
        format!("%YAML 1.2\n---\n{SERVICE}---\n{INGRESS}"),
        format!("{SERVICE}---\n%TAG !e! tag:example.com,2000:\n---\n{INGRESS}"),
        format!("{SERVICE}---\napiVersion: v1\nkind: List\nitems:\n- {}\n---\n{INGRESS}", service("a").replace('\n', "\n  ")),
        format!("{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}---\n{bomb}"),
        format!("{SERVICE}---\r{INGRESS}"),
        format!("{SERVICE}---\n{INGRESS}\u{85}---\n{SERVICE}"),
        "---\n---".to_owned(),
        "---x\n---\na: 1\n----\n--- # c\n---\t\n".to_owned(),
        String::new(),
    ];
    let file: Arc<str> = "a.yaml".into();
    for input in &inputs {
        let whole = outcome(manifest::whole(&file, input));
        let chunked = outcome(manifest::parse_chunks(&file, input, &[]));
        assert_eq!(chunked, whole, "{input:?}");
        // Reusing the chunks of a parse, here shifted by two lines, changes nothing either.
        let previous = manifest::parse_chunks(&file, input, &[]).unwrap_or_default();
        let shifted = format!("#\n#\n{input}");
        if input.starts_with('%') {
            continue;
        }
        let reused = outcome(manifest::parse_chunks(&file, &shifted, &previous));
        assert_eq!(reused, outcome(manifest::whole(&file, &shifted)), "{input:?} shifted");
        // Documents added after, and removed before, the reused ones.
        let longer = format!("{input}\n---\n{}", service("added"));
        let reused = outcome(manifest::parse_chunks(&file, &longer, &previous));
        assert_eq!(reused, outcome(manifest::whole(&file, &longer)), "{input:?} appended");
        let previous =
            manifest::parse_chunks(&file, &format!("{}---\n{input}", service("gone")), &[]).unwrap_or_default();
        let reused = outcome(manifest::parse_chunks(&file, input, &previous));
        assert_eq!(reused, whole, "{input:?} after a removal");
    }
}
