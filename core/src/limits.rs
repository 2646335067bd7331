//! What one workload's annotations may make the controller compile and keep.
//!
//! Sizes of compiled patterns below are `memory_usage()` of the compiled
//! regex, measured by `measured_sizes_of_usual_patterns` in the tests of `policy`.
//!
//! Their own module (re-exported as `policy::limits`), so that `pattern`,
//! which compiles entries under them, does not depend on `policy`.

/// Entries read from one list annotation; the rest are dropped (reported).
/// Reload and exclude lists name ConfigMaps/Secrets one by one or by a
/// few patterns; 64 is far above any list seen in practice.
pub const MAX_ENTRIES: usize = 64;
/// Characters of one entry. A resource name has at most 253; a pattern
/// matching one needs no more than that plus a little syntax.
pub const MAX_PATTERN_CHARS: usize = 256;
/// Limit on each automaton of one regex (Thompson NFA, one-pass DFA):
/// what `RegexBuilder::size_limit` sets. In ASCII mode (see `compile`)
/// the usual patterns need under 2 KiB of NFA (`app-.*` 440 bytes, a
/// full DNS-subdomain pattern 1.2 KiB); `(?i)app-[a-z]{1,63}` needs
/// 8 KiB and `[a-z0-9.-]{1,253}` 32 KiB, the largest a name pattern
/// sensibly gets. Unbounded, one Unicode `\w{200}` is 10 MiB of NFA.
pub const REGEX_SIZE_LIMIT: usize = 32 * 1024;
/// Cache of the lazy DFA (`RegexBuilder::dfa_size_limit`; the regex
/// crate's default is 2 MiB per regex). The cache lives only during one
/// match (see `KindPolicy::listed`); names are short, and when it is too
/// small the regex uses its other engines.
pub const REGEX_DFA_SIZE_LIMIT: usize = 64 * 1024;
/// Memory of the regexes of one list annotation together. A compiled
/// regex holds 1.6 KiB for a plain name, 1.7 KiB for `app-.*`, 2.4 KiB
/// for a DNS-subdomain pattern, 9.5 KiB for `(?i)app-[a-z]{1,63}`,
/// 37 KiB for `[a-z0-9.-]{1,253}`. 128 KiB holds a full list of 64
/// plain names or usual patterns. A workload has four list annotations
/// (two kinds, two spellings), so its regexes hold at most 512 KiB,
/// instead of 4 × 64 entries × 37 KiB ≈ 9.5 MiB under the per-regex
/// limit alone (and 540 MiB for 40 Unicode `\w{200}` with no limit).
/// Each list has its own budget so that a broken list leaves the
/// other kind's list working.
pub const LIST_REGEX_BUDGET: usize = 128 * 1024;
/// Nesting depth of a pattern (groups, repetitions); the default is 250.
pub const REGEX_NEST_LIMIT: u32 = 64;
/// A `paused-at` time as the controller writes it (RFC 3339) is about
/// 25 bytes; longer values are not kept (they are not ours).
pub const MAX_PAUSED_AT_BYTES: usize = 64;
