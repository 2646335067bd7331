//! Pure logic of pod-reloader, shared by the controller and the module hooks.
//!
//! Nothing here performs I/O: every function takes plain values (k8s-openapi
//! types or our own) and returns plain values, so all of it is unit-tested
//! without a cluster. The controller feeds watch events in and executes the
//! patches this crate plans.

#![forbid(unsafe_code)]

pub mod alert;
pub mod annotations;
pub mod baseline_store;
pub mod chosen_keys;
pub mod decision;
pub mod duration;
pub mod envvar;
pub mod explain;
pub mod facts;
pub mod hash;
pub mod hex;
pub mod index;
pub mod keys;
pub mod kinds;
pub mod limits;
pub mod list_budget;
pub mod ondelete;
pub mod patch;
pub mod pattern;
pub mod pattern_pool;
pub mod policy;
pub mod policy_cache;
pub mod quote;
pub mod reconcile;
pub mod record;
pub mod references;
pub mod selector;
pub mod settings;

pub use hash::ContentHash;
pub use keys::{ResourceKey, ResourceKind, WorkloadKey};
pub use kinds::{KindSpec, WorkloadKind};
