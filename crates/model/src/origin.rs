use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use portier_core::{FieldPath, Span};

/// Where an object came from. Objects read from files carry their positions (a [`SpanMap`], or a
/// [`Locate`] that finds them on demand) so that diagnostics can point at `file:line:col`; objects
/// from the Kubernetes API carry none and show only the field path.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    spans: Option<Arc<dyn Locate>>,
}

/// Positions of the fields of one object, however they are kept. The files provider keeps the
/// text of each document and parses it again when a diagnostic asks: positions are needed for a
/// handful of fields, and a table of every field of every object would cost more memory than the
/// objects themselves.
pub trait Locate: fmt::Debug + Send + Sync {
    /// The file the object was read from, as spans name it.
    fn file(&self) -> &Arc<str>;

    /// The position of `path` (`spec.rules[0].host`), or of its nearest ancestor that has one.
    fn locate(&self, path: &str) -> Span;
}

/// Positions of every field of one YAML document, keyed by field path (`spec.rules[0].host`).
#[derive(Debug, Clone)]
pub struct SpanMap {
    file: Arc<str>,
    /// Where the document starts: the fallback for a path that has no position of its own.
    doc: (u32, u32),
    fields: HashMap<String, (u32, u32)>,
}

// === impl Origin ===

impl Origin {
    /// An origin with no position information (the Kubernetes API, tests).
    pub fn none() -> Self {
        Self { spans: None }
    }

    pub fn file(spans: SpanMap) -> Self {
        Self {
            spans: Some(Arc::new(spans)),
        }
    }

    /// An origin whose positions are found on demand.
    pub fn located(spans: Arc<dyn Locate>) -> Self {
        Self { spans: Some(spans) }
    }

    pub fn file_name(&self) -> Option<&str> {
        self.spans.as_deref().map(|s| &**s.file())
    }

    /// The position of `path`, or of its nearest ancestor that has one (a defaulted field points at
    /// the object that lacks it).
    pub fn span(&self, path: &FieldPath) -> Option<Span> {
        self.spans.as_ref().map(|s| s.locate(path.as_str()))
    }
}

// === impl SpanMap ===

impl SpanMap {
    pub fn new(file: Arc<str>, doc_line: u32, doc_col: u32) -> Self {
        Self {
            file,
            doc: (doc_line, doc_col),
            fields: HashMap::new(),
        }
    }

    /// Records the position of a field's value. Lines and columns start at 1.
    pub fn insert(&mut self, path: String, line: u32, col: u32) {
        self.fields.insert(path, (line, col));
    }

    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    pub fn lookup(&self, path: &str) -> Span {
        let (line, col) = lookup_in(path, self.doc, |p| self.fields.get(p).copied());
        Span {
            file: self.file.clone(),
            line,
            col,
        }
    }
}

impl Locate for SpanMap {
    fn file(&self) -> &Arc<str> {
        &self.file
    }

    fn locate(&self, path: &str) -> Span {
        self.lookup(path)
    }
}

/// The position `find` knows for `path`, or for its nearest ancestor (`spec.rules[0].host` →
/// `spec.rules[0]` → `spec.rules` → `spec`), or `root` when none has one.
pub fn lookup_in(path: &str, root: (u32, u32), find: impl Fn(&str) -> Option<(u32, u32)>) -> (u32, u32) {
    let mut p = path;
    loop {
        if let Some(pos) = find(p) {
            return pos;
        }
        match p.rfind(['.', '[']) {
            Some(i) => p = &p[..i],
            None => return root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_falls_back_to_ancestors() {
        let mut m = SpanMap::new("a.yaml".into(), 1, 1);
        m.insert("spec".into(), 5, 3);
        m.insert("spec.rules[0]".into(), 7, 5);
        let cases = [
            ("spec.rules[0]", (7, 5)),
            ("spec.rules[0].http.paths[2]", (7, 5)),
            ("spec.rules[1]", (5, 3)),
            ("metadata.name", (1, 1)),
            ("", (1, 1)),
        ];
        for (path, (line, col)) in cases {
            let s = m.lookup(path);
            assert_eq!((s.line, s.col), (line, col), "{path}");
        }
    }
}
