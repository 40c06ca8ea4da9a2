//! A directory of manifest files → one `Change::Resync` per scan.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portier_core::{Diagnostic, FieldPath, Span};
use portier_model::{Change, Resource};

use crate::manifest;

/// Files larger than this are refused: a manifest directory holds configuration, not data, and
/// the cap bounds the memory one stray file can take.
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// Reads every `*.yaml` and `*.yml` file under a directory (recursively, in path order) and keeps
/// what it read, so that a file caught mid-edit with broken YAML does not take its objects away.
#[derive(Debug)]
pub struct FileProvider {
    root: PathBuf,
    files: BTreeMap<PathBuf, Cached>,
    /// How the objects of the last scan sorted, for the next one: an edit that keeps every id
    /// where it was (the usual change of a field) sorts nothing again.
    order: Option<Order>,
}

/// The objects of one scan in file order, and how their ids sorted.
#[derive(Debug)]
struct Order {
    all: Vec<Arc<Resource>>,
    /// Positions in `all` of the first definition of each id, in id order.
    firsts: Vec<usize>,
    /// Later definition → first definition, in file order.
    later: Vec<(usize, usize)>,
}

/// The manifest directory itself cannot be read. Problems with single files are diagnostics.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot read manifest directory {}: check that it exists and that portier may read it", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch manifest directory {}: check that it exists, and raise fs.inotify.max_user_watches if it is exhausted", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// What one file held the last time it was read.
#[derive(Debug)]
struct Cached {
    /// The last version whose YAML parsed, in chunks of documents with their objects: an edit
    /// parses again only the chunks it changed.
    chunks: Vec<manifest::Chunk>,
    /// The bytes last read when they did not parse (`None`: they are the text of `chunks`). An
    /// unchanged file is not parsed again; comparing content rather than mtime stays correct for
    /// edits within the file system's timestamp granularity.
    broken: Option<Vec<u8>>,
    /// Problems in the version last read.
    diagnostics: Vec<Diagnostic>,
}

// === impl FileProvider ===

impl FileProvider {
    /// A provider for `dir`. Nothing is read until [`FileProvider::scan`]. A path to a single file
    /// is accepted too, for `portier check app.yaml`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            root: dir.into(),
            files: BTreeMap::new(),
            order: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Reads the directory again and returns everything it holds now, in id order. This does
    /// blocking file I/O. Fails only when the directory itself cannot be read; everything else is
    /// a diagnostic.
    pub fn scan(&mut self) -> Result<Change, ProviderError> {
        let walk = walk(&self.root)?;
        let mut diagnostics = walk.diagnostics;
        let mut files = BTreeMap::new();
        for path in walk.files {
            let previous = self.files.remove(&path);
            let (cached, failure) = read(&path, previous);
            diagnostics.extend(cached.diagnostics.iter().cloned());
            diagnostics.extend(failure);
            files.insert(path, cached);
        }
        // A directory we could not list this time may still hold its files: keep what we had
        // rather than dropping objects because of a transient permission or I/O error.
        for (path, cached) in std::mem::take(&mut self.files) {
            if walk.unreadable.iter().any(|dir| path.starts_with(dir)) {
                files.insert(path, cached);
            }
        }
        self.files = files;

        let all: Vec<Arc<Resource>> = self
            .files
            .values()
            .flat_map(|c| manifest::resources(&c.chunks))
            .cloned()
            .collect();
        // The same ids in the same places: the previous sort holds. Unchanged documents share
        // their objects with the last scan, so most ids compare by address, without a cache miss.
        let reuse = self.order.take().filter(|o| {
            o.all.len() == all.len() && o.all.iter().zip(&all).all(|(a, b)| Arc::ptr_eq(a, b) || a.id == b.id)
        });
        let Order { firsts, later, .. } = match reuse {
            Some(o) => o,
            None => sort(&all),
        };
        let resources: Vec<Arc<Resource>> = firsts.iter().map(|&i| Arc::clone(&all[i])).collect();
        for &(i, first) in &later {
            let r = &all[i];
            // Positions are looked up only here: finding one parses its document again.
            let name = FieldPath::new("metadata.name");
            let first = all[first]
                .origin
                .span(&name)
                .map_or_else(|| "another file".to_owned(), |s| s.to_string());
            diagnostics.push(
                Diagnostic::error(format!("duplicate definition; the one at {first} is used"))
                    .object(r.id.clone())
                    .span(r.origin.span(&name))
                    .help(format!(
                        "remove one of the two definitions, or rename one (first at {first})"
                    )),
            );
        }
        tracing::debug!(
            dir = %self.root.display(),
            files = self.files.len(),
            resources = resources.len(),
            diagnostics = diagnostics.len(),
            "manifests scanned"
        );
        self.order = Some(Order { all, firsts, later });
        Ok(Change::Resync { resources, diagnostics })
    }
}

/// The first definition of an id (in path order, then file order) wins. Sorting finds the others
/// faster than a map of ids would, and hands the model the objects in the order it keeps them in.
fn sort(all: &[Arc<Resource>]) -> Order {
    let order = portier_model::order_by_id(all.iter().map(|r| &r.id));
    let mut firsts = Vec::with_capacity(all.len());
    let mut later: Vec<(usize, usize)> = Vec::new();
    for run in order.chunk_by(|&a, &b| all[a].id == all[b].id) {
        if let Some((&first, rest)) = run.split_first() {
            firsts.push(first);
            later.extend(rest.iter().map(|&i| (i, first)));
        }
    }
    later.sort_unstable();
    Order {
        all: Vec::new(),
        firsts,
        later,
    }
}

/// Reads and parses one file, reusing the previous result when the content is unchanged. The
/// second value is a problem with this read only (it is not cached).
fn read(path: &Path, previous: Option<Cached>) -> (Cached, Option<Diagnostic>) {
    let label: Arc<str> = path.display().to_string().into();
    let at_start = || {
        Some(Span {
            file: label.clone(),
            line: 1,
            col: 1,
        })
    };
    let keep = |previous: Option<Cached>| {
        previous.unwrap_or(Cached {
            chunks: Vec::new(),
            broken: None,
            diagnostics: Vec::new(),
        })
    };
    let content = match read_capped(path) {
        Ok(content) => content,
        Err(ReadError::TooLarge(len)) => {
            let d = Diagnostic::error(format!(
                "file is {len} bytes, more than the {MAX_FILE_SIZE} bytes portier reads"
            ))
            .span(at_start())
            .help(kept_help("split the file", previous.as_ref()));
            return (keep(previous), Some(d));
        }
        Err(ReadError::Io(e)) => {
            let d = Diagnostic::error(format!("cannot read file: {e}"))
                .span(at_start())
                .help(kept_help("check the file's permissions", previous.as_ref()));
            return (keep(previous), Some(d));
        }
    };
    let previous = match previous {
        Some(p) if p.same_content(&content) => return (p, None),
        other => other,
    };
    let known = previous.as_ref().map_or(&[][..], |p| &p.chunks[..]);
    let parsed = match std::str::from_utf8(&content) {
        Err(e) => Err(Box::new(
            Diagnostic::error(format!("file is not UTF-8: {e}")).span(at_start()),
        )),
        Ok(text) => manifest::parse_chunks(&label, text, known),
    };
    match parsed {
        Ok(chunks) => {
            let diagnostics = chunks.iter().flat_map(|c| c.diagnostics.iter().cloned()).collect();
            (
                Cached {
                    chunks,
                    broken: None,
                    diagnostics,
                },
                None,
            )
        }
        Err(d) => {
            let help = kept_help(d.help.as_deref().unwrap_or("fix the YAML"), previous.as_ref());
            let d = (*d).help(help);
            let chunks = previous.map(|p| p.chunks).unwrap_or_default();
            (
                Cached {
                    chunks,
                    broken: Some(content),
                    diagnostics: vec![d],
                },
                None,
            )
        }
    }
}

// === impl Cached ===

impl Cached {
    /// Whether `content` is what this file held when it was last read.
    fn same_content(&self, content: &[u8]) -> bool {
        match &self.broken {
            Some(bytes) => bytes == content,
            None => manifest::same_text(&self.chunks, content),
        }
    }
}

/// Tells the operator that a broken file still serves its last good version.
fn kept_help(what_to_do: &str, previous: Option<&Cached>) -> String {
    match previous.map_or(0, |p| manifest::resources(&p.chunks).count()) {
        0 => what_to_do.to_owned(),
        1 => format!("{what_to_do}; until then portier keeps the 1 object this file held before"),
        n => format!("{what_to_do}; until then portier keeps the {n} objects this file held before"),
    }
}

enum ReadError {
    TooLarge(u64),
    Io(io::Error),
}

fn read_capped(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = fs::File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > MAX_FILE_SIZE {
        return Err(ReadError::TooLarge(len));
    }
    // The file may grow between stat and read: read at most one byte past the cap to notice.
    let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut content)
        .map_err(ReadError::Io)?;
    let read = u64::try_from(content.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_SIZE {
        return Err(ReadError::TooLarge(read));
    }
    Ok(content)
}

struct Walk {
    /// Manifest files, sorted by path.
    files: Vec<PathBuf>,
    /// Subdirectories that could not be listed.
    unreadable: Vec<PathBuf>,
    diagnostics: Vec<Diagnostic>,
}

/// Lists manifest files under `root`, following symbolic links (a mounted ConfigMap's files are
/// links) but skipping names that start with '.': a ConfigMap volume also holds `..data` and
/// `..2024_01_01_…` directories that would list every file twice.
fn walk(root: &Path) -> Result<Walk, ProviderError> {
    let mut walk = Walk {
        files: Vec::new(),
        unreadable: Vec::new(),
        diagnostics: Vec::new(),
    };
    let read_dir_error = |source| ProviderError::ReadDir {
        path: root.to_owned(),
        source,
    };
    let meta = fs::metadata(root).map_err(read_dir_error)?;
    if meta.is_file() {
        walk.files.push(root.to_owned());
        return Ok(walk);
    }
    // Linked directories can form loops; each real directory is listed once.
    let mut visited = HashSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        if let Ok(real) = fs::canonicalize(&dir) {
            if !visited.insert(real) {
                continue;
            }
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(read_dir_error(e)),
            Err(e) => {
                walk.diagnostics.push(unreadable_dir(&dir, &e));
                walk.unreadable.push(dir);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    walk.diagnostics.push(unreadable_dir(&dir, &e));
                    walk.unreadable.push(dir.clone());
                    continue;
                }
            };
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // `fs::metadata` follows links, so a link to a file counts as a file.
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => pending.push(path),
                Ok(m) if m.is_file() && is_manifest(&path) => walk.files.push(path),
                Ok(_) => {}
                // A dangling link, or a file deleted while we list: nothing to read.
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "skipping unreadable entry"),
            }
        }
    }
    walk.files.sort();
    walk.files.dedup();
    Ok(walk)
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn unreadable_dir(dir: &Path, e: &io::Error) -> Diagnostic {
    Diagnostic::error(format!("cannot list directory {}: {e}", dir.display()))
        .help("check the directory's permissions; until then portier keeps the objects it read from it before")
}
