//! Compiling one reload-list entry into its anchored regex, under the
//! size limits of [`crate::limits`]. Used by `pattern_pool` (which shares
//! compiled entries) and, through it, by `policy`.

use regex_automata::MatchKind;
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;

use crate::limits;

/// Why a list entry was not compiled (or not kept).
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("invalid regular expression: {0}")]
    Syntax(String),
    #[error("regular expression too large (compiled size over the {} KiB limit)", limits::REGEX_SIZE_LIMIT / 1024)]
    TooLarge,
    #[error("the entries of this list together compile to over {} KiB", limits::LIST_REGEX_BUDGET / 1024)]
    OverBudget,
}

/// Compiles a list entry as Reloader does (`^entry$`), bounded.
///
/// ASCII mode first: the names matched are Kubernetes names (ASCII), on
/// which ASCII and Unicode classes agree, and Go's `regexp` (Reloader's)
/// has ASCII `\w`, `\d`, `\s` and `\b` too. Unicode classes make automata
/// hundreds of times larger (`\w{200}`: 19 KiB of NFA in ASCII mode, 10 MiB
/// in Unicode mode). Only a pattern that ASCII mode refuses (`\pL`) is
/// tried again in Unicode mode, under the same limits.
///
/// Built with regex-automata's `meta::Regex`, the engine behind
/// `regex::Regex`, configured as `RegexBuilder` would be, because it also
/// limits the one-pass DFA, which `RegexBuilder::size_limit` leaves at 1 MiB
/// per regex, and reports the memory a compiled regex holds
/// (for [`limits::LIST_REGEX_BUDGET`]).
pub fn compile(pattern: &str) -> Result<Regex, PatternError> {
    let anchored = format!("^{pattern}$");
    let config = meta::Config::new()
        .match_kind(MatchKind::LeftmostFirst)
        .utf8_empty(false)
        .nfa_size_limit(Some(limits::REGEX_SIZE_LIMIT))
        .onepass_size_limit(Some(limits::REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(limits::REGEX_DFA_SIZE_LIMIT)
        // No fully compiled DFA: its size grows with the automaton, not the pattern.
        .dfa(false);
    let build = |unicode: bool| {
        meta::Builder::new()
            .configure(config.clone())
            .syntax(syntax::Config::new().unicode(unicode).utf8(false).nest_limit(limits::REGEX_NEST_LIMIT))
            .build(&anchored)
            .map_err(|e| pattern_error(&e))
    };
    build(false).or_else(|_| build(true))
}

fn pattern_error(e: &meta::BuildError) -> PatternError {
    if e.size_limit().is_some() {
        PatternError::TooLarge
    } else if let Some(syntax) = e.syntax_error() {
        PatternError::Syntax(first_line(&syntax.to_string()))
    } else {
        PatternError::Syntax(first_line(&e.to_string()))
    }
}

/// regex errors span several lines with a caret diagram; an event wants one.
fn first_line(s: &str) -> String {
    s.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or(s).to_string()
}
