//! Compiled reload-list entries, shared by every workload that lists the
//! same text.
//!
//! A hundred workloads carrying `app-config,db-.*` hold one compiled regex
//! per entry between them, not a hundred: the pool hands out an `Arc` of
//! the entry compiled first and keeps only a weak reference to it itself,
//! so a compiled pattern is freed as soon as no policy uses it. The slots
//! of freed patterns (their text and an empty weak pointer) are swept when
//! the pool has grown to twice what was alive at the last sweep, so the
//! pool holds at most about twice the patterns in use, plus
//! [`MIN_SWEEP_AT`].
//!
//! Pure: a map behind a mutex, no I/O. Patterns are compiled outside the
//! lock, so watch streams of other kinds are not held up by a compile.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use regex_automata::meta::Regex;

use crate::pattern::{PatternError, compile};

/// One list entry as written and its compiled, anchored regex.
#[derive(Debug)]
pub struct CompiledPattern {
    pub pattern: String,
    pub regex: Regex,
    /// Memory held: the regex's `memory_usage()` and the text.
    size: usize,
}

impl CompiledPattern {
    /// Bytes this pattern's automata and text hold, as the per-list budget
    /// (`policy::limits::LIST_REGEX_BUDGET`) counts them.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes this pattern takes from the process, as the namespace budget
    /// (`list_budget`) counts them: [`Self::size`] and what every compiled
    /// regex holds besides its automata ([`REGEX_OVERHEAD`]).
    pub fn held(&self) -> usize {
        self.size + REGEX_OVERHEAD
    }
}

/// Heap a compiled regex holds that its `memory_usage()` leaves out (the
/// cache pool, the engine wrappers, allocator rounding). Measured: 20,000
/// distinct literal patterns grew a test process's RSS by 6.5 KiB each,
/// where `memory_usage()` said 1.8 KiB.
pub const REGEX_OVERHEAD: usize = 5 * 1024;

/// Slots the pool may hold before its first sweep of freed patterns.
pub const MIN_SWEEP_AT: usize = 1024;

/// The interner of compiled list entries, keyed by the entry's text.
pub struct PatternPool {
    slots: Mutex<Slots>,
}

struct Slots {
    by_text: HashMap<Box<str>, Weak<CompiledPattern>>,
    sweep_at: usize,
}

impl Default for PatternPool {
    fn default() -> Self {
        PatternPool { slots: Mutex::new(Slots { by_text: HashMap::new(), sweep_at: MIN_SWEEP_AT }) }
    }
}

impl PatternPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pool every policy of this process compiles its lists through.
    pub fn global() -> &'static PatternPool {
        static POOL: LazyLock<PatternPool> = LazyLock::new(PatternPool::new);
        &POOL
    }

    /// The compiled `pattern`: the one in use if any policy holds it,
    /// otherwise compiled now (see [`compile`]). Errors are not kept: a
    /// pattern that does not compile is compiled again when listed again,
    /// which happens only when some workload's annotations change.
    pub fn get(&self, pattern: &str) -> Result<Arc<CompiledPattern>, PatternError> {
        if let Some(live) = self.lock().by_text.get(pattern).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let regex = compile(pattern)?;
        let size = regex.memory_usage() + pattern.len();
        let fresh = Arc::new(CompiledPattern { pattern: pattern.to_string(), regex, size });
        let mut slots = self.lock();
        // Another stream may have compiled the same text meanwhile: one copy is kept.
        if let Some(live) = slots.by_text.get(pattern).and_then(Weak::upgrade) {
            return Ok(live);
        }
        slots.by_text.insert(pattern.into(), Arc::downgrade(&fresh));
        slots.sweep_if_grown();
        Ok(fresh)
    }

    /// How many compiled patterns some policy still holds.
    pub fn live(&self) -> usize {
        self.lock().by_text.values().filter(|w| w.strong_count() > 0).count()
    }

    /// How many slots the pool holds, freed ones not swept yet included.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.lock().by_text.len()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Nothing panics while the lock is held; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slots {
    fn sweep_if_grown(&mut self) {
        if self.by_text.len() >= self.sweep_at {
            self.by_text.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = (2 * self.by_text.len()).max(MIN_SWEEP_AT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_compiled_pattern() {
        let pool = PatternPool::new();
        let a = pool.get("app-.*").unwrap();
        let b = pool.get("app-.*").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &pool.get("db-.*").unwrap()));
        assert!(a.regex.is_match("app-config"));
        assert!(a.size() > 1000, "{}", a.size());
        assert!(matches!(pool.get("[bad"), Err(PatternError::Syntax(_))));
        assert_eq!(pool.live(), 1, "db-.* was dropped at once, [bad never kept");
    }

    #[test]
    fn patterns_no_policy_uses_are_freed_and_their_slots_swept() {
        let pool = PatternPool::new();
        let a = pool.get("app-.*").unwrap();
        let weak = Arc::downgrade(&a);
        let b = pool.get("app-.*").unwrap();
        drop(a);
        assert!(weak.upgrade().is_some(), "still held by b");
        drop(b);
        assert!(weak.upgrade().is_none(), "freed with its last user");
        assert_eq!(pool.live(), 0);
        // Compiled again when listed again.
        let again = pool.get("app-.*").unwrap();
        assert!(again.regex.is_match("app-x"));
        // Many patterns used once and dropped: the slots stay bounded.
        let kept: Vec<_> = (0..10).map(|i| pool.get(&format!("kept-{i}")).unwrap()).collect();
        for i in 0..5 * MIN_SWEEP_AT {
            drop(pool.get(&format!("once-{i}")).unwrap());
        }
        assert!(pool.slots() <= MIN_SWEEP_AT, "{} slots", pool.slots());
        assert_eq!(pool.live(), kept.len() + 1);
    }
}
