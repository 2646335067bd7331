//! The chart rendered by real Helm (`helm template`) from a case's values.

use std::process::Command;

use serde_json::Value;

use crate::tools::{self, root};
use crate::values::{self, Case};
use crate::yaml;

/// The namespace the chart is rendered for.
pub const NAMESPACE: &str = "d8-pod-reloader";

/// One rendered case: the text Helm printed and its objects.
pub struct Render {
    pub case: Case,
    pub values: Value,
    pub text: String,
    pub objects: Vec<Value>,
}

impl Render {
    /// The objects of `kind` (and `name`, `namespace` when given).
    pub fn find(&self, kind: &str, name: Option<&str>, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .filter(|o| name.is_none_or(|n| o["metadata"]["name"] == n))
            .filter(|o| namespace.is_none_or(|n| o["metadata"]["namespace"] == n))
            .collect()
    }

    /// The render as a kubectl-applicable JSON `List`.
    pub fn as_list(&self) -> Value {
        list(self.objects.iter().cloned())
    }
}

/// Objects as a `v1` `List` (what `kubectl apply -f` takes in one document).
pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items.into_iter().collect::<Vec<_>>()})
}

/// `helm template pod-reloader <root> --namespace d8-pod-reloader -f VALUES [--api-versions ...]`.
pub fn helm_template(values: &Value, api_versions: &[String]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(tools::require("helm"));
    cmd.args(["template", "pod-reloader"]).arg(root()).args(["--namespace", NAMESPACE, "-f"]).arg(&file);
    for api in api_versions {
        cmd.args(["--api-versions", api]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run helm: {e}"))?;
    if !out.status.success() {
        return Err(format!("helm template failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("helm printed non-UTF-8: {e}"))
}

/// The case's values (hooks included) rendered by Helm.
pub fn render(case: &Case) -> Result<Render, String> {
    let values = values::helm_values(case).map_err(|e| format!("values do not validate against openapi/: {e}"))?;
    let text = helm_template(&values, &case.api_versions())?;
    let objects = yaml::documents(&text, &format!("render of {}", case.name));
    Ok(Render { case: case.clone(), values, text, objects })
}

/// Every case of the matrix rendered; a case that does not render panics naming it.
pub fn render_all() -> Vec<Render> {
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for case in values::cases() {
        match render(&case) {
            Ok(r) => out.push(r),
            Err(e) => failures.push(format!("render {}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(out.len() >= 20, "expected the matrix of tests/module/values/, found {} cases", out.len());
    out
}

/// The case named `name` rendered.
pub fn render_named(name: &str) -> Render {
    render(&values::case(name)).unwrap_or_else(|e| panic!("render {name}: {e}"))
}
