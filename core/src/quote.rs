//! Quoting values a user controls (annotation values, names read from
//! annotations) for logs, Events and error messages.
//!
//! An annotation value may be up to 256 KiB (the apiserver's limit for all
//! annotations of an object). Copied whole, a malformed one would fill log
//! lines and Event notes (which the apiserver caps at 1 KiB and rejects
//! beyond). Every quoted user value therefore goes through [`UserValue`]:
//! at most [`MAX_QUOTED_CHARS`] characters of its escaped form, followed by
//! a marker saying that and how much was cut.

use std::fmt;

/// How many characters of a user value (escaped, without the quotes) are shown.
pub const MAX_QUOTED_CHARS: usize = 256;

/// A user-controlled value, kept only as far as it may be shown.
///
/// Displays as a Rust/Go-style quoted string; a cut value ends with
/// `…(truncated, N bytes)` where N is the length of the whole value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserValue {
    head: String,
    total_bytes: usize,
}

impl UserValue {
    /// Keeps the longest prefix of `value` whose escaped form fits in
    /// [`MAX_QUOTED_CHARS`] characters.
    pub fn new(value: &str) -> Self {
        let mut shown = 0;
        let mut end = 0;
        for (i, c) in value.char_indices() {
            let width = c.escape_debug().count();
            if shown + width > MAX_QUOTED_CHARS {
                break;
            }
            shown += width;
            end = i + c.len_utf8();
        }
        UserValue { head: value[..end].to_string(), total_bytes: value.len() }
    }

    /// The part of the value that is kept (all of it when not cut).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// True when the value was longer than what is shown.
    pub fn is_cut(&self) -> bool {
        self.head.len() < self.total_bytes
    }
}

impl fmt::Display for UserValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.head.escape_debug())?;
        if self.is_cut() {
            write!(f, "…(truncated, {} bytes)", self.total_bytes)?;
        }
        Ok(())
    }
}

impl PartialEq<&str> for UserValue {
    fn eq(&self, other: &&str) -> bool {
        !self.is_cut() && self.head == *other
    }
}

/// Quotes a user value for a log field or message, cut as [`UserValue`] cuts.
pub fn quote(value: &str) -> UserValue {
    UserValue::new(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quote("[bad").to_string(), "\"[bad\"");
        assert_eq!(quote("a\"b\nc").to_string(), "\"a\\\"b\\nc\"");
        assert_eq!(quote("").to_string(), "\"\"");
        assert!(!quote(&"x".repeat(MAX_QUOTED_CHARS)).is_cut());
    }

    #[test]
    fn long_values_are_cut_and_marked() {
        let long = "x".repeat(256 * 1024);
        let q = quote(&long);
        assert!(q.is_cut());
        assert_eq!(q.head().len(), MAX_QUOTED_CHARS);
        let shown = q.to_string();
        assert!(shown.ends_with("…(truncated, 262144 bytes)"), "{shown}");
        assert!(shown.chars().count() < MAX_QUOTED_CHARS + 40, "{}", shown.len());
    }

    #[test]
    fn the_escaped_form_counts_and_cuts_fall_on_char_boundaries() {
        // Each NUL escapes to `\0` (2 chars): 128 of them fill the budget.
        let q = quote(&"\0".repeat(1000));
        assert_eq!(q.head().len(), 128);
        // Multi-byte characters are never split.
        let q = quote(&"é".repeat(1000));
        assert_eq!(q.head().chars().count(), MAX_QUOTED_CHARS);
        assert!(q.to_string().contains("(truncated, 2000 bytes)"));
        // One character past the budget is cut.
        assert!(quote(&"y".repeat(MAX_QUOTED_CHARS + 1)).is_cut());
    }
}
