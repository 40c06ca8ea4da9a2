use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::ObjectRef;

/// A path to a field inside an object, in the notation `kubectl explain` uses:
/// `spec.rules[0].http.paths[1].backend.service.port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FieldPath(String);

/// A position in a manifest file. Lines and columns start at 1, as editors count them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object (or the part of it named by the field) is left out of the configuration.
    Error,
    /// The configuration is served, but probably not as the author meant.
    Warning,
}

/// One problem found in the configuration: which object, which field, where in which file, what is
/// wrong, and what to do about it (STYLE.md §5).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldPath>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// An append-only list of diagnostics with a small builder API.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

// === impl FieldPath ===

impl FieldPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    pub fn new(path: impl Into<String>) -> Self {
        Self(path.into())
    }

    /// Appends a field name: `spec` + `rules` = `spec.rules`.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// Appends a list index: `spec.rules` + 0 = `spec.rules[0]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// Appends a dotted suffix such as `backend.service.port`.
    pub fn join(&self, suffix: &str) -> Self {
        suffix.split('.').fold(self.clone(), |p, f| p.field(f))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

// === impl Span ===

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

// === impl Severity ===

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

// === impl Diagnostic ===

impl Diagnostic {
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            object: None,
            field: None,
            message: message.into(),
            span: None,
            help: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, message)
    }

    pub fn object(mut self, object: ObjectRef) -> Self {
        self.object = Some(object);
        self
    }

    pub fn field(mut self, field: FieldPath) -> Self {
        self.field = (!field.is_root()).then_some(field);
        self
    }

    pub fn span(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn set_help(&mut self, help: impl Into<String>) {
        self.help = Some(help.into());
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The one-line headline without the severity: `Ingress shop/web: spec.tls[0]: message`.
    pub fn headline(&self) -> String {
        let mut s = String::new();
        if let Some(o) = &self.object {
            s.push_str(&o.to_string());
            s.push_str(": ");
        } else if let Some(span) = &self.span {
            s.push_str(&span.file);
            s.push_str(": ");
        }
        if let Some(f) = &self.field {
            s.push_str(f.as_str());
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

/// Renders as `portier check` prints it:
/// ```text
/// error: Ingress shop/web: spec.tls[0].secretName: Secret shop/web-tls not found
///   --> manifests/shop.yaml:14:21
///   help: create the Secret, or remove this tls entry to serve the host over plain HTTP
/// ```
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.headline())?;
        if let Some(span) = &self.span {
            write!(f, "\n  --> {span}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

// === impl Diagnostics ===

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// Pushes and returns the diagnostic, so the caller can add a help line it only now knows.
    pub fn push_mut(&mut self, d: Diagnostic) -> &mut Diagnostic {
        let i = self.list.len();
        self.list.push(d);
        &mut self.list[i]
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.list.extend(ds);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// Sorted by file position, then object, so output is deterministic whatever order compile
    /// visited things in.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by(|a, b| {
            (&a.span, &a.object, &a.field, &a.message).cmp(&(&b.span, &b.object, &b.field, &b.message))
        });
        self.list.dedup();
        self.list
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<T: IntoIterator<Item = Diagnostic>>(iter: T) -> Self {
        Self {
            list: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn renders_like_style_guide() {
        let d = Diagnostic::error("Secret shop/web-tls not found")
            .object(ObjectRef::namespaced(Kind::Ingress, "shop", "web"))
            .field(FieldPath::new("spec.tls").index(0).field("secretName"))
            .span(Some(Span {
                file: "manifests/shop.yaml".into(),
                line: 14,
                col: 21,
            }))
            .help("create the Secret");
        assert_eq!(
            d.to_string(),
            "error: Ingress shop/web: spec.tls[0].secretName: Secret shop/web-tls not found\n  --> manifests/shop.yaml:14:21\n  help: create the Secret"
        );
    }
}
