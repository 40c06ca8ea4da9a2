//! cert-manager's configuration objects as the acme crate receives them. The types live in the
//! snapshot (compile writes them as certificate demand; this crate reads them), so the crate
//! needs nothing upstream of the snapshot (ARCHITECTURE.md, dependency rule).

pub use portier_snapshot::certificates::*;
