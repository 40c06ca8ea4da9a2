//! YAML text → one JSON value per document and, when asked, the position of every mapping value
//! and sequence item, built from saphyr-parser events.
//!
//! Kubernetes decodes manifests by converting YAML to JSON first (sigs.k8s.io/yaml), so we do the
//! same: the typed decode in `portier-model` then sees exactly what the API server would.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Deeper nesting than this is refused: no real manifest comes close, and the limit keeps
/// recursive `Drop`/`Clone` of `serde_json::Value` far from the stack's end.
pub(crate) const MAX_DEPTH: usize = 128;

/// How many nodes aliases may expand to in one file ("billion laughs" defence). Real manifests
/// use a handful of anchors; 100k nodes is a few MiB of values.
pub(crate) const MAX_ALIAS_NODES: u64 = 100_000;

/// A 1-based line and column, as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

/// Something wrong at one position: a whole file (syntax, limits) or a single document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub pos: Pos,
    pub help: Option<String>,
}

/// One YAML document.
#[derive(Debug)]
pub(crate) struct Document {
    /// Where the root node starts: the position for paths that have none of their own.
    pub start: Pos,
    pub value: Value,
    /// Field path (`spec.rules[0].host`) → position of the value.
    pub spans: Vec<(String, Pos)>,
    /// The first problem that makes this document unusable (duplicate key, bad tag, …); the
    /// other documents of the file are still fine.
    pub problem: Option<Problem>,
}

/// How [`load_each`] reads a text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Lines before `text` in its file: added to every position.
    pub line_offset: u32,
    /// Record the field path and position of every value ([`Document::spans`]). Without it the
    /// loader allocates nothing but the values themselves.
    pub spans: bool,
}

/// Parses every document of `text` and hands each one to `each` as soon as it is complete, so
/// only one document's values are alive at a time. Returns the number of nodes aliases expanded
/// to. An error means the text as a whole cannot be trusted; documents already handed out must
/// then be dropped by the caller.
pub(crate) fn load_each(text: &str, opts: Options, mut each: impl FnMut(Document)) -> Result<u64, Problem> {
    if !opts.spans {
        if let Some(docs) = json_documents(text, opts.line_offset) {
            docs.into_iter().for_each(each);
            return Ok(0);
        }
    }
    let mut loader = Loader {
        docs: Vec::new(),
        doc: None,
        alias_nodes: 0,
        opts,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Problem {
            message: format!("invalid YAML: {}", e.info()),
            pos: loader.pos(e.marker()),
            help: None,
        })?;
        let at = loader.pos(&span.start);
        loader.event(event, at)?;
        for doc in loader.docs.drain(..) {
            each(doc);
        }
    }
    loader.finish_document(Pos::default());
    for doc in loader.docs.drain(..) {
        each(doc);
    }
    Ok(loader.alias_nodes)
}

/// Documents written as JSON (`kubectl get -o json`, generated manifests), read by serde_json:
/// JSON is YAML 1.2 and the values are the same, but saphyr-parser takes ~6× as long on flow
/// syntax (at 10,000 hosts, 2.2 of the 4.3 billion instructions of `portier check`). `None` when
/// anything is not plain JSON: a comment, a tag, an empty or non-object document, a duplicate key,
/// nesting past serde_json's limit of 128 (= [`MAX_DEPTH`]). The YAML loader then reads the text
/// and reports what is wrong where. Positions ([`Options::spans`]) always come from the YAML loader.
fn json_documents(text: &str, line_offset: u32) -> Option<Vec<Document>> {
    let mut docs = Vec::new();
    // The body of the current document: from `begin` (after its `---`) to the next marker.
    let (mut begin, mut begin_line, mut explicit) = (0usize, 0u32, false);
    let (mut offset, mut line) = (0usize, 0u32);
    for l in text.split_inclusive('\n') {
        if l.starts_with(['%', '.']) {
            return None; // a directive or a document end marker: YAML, not JSON
        }
        let marker = starts_document(l);
        if marker {
            json_document(&text[begin..offset], begin_line, line_offset, explicit, &mut docs)?;
            (begin, begin_line, explicit) = (offset + 3, line, true);
        }
        offset += l.len();
        line = line.saturating_add(1);
    }
    json_document(&text[begin..], begin_line, line_offset, explicit, &mut docs)?;
    Some(docs)
}

/// Whether `line` (with its line break) is a `---` document marker. YAML forbids such a line
/// inside any node, so it always starts a document.
pub(crate) fn starts_document(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// One document of [`json_documents`]: `body` starts on line `line` (0-based) of the text.
fn json_document(body: &str, line: u32, line_offset: u32, explicit: bool, docs: &mut Vec<Document>) -> Option<()> {
    let trimmed = body.trim_start_matches([' ', '\t', '\r', '\n']);
    if trimmed.is_empty() {
        // Nothing before the first marker is no document; an empty one after a marker is a null
        // document, which the YAML loader reports.
        return if explicit { None } else { Some(()) };
    }
    if !trimmed.starts_with('{') || negative_zero_integer(body) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let value = serde::de::DeserializeSeed::deserialize(StrictValue, &mut de).ok()?;
    de.end().ok()?; // only whitespace after the value
    let skipped = &body[..body.len() - trimmed.len()];
    let lines = skipped.matches('\n').count();
    let col = skipped.rsplit('\n').next().map_or(0, |s| s.chars().count()) + if lines == 0 && explicit { 3 } else { 0 };
    docs.push(Document {
        start: Pos {
            line: line
                .saturating_add(u32::try_from(lines).unwrap_or(u32::MAX))
                .saturating_add(line_offset)
                .saturating_add(1),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        },
        value,
        spans: Vec::new(),
        problem: None,
    });
    Some(())
}

/// See `portier_provider_files::check_json_fast_path`. The YAML loader refusing a text serde_json
/// reads is not a difference that matters: Kubernetes reads JSON as JSON (only the positions of
/// diagnostics then fall back to the document).
#[cfg(fuzzing)]
pub(crate) fn check_json_fast_path(text: &str) {
    let Some(fast) = json_documents(text, 0) else { return };
    let mut yaml = Vec::new();
    let opts = Options {
        line_offset: 0,
        spans: true,
    };
    if load_each(text, opts, |d| yaml.push(d)).is_err() || yaml.iter().any(|d| d.problem.is_some()) {
        return;
    }
    let values = |docs: &[Document]| docs.iter().map(|d| d.value.clone()).collect::<Vec<_>>();
    assert_eq!(
        values(&fast),
        values(&yaml),
        "serde_json and the YAML loader differ on {text:?}"
    );
}

/// Whether `body` may hold the integer `-0`, which serde_json reads as the float -0.0 and YAML
/// as the integer 0 (a string containing it is a false alarm, which only costs the fast path).
fn negative_zero_integer(body: &str) -> bool {
    body.match_indices("-0")
        .any(|(i, _)| !matches!(body.as_bytes().get(i + 2), Some(b'.' | b'e' | b'E' | b'0'..=b'9')))
}

/// A JSON value, refusing duplicate keys as the YAML loader does (`serde_json::Value` keeps the last).
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let value = access.next_value_seed(StrictValue)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

// === impl Loader ===

struct Loader {
    /// Finished documents not yet handed out.
    docs: Vec<Document>,
    doc: Option<DocState>,
    /// Nodes produced by alias expansion so far, in the whole text.
    alias_nodes: u64,
    opts: Options,
}

#[derive(Default)]
struct DocState {
    /// The `DocumentStart` position, used when the document has no root node.
    begin: Pos,
    start: Option<Pos>,
    root: Option<Value>,
    stack: Vec<Frame>,
    /// Whether to record [`Document::spans`].
    track: bool,
    /// Anchor id → (value, node count). saphyr-parser numbers anchors across the whole stream,
    /// and YAML scopes them to one document, so this map starts empty for each document.
    anchors: HashMap<usize, (Value, u64)>,
    spans: Vec<(String, Pos)>,
    problem: Option<Problem>,
}

struct Frame {
    kind: FrameKind,
    path: String,
    anchor: usize,
    /// This node plus all nodes below it, counting alias expansions.
    nodes: u64,
    pos: Pos,
}

enum FrameKind {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        key: Option<PendingKey>,
        /// Keys that came from a `<<` merge: an explicit key may override them without being a
        /// duplicate.
        merged: HashSet<String>,
    },
}

enum PendingKey {
    Key(String, Pos),
    /// `<<: *base`: YAML 1.1 merge, which kubectl (go-yaml) honours.
    Merge(Pos),
}

/// Where the next node goes.
enum Slot {
    Root,
    Key,
    Value(String),
}

impl Loader {
    fn event(&mut self, event: Event<'_>, at: Pos) -> Result<(), Problem> {
        match event {
            Event::DocumentStart(_) => {
                self.finish_document(at);
                self.doc = Some(DocState {
                    begin: at,
                    track: self.opts.spans,
                    ..DocState::default()
                });
            }
            Event::DocumentEnd => self.finish_document(at),
            Event::Scalar(text, style, anchor, tag) => {
                let doc = self.doc_mut(at);
                doc.start_node(at);
                let merge_key = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let value = match resolve(&text, style, tag.as_deref()) {
                    Ok(v) => v,
                    Err(message) => {
                        doc.report(
                            message,
                            at,
                            "quote the value to make it a string, or fix it to match its tag",
                        );
                        Value::String(text.into_owned())
                    }
                };
                if anchor != 0 {
                    doc.anchors.insert(anchor, (value.clone(), 1));
                }
                doc.deliver(value, 1, at, merge_key);
            }
            Event::Alias(id) => {
                let doc = self.doc_mut(at);
                doc.start_node(at);
                let (value, nodes) = match doc.anchors.get(&id) {
                    Some((v, n)) => (v.clone(), *n),
                    None => {
                        doc.report(
                            "alias refers to an anchor of another document".to_owned(),
                            at,
                            "anchors apply only inside the document that defines them",
                        );
                        (Value::Null, 1)
                    }
                };
                self.alias_nodes = self.alias_nodes.saturating_add(nodes);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(Problem {
                        message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                        pos: at,
                        help: Some("write the repeated values out, or use fewer nested aliases".to_owned()),
                    });
                }
                self.doc_mut(at).deliver(value, nodes, at, false);
            }
            Event::SequenceStart(anchor, _) => self.doc_mut(at).open(FrameKind::Seq(Vec::new()), anchor, at)?,
            Event::MappingStart(anchor, _) => self.doc_mut(at).open(
                FrameKind::Map {
                    map: Map::new(),
                    key: None,
                    merged: HashSet::new(),
                },
                anchor,
                at,
            )?,
            Event::SequenceEnd | Event::MappingEnd => self.doc_mut(at).close(),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// The open document. saphyr-parser always sends `DocumentStart` first; opening one here
    /// anyway means a surprise in its event order cannot lose a node.
    fn doc_mut(&mut self, at: Pos) -> &mut DocState {
        let track = self.opts.spans;
        self.doc.get_or_insert_with(|| DocState {
            begin: at,
            track,
            ..DocState::default()
        })
    }

    fn pos(&self, m: &Marker) -> Pos {
        let at = pos(m);
        Pos {
            line: at.line.saturating_add(self.opts.line_offset),
            col: at.col,
        }
    }

    fn finish_document(&mut self, at: Pos) {
        let Some(mut doc) = self.doc.take() else { return };
        // Only after a parser bug could frames be left open; close them so nothing is lost.
        while !doc.stack.is_empty() {
            doc.close();
        }
        let start = doc
            .start
            .unwrap_or(if doc.begin == Pos::default() { at } else { doc.begin });
        self.docs.push(Document {
            start,
            value: doc.root.unwrap_or(Value::Null),
            spans: doc.spans,
            problem: doc.problem,
        });
    }
}

// === impl DocState ===

impl DocState {
    fn slot(&self) -> Slot {
        match self.stack.last() {
            None => Slot::Root,
            Some(Frame {
                kind: FrameKind::Seq(items),
                path,
                ..
            }) => Slot::Value(format!("{path}[{}]", items.len())),
            Some(Frame {
                kind: FrameKind::Map { key: None, .. },
                ..
            }) => Slot::Key,
            Some(Frame {
                kind:
                    FrameKind::Map {
                        key: Some(PendingKey::Key(k, _)),
                        ..
                    },
                path,
                ..
            }) => Slot::Value(join(path, k)),
            // Merged values have no path of their own; their keys point at the mapping.
            Some(Frame {
                kind:
                    FrameKind::Map {
                        key: Some(PendingKey::Merge(_)),
                        ..
                    },
                path,
                ..
            }) => Slot::Value(path.clone()),
        }
    }

    /// Records where a node starts and returns its field path.
    fn start_node(&mut self, at: Pos) -> String {
        if !self.track && !self.stack.is_empty() {
            return String::new();
        }
        match self.slot() {
            Slot::Root => {
                self.start = Some(at);
                String::new()
            }
            Slot::Key => String::new(),
            Slot::Value(path) => {
                self.spans.push((path.clone(), at));
                path
            }
        }
    }

    fn open(&mut self, kind: FrameKind, anchor: usize, at: Pos) -> Result<(), Problem> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Problem {
                message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                pos: at,
                help: Some("flatten the document; no Kubernetes object nests this deep".to_owned()),
            });
        }
        let path = self.start_node(at);
        self.stack.push(Frame {
            kind,
            path,
            anchor,
            nodes: 1,
            pos: at,
        });
        Ok(())
    }

    fn close(&mut self) {
        let Some(frame) = self.stack.pop() else { return };
        let value = match frame.kind {
            FrameKind::Seq(items) => Value::Array(items),
            FrameKind::Map { map, key, .. } => {
                if let Some(PendingKey::Key(_, at) | PendingKey::Merge(at)) = key {
                    // The parser always pairs keys with values (an empty one at worst).
                    self.report("mapping key has no value".to_owned(), at, "give the key a value");
                }
                Value::Object(map)
            }
        };
        if frame.anchor != 0 {
            self.anchors.insert(frame.anchor, (value.clone(), frame.nodes));
        }
        self.deliver(value, frame.nodes, frame.pos, false);
    }

    /// Hands a finished node to its parent.
    fn deliver(&mut self, value: Value, nodes: u64, at: Pos, merge_key: bool) {
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(value);
            return;
        };
        parent.nodes = parent.nodes.saturating_add(nodes);
        let mut problem: Option<(String, Pos, &str)> = None;
        match &mut parent.kind {
            FrameKind::Seq(items) => items.push(value),
            FrameKind::Map { key: slot @ None, .. } => {
                *slot = Some(if merge_key {
                    PendingKey::Merge(at)
                } else {
                    match key_string(&value) {
                        Some(k) => PendingKey::Key(k, at),
                        None => {
                            problem = Some((
                                "mapping key is a list or a mapping".to_owned(),
                                at,
                                "use a string as the key",
                            ));
                            PendingKey::Key(value.to_string(), at)
                        }
                    }
                });
            }
            FrameKind::Map { map, key, merged } => match key.take() {
                Some(PendingKey::Key(k, key_at)) => {
                    if map.contains_key(&k) && !merged.remove(&k) {
                        problem = Some((
                            format!("mapping key {k:?} appears twice"),
                            key_at,
                            "remove one of the two entries",
                        ));
                    } else {
                        map.insert(k, value);
                    }
                }
                Some(PendingKey::Merge(_)) if !merge(map, merged, value) => {
                    problem = Some((
                        "merge key << needs a mapping or a list of mappings".to_owned(),
                        at,
                        "merge an anchored mapping, as in `<<: *defaults`",
                    ));
                }
                Some(PendingKey::Merge(_)) | None => {}
            },
        }
        if let Some((message, at, help)) = problem {
            self.report(message, at, help);
        }
    }

    /// Keeps the first problem: later ones are often consequences of it.
    fn report(&mut self, message: String, at: Pos, help: &str) {
        if self.problem.is_none() {
            self.problem = Some(Problem {
                message,
                pos: at,
                help: Some(help.to_owned()),
            });
        }
    }
}

/// Applies `<<: value`. Keys already present win, as do earlier mappings of a merged list.
fn merge(map: &mut Map<String, Value>, merged: &mut HashSet<String>, value: Value) -> bool {
    let sources = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => {
            let mut sources = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(m) => sources.push(m),
                    _ => return false,
                }
            }
            sources
        }
        _ => return false,
    };
    for source in sources {
        for (k, v) in source {
            if !map.contains_key(&k) {
                merged.insert(k.clone());
                map.insert(k, v);
            }
        }
    }
    true
}

/// Kubernetes labels and annotations may have keys such as `"1"` written as `1`: the API sees
/// them as strings, so we do too.
fn key_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col().saturating_add(1)).unwrap_or(u32::MAX),
    }
}

// === scalars ===

/// Resolves a scalar with the YAML 1.2 core schema, honouring explicit `!!` tags.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return Ok(untagged(text, style));
    };
    if tag.is_yaml_core_schema() {
        let value = match tag.suffix.as_str() {
            "str" => Some(Value::String(text.to_owned())),
            "null" => is_null(text).then_some(Value::Null),
            "bool" => boolean(text).map(Value::Bool),
            "int" => int(text),
            "float" => float(text).or_else(|| int(text).and_then(|v| v.as_f64()).and_then(finite)),
            // !!binary, !!timestamp and friends: Kubernetes reads them as their text.
            _ => return Ok(untagged(text, style)),
        };
        return value.ok_or_else(|| format!("{text:?} is not a valid !!{}", tag.suffix));
    }
    // The non-specific tag `!` means "not plain": a string. Application tags (`!Ref`) mean
    // nothing to Kubernetes and are ignored.
    if tag.handle.is_empty() && tag.suffix == "!" {
        return Ok(Value::String(text.to_owned()));
    }
    Ok(untagged(text, style))
}

fn untagged(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_owned());
    }
    if is_null(text) {
        return Value::Null;
    }
    if let Some(b) = boolean(text) {
        return Value::Bool(b);
    }
    int(text)
        .or_else(|| float(text))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn int(text: &str) -> Option<Value> {
    if let Some(hex) = text.strip_prefix("0x") {
        return radix(hex, 16);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return radix(oct, 8);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !all_digits(digits) {
        return None;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(u.into());
    }
    // Beyond 64 bits: a float, as Kubernetes' JSON decoding would read it.
    text.parse::<f64>().ok().and_then(finite)
}

fn radix(digits: &str, radix: u32) -> Option<Value> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().map(Value::from)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, plus `.inf` and `.nan`.
fn float(text: &str) -> Option<Value> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        // JSON has no infinity or NaN. Keeping the text makes a numeric field fail to decode
        // with a message that shows the value, instead of silently becoming something else.
        return Some(Value::String(text.to_owned()));
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => all_digits(frac),
        Some((whole, frac)) => all_digits(whole) && frac.bytes().all(|b| b.is_ascii_digit()),
        None => all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| all_digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok().and_then(finite)
}

fn finite(f: f64) -> Option<Value> {
    Number::from_f64(f).map(Value::Number)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_with_the_core_schema() {
        let cases: [(&str, Value); 22] = [
            ("", Value::Null),
            ("~", Value::Null),
            ("NULL", Value::Null),
            ("true", Value::Bool(true)),
            ("True", Value::Bool(true)),
            ("FALSE", Value::Bool(false)),
            ("yes", "yes".into()),
            ("80", 80.into()),
            ("-3", (-3).into()),
            ("+3", 3.into()),
            ("0x1F", 31.into()),
            ("0o17", 15.into()),
            ("0755", 755.into()),
            ("1.5", 1.5.into()),
            (".5", 0.5.into()),
            ("1e3", 1000.0.into()),
            ("-.inf", "-.inf".into()),
            (".nan", ".nan".into()),
            ("inf", "inf".into()),
            ("1.2.3", "1.2.3".into()),
            ("0x", "0x".into()),
            ("18446744073709551616", 18446744073709551616.0.into()),
        ];
        for (text, want) in cases {
            assert_eq!(resolve(text, ScalarStyle::Plain, None), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn quoted_scalars_and_tags() {
        let core = |suffix: &str| Tag {
            handle: "tag:yaml.org,2002:".to_owned(),
            suffix: suffix.to_owned(),
        };
        let cases = [
            ("80", ScalarStyle::DoubleQuoted, None, Ok(Value::from("80"))),
            ("true", ScalarStyle::SingleQuoted, None, Ok(Value::from("true"))),
            ("80", ScalarStyle::Plain, Some(core("str")), Ok(Value::from("80"))),
            ("80", ScalarStyle::DoubleQuoted, Some(core("int")), Ok(Value::from(80))),
            ("1", ScalarStyle::Plain, Some(core("float")), Ok(Value::from(1.0))),
            ("TRUE", ScalarStyle::Plain, Some(core("bool")), Ok(Value::Bool(true))),
            ("~", ScalarStyle::Plain, Some(core("null")), Ok(Value::Null)),
            (
                "abc",
                ScalarStyle::Plain,
                Some(core("int")),
                Err("\"abc\" is not a valid !!int".to_owned()),
            ),
        ];
        for (text, style, tag, want) in cases {
            assert_eq!(resolve(text, style, tag.as_ref()), want, "{text:?} {tag:?}");
        }
    }

    fn load(text: &str, spans: bool) -> Vec<(Value, Pos, Option<String>)> {
        let mut out = Vec::new();
        let opts = Options { line_offset: 10, spans };
        load_each(text, opts, |d| {
            out.push((d.value, d.start, d.problem.map(|p| p.message)))
        })
        .expect("loads");
        out
    }

    /// JSON documents take serde_json's path and give what the YAML loader gives (which the
    /// span-recording load always uses).
    #[test]
    fn json_documents_load_as_yaml_does() {
        let text = concat!(
            "{\"kind\": \"A\", \"n\": [1, -2, -0.0, -0e1, 1.5, 1e3, 18446744073709551615, 18446744073709551616, true, null],\n",
            "  \"s\": \"a\\u00e9\\n\\/\", \"o\": {}}\n",
            "---\n",
            "\n",
            "  {\"kind\": \"B\"}\n",
            "--- {\"kind\": \"C\", \"deep\": {\"x\": [{\"y\": \"z\"}]}}\n",
        );
        assert!(json_documents(text, 10).is_some(), "plain JSON takes the fast path");
        let (fast, yaml) = (load(text, false), load(text, true));
        assert_eq!(fast.len(), 3);
        assert_eq!(fast, yaml);
        assert_eq!(fast[1].1, Pos { line: 15, col: 3 });
        assert_eq!(fast[2].1, Pos { line: 16, col: 5 });
    }

    /// Anything but plain JSON objects is left to the YAML loader, which reports what is wrong.
    #[test]
    fn anything_else_goes_to_the_yaml_loader() {
        for text in [
            "{\"a\": 1, \"a\": 2}\n",
            "{\"a\": 1} # a comment\n",
            "{a: 1}\n",
            "--- !!map {\"a\": 1}\n",
            "{\"a\": 1}\n---\n",
            "{\"a\": 1}\n...\n",
            "{\"a\": -0}\n",
            "%YAML 1.2\n---\n{\"a\": 1}\n",
            "[1, 2]\n",
            "a: 1\n",
        ] {
            assert!(json_documents(text, 0).is_none(), "{text:?}");
            assert_eq!(load(text, false), load(text, true), "{text:?}");
        }
        let dup = load("{\"a\": 1, \"a\": 2}\n", false);
        assert!(
            dup[0].2.as_deref().is_some_and(|m| m.contains("appears twice")),
            "{dup:?}"
        );
        assert!(json_documents("\n\n", 0).is_some_and(|d| d.is_empty()));
    }
}
