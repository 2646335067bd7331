//! What the hooks' test files share.

use std::path::PathBuf;

/// The module directory (the repository root, one level above `hooks/`).
/// Read at run time: `cargo test` sets `CARGO_MANIFEST_DIR`, and a target
/// directory shared by two checkouts can run a test binary built in the
/// other checkout, whose compiled-in path is the other's.
pub fn module_dir() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir.join("..")
}
