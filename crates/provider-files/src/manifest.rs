//! One file's text → typed resources, each with a span map, and diagnostics for what was left out.

use std::sync::Arc;

use portier_core::{Diagnostic, FieldPath, Kind, ObjectRef, Span};
use portier_model::{Object, Origin, Resource, SpanMap};
use serde_json::Value;

use crate::yaml::{self, Document, Pos, Problem};
use crate::Parsed;

/// The apiVersion portier reads for each kind, to tell a wrong version from an unknown kind.
const API_VERSIONS: [(Kind, &str); 11] = [
    (Kind::Ingress, "networking.k8s.io/v1"),
    (Kind::IngressClass, "networking.k8s.io/v1"),
    (Kind::Service, "v1"),
    (Kind::EndpointSlice, "discovery.k8s.io/v1"),
    (Kind::Endpoints, "v1"),
    (Kind::Secret, "v1"),
    (Kind::ConfigMap, "v1"),
    (Kind::StaticResponse, "portier.dev/v1alpha1"),
    (Kind::ClusterIssuer, "cert-manager.io/v1"),
    (Kind::Issuer, "cert-manager.io/v1"),
    (Kind::Certificate, "cert-manager.io/v1"),
];

/// Parses a file. `Err` means the YAML itself is broken (syntax, limits): nothing in the file can
/// be trusted, and the caller decides whether older objects stay.
pub(crate) fn parse_file(file: &Arc<str>, text: &str) -> Result<Parsed, Box<Diagnostic>> {
    let docs = yaml::load(text).map_err(|p| problem(file, p))?;
    let mut parsed = Parsed::default();
    for doc in docs.into_iter().flat_map(expand_list) {
        match document(file, doc) {
            Ok(Some(resource)) => parsed.resources.push(resource),
            Ok(None) => {}
            Err(d) => parsed.diagnostics.push(*d),
        }
    }
    Ok(parsed)
}

/// `kubectl get -o yaml` writes a `v1` `List` of objects: each item is read as if it were a
/// document of its own, with its own positions.
fn expand_list(doc: Document) -> Vec<Document> {
    let is_list = doc.problem.is_none()
        && doc.value.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && doc.value.get("kind").and_then(Value::as_str) == Some("List");
    if !is_list {
        return vec![doc];
    }
    let Document {
        start,
        mut value,
        spans,
        ..
    } = doc;
    let items = match value.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => return Vec::new(),
    };
    let mut docs: Vec<Document> = items
        .into_iter()
        .map(|value| Document {
            start,
            value,
            spans: Vec::new(),
            problem: None,
        })
        .collect();
    // One pass over the spans: `items[3].spec.rules` belongs to item 3 as `spec.rules`.
    for (path, pos) in spans {
        let Some(rest) = path.strip_prefix("items[") else {
            continue;
        };
        let Some((index, tail)) = rest.split_once(']') else {
            continue;
        };
        let Some(doc) = index.parse::<usize>().ok().and_then(|i| docs.get_mut(i)) else {
            continue;
        };
        match tail.strip_prefix('.') {
            Some(field) => doc.spans.push((field.to_owned(), pos)),
            None if tail.is_empty() => doc.start = pos,
            None => {}
        }
    }
    docs
}

/// One document → a resource, nothing (empty document, a kind portier does not read), or why not.
fn document(file: &Arc<str>, doc: Document) -> Result<Option<Resource>, Box<Diagnostic>> {
    if let Some(p) = doc.problem {
        return Err(problem(file, p));
    }
    let mut spans = SpanMap::new(file.clone(), doc.start.line, doc.start.col);
    for (path, at) in doc.spans {
        spans.insert(path, at.line, at.col);
    }
    let at = |path: &str| Some(spans.lookup(path));
    let value = doc.value;
    let fields = match &value {
        // A trailing `---` or a file of comments: nothing to read.
        Value::Null => return Ok(None),
        Value::Object(fields) => fields,
        _ => {
            return Err(Diagnostic::error("document is not a mapping")
                .span(at(""))
                .help("each YAML document must be one Kubernetes object with apiVersion, kind and metadata")
                .into())
        }
    };
    let api_version = required_string(fields, "apiVersion", &spans)?;
    let kind_name = required_string(fields, "kind", &spans)?;
    let meta = |field: &str| value.get("metadata").and_then(|m| m.get(field));

    let Some(kind) = Object::kind_of(api_version, kind_name) else {
        if let Some((kind, want)) = API_VERSIONS.iter().find(|(k, _)| k.as_str() == kind_name) {
            let d = Diagnostic::error(format!("apiVersion {api_version} of {kind} is not supported"))
                .field(FieldPath::new("apiVersion"))
                .span(at("apiVersion"))
                .help(format!("use apiVersion {want}"));
            let name = meta("name").and_then(Value::as_str);
            let namespace = meta("namespace").and_then(Value::as_str);
            return Err(match name {
                Some(name) => d.object(object_ref(*kind, namespace, name)),
                None => d,
            }
            .into());
        }
        tracing::debug!(file = %file, api_version, kind = kind_name, "skipping an object of a kind portier does not read");
        return Ok(None);
    };

    let id = match meta("name") {
        Some(Value::String(name)) if !name.is_empty() => {
            Some(object_ref(kind, meta("namespace").and_then(Value::as_str), name))
        }
        None | Some(Value::Null | Value::String(_)) => {
            return Err(Diagnostic::error(format!("{kind} has no name"))
                .field(FieldPath::new("metadata.name"))
                .span(at("metadata.name"))
                .help("set metadata.name")
                .into())
        }
        // Present but not a string: the typed decode below names the wrong type.
        Some(_) => None,
    };

    match Object::from_json(kind, value) {
        Ok(object) => Ok(Some(Resource::new(object, Origin::file(spans)))),
        Err(e) => {
            let d = Diagnostic::error(e.message).span(at(e.field.as_str())).field(e.field);
            Err(match id {
                Some(id) => d.object(id),
                None => d,
            }
            .into())
        }
    }
}

fn required_string<'v>(
    fields: &'v serde_json::Map<String, Value>,
    field: &str,
    spans: &SpanMap,
) -> Result<&'v str, Box<Diagnostic>> {
    match fields.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(Diagnostic::error(format!("document has no {field}"))
            .field(FieldPath::new(field))
            .span(Some(spans.lookup(field)))
            .help(format!("set {field}; portier reads Ingress, IngressClass, Service, EndpointSlice, Endpoints, Secret, ConfigMap, StaticResponse, ClusterIssuer, Issuer and Certificate"))
            .into()),
        Some(other) => Err(Diagnostic::error(format!("{field} must be a non-empty string, not {other}"))
            .field(FieldPath::new(field))
            .span(Some(spans.lookup(field)))
            .help(format!("quote the {field} value"))
            .into()),
    }
}

/// The reference `Resource::new` would build, for diagnostics about objects that failed to decode.
fn object_ref(kind: Kind, namespace: Option<&str>, name: &str) -> ObjectRef {
    let namespace = kind.is_namespaced().then(|| namespace.unwrap_or("default"));
    ObjectRef::new(kind, namespace, name)
}

fn problem(file: &Arc<str>, p: Problem) -> Box<Diagnostic> {
    let d = Diagnostic::error(p.message).span(Some(span(file, p.pos)));
    Box::new(match p.help {
        Some(help) => d.help(help),
        None => d,
    })
}

fn span(file: &Arc<str>, at: Pos) -> Span {
    Span {
        file: file.clone(),
        line: at.line,
        col: at.col,
    }
}
