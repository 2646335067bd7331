//! Test support for the Deckhouse module package (`module.yaml`, `openapi/`,
//! `templates/`, `monitoring/`): the matrix of settings cases in
//! `tests/module/values/`, their Helm values as addon-operator builds them
//! (the schema's defaults through the hooks' own schema code, then every
//! beforeHelm hook run in-process), the chart rendered by real Helm, and the
//! tools the checks call (helm, kubectl, kubeconform, promtool, dmt).
//!
//! - [`tools`]: where the repository, the test bed and each tool are.
//! - [`values`]: a case's Helm values.
//! - [`render`]: `helm template` and the rendered objects.
//! - [`golden`], [`kubeschema`], [`dmt`]: what the golden, kubeconform and dmt checks read.
//! - [`fixtures`]: CRD fixtures and namespaces on the test bed.
//! - [`yaml`]: YAML documents as JSON values.
//!
//! The checks themselves are the integration tests under `tests/`, one job a
//! file; the RBAC and config checks that run the controller live in
//! `controller/tests/module_*.rs`.

pub mod dmt;
pub mod fixtures;
pub mod golden;
pub mod kubeschema;
pub mod render;
pub mod tools;
pub mod values;
pub mod yaml;
