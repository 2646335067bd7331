//! Library errors. The binary turns every one of them into the module-sdk
//! error JSON on stderr (`{"message":"..."}`) and exit code 1.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::violation::{Violation, join_violations};

#[derive(Debug, Error)]
pub enum HookError {
    #[error("read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write {what} {}: {source}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {what} {}: {source}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} {}: {message}", path.display())]
    Shape { what: &'static str, path: PathBuf, message: String },
    #[error("settings schema ({origin}): {message}")]
    Schema { origin: String, message: String },
    #[error("invalid settings: {}", join_violations(.0))]
    InvalidSettings(Vec<Violation>),
    #[error("{0}")]
    Usage(String),
}
