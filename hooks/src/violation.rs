//! What is wrong with the settings, one finding at a time. Its own module
//! because both the schema check (which finds violations) and the error type
//! (which carries them) name it, and neither should import the other for it.

use std::fmt;

/// A violation of the settings: where (a JSON path such as
/// `$.alerting.webhook.url`) and what is wrong, with the allowed values when
/// the schema names them. Values of secret-bearing settings are never
/// quoted (the schema's `SECRET_BEARING`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The violations as one line, in order, `; `-separated.
pub fn join_violations(violations: &[Violation]) -> String {
    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
}
