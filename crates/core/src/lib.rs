//! The shared vocabulary of portier: object references, field paths, source spans, diagnostics and
//! host names. Every other crate speaks these types; this crate does no I/O.

mod diag;
mod host;
mod object;

pub use diag::{Diagnostic, Diagnostics, FieldPath, Severity, Span};
pub use host::{HostMatch, HostName, InvalidHost};
pub use object::{Kind, ObjectRef};

/// A monotonically increasing number that identifies one published snapshot.
pub type Generation = u64;
