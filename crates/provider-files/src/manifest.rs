//! One file's text → typed resources, each able to tell the position of its fields, and
//! diagnostics for what was left out.
//!
//! Positions are not kept: each object keeps the text of its chunk of documents, which is parsed
//! again the first time a diagnostic asks where a field is. At ten thousand objects a table of
//! every field cost more memory than the objects themselves.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use portier_core::{Diagnostic, FieldPath, Kind, ObjectRef, Span};
use portier_model::{lookup_in, Locate, Object, Origin, Resource};
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

/// A run of whole documents of one file and what they hold. A file is cut before `---` lines into
/// runs of about [`GROUP`] documents, so that after an edit only the runs whose text changed are
/// parsed again.
#[derive(Debug)]
pub(crate) struct Chunk {
    source: Arc<Source>,
    /// Nodes that aliases expanded to in this text.
    alias_nodes: u64,
    /// The objects of the chunk, each with its document (and `List` item) number.
    resources: Arc<[(Arc<Resource>, Place)]>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The text of a chunk and where it sits in its file; parsed again, once, when a diagnostic needs
/// the position of a field.
#[derive(Debug)]
struct Source {
    file: Arc<str>,
    text: Arc<str>,
    /// Lines before the chunk in its file.
    line: u32,
    /// Field positions per document, built on the first lookup.
    tables: OnceLock<Vec<Table>>,
}

/// The positions of one document's fields.
#[derive(Debug)]
struct Table {
    start: Pos,
    fields: HashMap<String, Pos>,
}

/// Which object of a chunk: document number, and item number in a `v1` `List`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    doc: u32,
    /// `u32::MAX`: the document itself.
    item: u32,
}

/// One object's positions: its chunk and its place there. The first document of a chunk, by far
/// the most common place, needs none: its [`Source`] answers for it.
#[derive(Debug)]
struct Located {
    source: Arc<Source>,
    place: Place,
}

/// Parses a file. `Err` means the YAML itself is broken (syntax, limits): nothing in the file can
/// be trusted, and the caller decides whether older objects stay.
pub(crate) fn parse_file(file: &Arc<str>, text: &str) -> Result<Parsed, Box<Diagnostic>> {
    let chunks = parse_chunks(file, text, &[])?;
    let mut parsed = Parsed::default();
    for chunk in chunks {
        parsed
            .resources
            .extend(chunk.resources.iter().map(|(r, _)| r.clone()).map(Arc::unwrap_or_clone));
        parsed.diagnostics.extend(chunk.diagnostics);
    }
    Ok(parsed)
}

/// Parses a file into chunks, reusing the result of every chunk of `previous` (the file's last
/// good parse) whose text is unchanged. The result is the same as parsing the text as a whole.
pub(crate) fn parse_chunks(file: &Arc<str>, text: &str, previous: &[Chunk]) -> Result<Vec<Chunk>, Box<Diagnostic>> {
    let Some(cuts) = cuts(text) else {
        return whole(file, text);
    };
    let cuts = group(&cuts, text);
    let pieces: Vec<(&str, u32)> = cuts
        .iter()
        .enumerate()
        .map(|(i, &(begin, line))| {
            let end = cuts.get(i + 1).map_or(text.len(), |&(next, _)| next);
            (&text[begin..end], line)
        })
        .collect();
    let same = |i: usize, j: usize| match (pieces.get(i), previous.get(j)) {
        (Some((piece, _)), Some(c)) => *c.source.text == **piece,
        (None, None) => true,
        _ => false,
    };
    // Most edits change a few documents in place: compare each chunk with the one at the same
    // place first, and index the old chunks by text only when the files have gone out of step.
    let mut known: Option<HashMap<&str, usize>> = None;
    let mut next = 0;
    let mut chunks = Vec::with_capacity(pieces.len());
    let mut alias_nodes = 0u64;
    for (i, &(piece, line)) in pieces.iter().enumerate() {
        let reuse = if same(i, next) {
            Some(next)
        } else if previous.is_empty() || same(i + 1, next + 1) {
            // Changed in place (or nothing to reuse): the next chunk lines up again.
            next += 1;
            None
        } else {
            let known = known.get_or_insert_with(|| {
                let mut map = HashMap::with_capacity(previous.len());
                for (j, c) in previous.iter().enumerate() {
                    map.entry(&*c.source.text).or_insert(j);
                }
                map
            });
            known.get(piece).copied()
        };
        let chunk = match reuse {
            Some(j) => {
                next = j + 1;
                previous[j].moved_to(line)
            }
            None => match parse_chunk(file, piece.into(), line) {
                Ok(chunk) => chunk,
                // The error and its position must be the ones a parse of the whole text gives.
                Err(_) => return whole(file, text),
            },
        };
        alias_nodes = alias_nodes.saturating_add(chunk.alias_nodes);
        chunks.push(chunk);
    }
    // The alias limit holds for the whole file, not for each chunk.
    if alias_nodes > yaml::MAX_ALIAS_NODES {
        return whole(file, text);
    }
    Ok(chunks)
}

/// Whether `previous` holds exactly `text`: an unchanged file is not parsed again.
pub(crate) fn same_text(previous: &[Chunk], text: &[u8]) -> bool {
    let mut rest = text;
    for c in previous {
        match rest.strip_prefix(c.source.text.as_bytes()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Every object of `chunks`, in file order.
pub(crate) fn resources(chunks: &[Chunk]) -> impl Iterator<Item = &Arc<Resource>> {
    chunks.iter().flat_map(|c| c.resources.iter().map(|(r, _)| r))
}

// === impl Chunk ===

impl Chunk {
    /// This chunk's result for the same text `line` lines into the file.
    fn moved_to(&self, line: u32) -> Chunk {
        if line == self.source.line {
            return Chunk {
                source: self.source.clone(),
                alias_nodes: self.alias_nodes,
                resources: self.resources.clone(),
                diagnostics: self.diagnostics.clone(),
            };
        }
        let source = Arc::new(Source::new(self.source.file.clone(), self.source.text.clone(), line));
        let resources = self
            .resources
            .iter()
            .map(|(r, place)| {
                let origin = origin(&source, *place);
                let moved = Resource {
                    id: r.id.clone(),
                    object: r.object.clone(),
                    origin,
                };
                (Arc::new(moved), *place)
            })
            .collect();
        let diagnostics = self
            .diagnostics
            .iter()
            .cloned()
            .map(|mut d| {
                if let Some(span) = d.span.as_mut() {
                    span.line = span.line.saturating_sub(self.source.line).saturating_add(line);
                }
                d
            })
            .collect();
        Chunk {
            source,
            alias_nodes: self.alias_nodes,
            resources,
            diagnostics,
        }
    }
}

// === impl Source ===

impl Source {
    fn new(file: Arc<str>, text: Arc<str>, line: u32) -> Self {
        Self {
            file,
            text,
            line,
            tables: OnceLock::new(),
        }
    }

    /// The position of `path` in the object at `place`.
    fn locate_at(&self, place: Place, path: &str) -> Span {
        let pos = match self.tables().get(place.doc as usize) {
            None => Pos {
                line: self.line + 1,
                col: 1,
            },
            Some(table) => {
                let get = |p: &str| table.fields.get(p).map(|at| (at.line, at.col));
                let (line, col) = match place.item {
                    u32::MAX => lookup_in(path, (table.start.line, table.start.col), get),
                    // `items[3].spec.rules` belongs to item 3 as `spec.rules`; the item's own
                    // position is the root of its paths.
                    i => {
                        let prefix = format!("items[{i}]");
                        let root = get(&prefix).unwrap_or((table.start.line, table.start.col));
                        let full = if path.is_empty() {
                            prefix.clone()
                        } else {
                            format!("{prefix}.{path}")
                        };
                        lookup_in(&full, root, |p| if p.len() > prefix.len() { get(p) } else { None })
                    }
                };
                Pos { line, col }
            }
        };
        span(&self.file, pos)
    }

    fn tables(&self) -> &[Table] {
        self.tables.get_or_init(|| {
            let mut tables = Vec::new();
            let opts = yaml::Options {
                line_offset: self.line,
                spans: true,
            };
            // The text parsed before, so this cannot fail; if it did, positions fall back to the
            // start of the chunk.
            let _ = yaml::load_each(&self.text, opts, |doc| {
                tables.push(Table {
                    start: doc.start,
                    // Later entries win, as they did when the map was built while parsing.
                    fields: doc.spans.into_iter().collect(),
                });
            });
            tables
        })
    }
}

impl Locate for Source {
    fn file(&self) -> &Arc<str> {
        &self.file
    }

    fn locate(&self, path: &str) -> Span {
        self.locate_at(Place::FIRST, path)
    }
}

// === impl Located ===

impl Locate for Located {
    fn file(&self) -> &Arc<str> {
        &self.source.file
    }

    fn locate(&self, path: &str) -> Span {
        self.source.locate_at(self.place, path)
    }
}

// === impl Place ===

impl Place {
    const FIRST: Place = Place { doc: 0, item: u32::MAX };
}

/// Where the object at `place` of a chunk gets its positions from.
fn origin(source: &Arc<Source>, place: Place) -> Origin {
    if place == Place::FIRST {
        Origin::located(source.clone())
    } else {
        Origin::located(Arc::new(Located {
            source: source.clone(),
            place,
        }))
    }
}

/// Parses the whole text as one chunk.
pub(crate) fn whole(file: &Arc<str>, text: &str) -> Result<Vec<Chunk>, Box<Diagnostic>> {
    parse_chunk(file, text.into(), 0).map(|c| vec![c])
}

/// Parses one chunk. `Err` is a problem with the YAML of the whole chunk.
fn parse_chunk(file: &Arc<str>, text: Arc<str>, line: u32) -> Result<Chunk, Box<Diagnostic>> {
    let source = Arc::new(Source::new(file.clone(), text, line));
    let mut resources = Vec::new();
    let mut diagnostics = Vec::new();
    let opts = yaml::Options {
        line_offset: line,
        spans: false,
    };
    let mut n = 0u32;
    let alias_nodes = yaml::load_each(&source.text, opts, |doc| {
        for (value, item, problem) in expand_list(doc) {
            let place = Place {
                doc: n,
                item: item.map_or(u32::MAX, |i| u32::try_from(i).unwrap_or(u32::MAX - 1)),
            };
            match document(file, value, problem, &source, place) {
                Ok(Some(resource)) => resources.push((Arc::new(resource), place)),
                Ok(None) => {}
                Err(d) => diagnostics.push(*d),
            }
        }
        n = n.saturating_add(1);
    })
    .map_err(|p| problem(file, p))?;
    Ok(Chunk {
        source,
        alias_nodes,
        resources: resources.into(),
        diagnostics,
    })
}

/// Byte offsets and line counts at which `text` may be cut into chunks: the start, and every line
/// that begins with a `---` marker (YAML forbids such a line inside any node, so it always starts
/// a document). `None` when the text cannot be cut safely: directives (`%YAML`, `%TAG`) apply to
/// the document after the next marker, and line breaks other than `\n` and `\r\n` would make our
/// line count differ from the parser's.
fn cuts(text: &str) -> Option<Vec<(usize, u32)>> {
    // U+0085 is C2 85 in UTF-8, U+2028 and U+2029 are E2 80 A8 and E2 80 A9: look for the lead
    // bytes first, which is fast, and for the characters only if one is there.
    let bytes = text.as_bytes();
    if bytes.iter().any(|&b| b == 0xC2 || b == 0xE2) && text.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        return None;
    }
    let mut cuts = vec![(0, 0)];
    let mut offset = 0;
    let mut line = 0u32;
    for l in text.split_inclusive('\n') {
        let body = l.strip_suffix('\n').unwrap_or(l);
        let body = body.strip_suffix('\r').unwrap_or(body);
        if l.starts_with('%') || body.contains('\r') {
            return None;
        }
        let marker = yaml::starts_document(l);
        if marker && offset > 0 {
            cuts.push((offset, line));
        }
        offset += l.len();
        line = line.saturating_add(1);
    }
    Some(cuts)
}

/// Documents per chunk, on average. A chunk per document cost ~250 bytes of bookkeeping for each
/// (its text, source and result lists): at 10,000 hosts, three objects each, that was 7 MiB.
/// Re-parsing 16 documents for an edit of one costs well under a millisecond.
const GROUP: u32 = 16;

/// Most documents in one chunk, when the content-defined ends are far apart.
pub(crate) const MAX_GROUP: usize = 4 * GROUP as usize;

/// The cuts of [`cuts`] that start a chunk. A chunk ends after a document whose text hashes to a
/// multiple of [`GROUP`]: the ends move with the documents, so adding or removing one changes
/// only its own chunk (and perhaps the next), where cutting every N documents would shift every
/// chunk after it and parse the rest of the file again.
fn group(cuts: &[(usize, u32)], text: &str) -> Vec<(usize, u32)> {
    let mut starts = Vec::with_capacity(cuts.len() / GROUP as usize + 1);
    let mut last = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        if i > 0 {
            let doc = text.get(cuts[i - 1].0..cut.0).unwrap_or_default();
            if i - last < MAX_GROUP && !doc_hash(doc.as_bytes()).is_multiple_of(u64::from(GROUP)) {
                continue;
            }
        }
        starts.push(cut);
        last = i;
    }
    starts
}

/// A fixed (not per-process random) hash, so that the same file is cut the same way every time.
fn doc_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
        h = (h ^ w).wrapping_mul(K).rotate_left(31);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(31);
    }
    // The low bits decide; fold the well-mixed high bits into them.
    (h ^ (h >> 29)).wrapping_mul(K) >> 32
}

/// `kubectl get -o yaml` writes a `v1` `List` of objects: each item is read as if it were a
/// document of its own, with its own positions.
fn expand_list(doc: Document) -> Vec<(Value, Option<usize>, Option<Problem>)> {
    let is_list = doc.problem.is_none()
        && doc.value.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && doc.value.get("kind").and_then(Value::as_str) == Some("List");
    if !is_list {
        return vec![(doc.value, None, doc.problem)];
    }
    let mut value = doc.value;
    match value.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (item, Some(i), None))
            .collect(),
        _ => Vec::new(),
    }
}

/// One document → a resource, nothing (empty document, a kind portier does not read), or why not.
fn document(
    file: &Arc<str>,
    value: Value,
    problem: Option<Problem>,
    source: &Arc<Source>,
    place: Place,
) -> Result<Option<Resource>, Box<Diagnostic>> {
    if let Some(p) = problem {
        return Err(self::problem(file, p));
    }
    // Positions are looked up only for a diagnostic: the first lookup parses the chunk again.
    let at = |path: &str| Some(source.locate_at(place, path));
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
    let api_version = required_string(fields, "apiVersion", &at)?;
    let kind_name = required_string(fields, "kind", &at)?;
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
        Ok(object) => Ok(Some(Resource::new(object, origin(source, place)))),
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
    at: &impl Fn(&str) -> Option<Span>,
) -> Result<&'v str, Box<Diagnostic>> {
    match fields.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(Diagnostic::error(format!("document has no {field}"))
            .field(FieldPath::new(field))
            .span(at(field))
            .help(format!("set {field}; portier reads Ingress, IngressClass, Service, EndpointSlice, Endpoints, Secret, ConfigMap, StaticResponse, ClusterIssuer, Issuer and Certificate"))
            .into()),
        Some(other) => Err(Diagnostic::error(format!("{field} must be a non-empty string, not {other}"))
            .field(FieldPath::new(field))
            .span(at(field))
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
