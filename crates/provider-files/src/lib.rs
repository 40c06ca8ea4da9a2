//! The files provider: reads a directory of Kubernetes manifests into the model, with the
//! `file:line:col` of every field, and watches it for changes.
//!
//! - [`parse_manifests`] turns one file's text into resources and diagnostics. It is pure and
//!   never panics, whatever the input (it is a fuzz target).
//! - [`FileProvider`] scans a directory into a `Change::Resync`, keeping the last good objects
//!   of a file whose YAML is broken, so a half-saved edit does not take routes down.
//! - [`watch`] says when to scan again.

mod manifest;
mod provider;
mod watch;
mod yaml;

use portier_core::Diagnostic;
use portier_model::Resource;

pub use provider::{FileProvider, ProviderError, MAX_FILE_SIZE};
pub use watch::{watch, Watcher};

/// What one file holds: the objects portier reads, and why anything else was left out.
#[derive(Debug, Default)]
pub struct Parsed {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses a multi-document YAML file. `file` is the label used in spans (`manifests/app.yaml`).
///
/// Kinds portier does not read are skipped. Documents that are not valid objects become
/// diagnostics and the rest of the file is still read, but a YAML syntax error (or a nesting or
/// alias limit) makes the whole file one diagnostic with no objects.
pub fn parse_manifests(file: &str, text: &str) -> Parsed {
    manifest::parse_file(&file.into(), text).unwrap_or_else(|d| Parsed {
        resources: Vec::new(),
        diagnostics: vec![*d],
    })
}

/// For the fuzz target: a text read by serde_json ([`yaml`]'s fast path for JSON) gives the values
/// the YAML loader gives. Panics when they differ.
#[cfg(fuzzing)]
pub fn check_json_fast_path(text: &str) {
    yaml::check_json_fast_path(text);
}

// A failed unwrap is how a test reports a broken fixture; the lint guards input handling.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
