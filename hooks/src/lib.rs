//! pod-reloader's Deckhouse module hooks: one binary that answers
//! addon-operator's batch hook protocol as a module-sdk binary does (`hook
//! list`, `hook config`, `hook run <index>`, `hook ready`, `hook check`).
//!
//! - [`schema`]: the settings schema (`openapi/config-values.yaml`), compiled once.
//! - [`violation`]: what is wrong with the settings (the schema's and the hooks' findings).
//! - [`protocol`]: files, binding contexts, values patches, metrics.
//! - [`settings`]: the module settings as read from the values.
//! - [`controller_config`], [`rbac`], [`netpol`], [`record_key`]: what the hooks compute.
//! - [`hooks`]: the hooks, their configs, `hook check`.
//! - [`cli`]: the commands.

#![forbid(unsafe_code)]

pub mod cli;
pub mod controller_config;
pub mod error;
pub mod hooks;
pub mod netpol;
pub mod protocol;
pub mod rbac;
pub mod record_key;
pub mod schema;
pub mod settings;
pub mod spelling;
pub mod violation;
