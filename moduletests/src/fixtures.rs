//! What the module checks need on the test bed: the CRD fixtures of
//! `tests/module/crds/` (PrometheusRule, PodMonitor, VPA,
//! GrafanaDashboardDefinition) Established, and the namespaces the renders
//! use: the module's own Namespace as rendered, d8-monitoring, shop,
//! billing, pod-reloader-rbac, and pod-reloader-pss under the "restricted"
//! Pod Security Standard. Idempotent (server-side apply).

use serde_json::{Value, json};

use crate::render::{self, Render};
use crate::tools::{self, kubectl, module_tests_dir, run};

/// The field manager of every object the checks apply.
pub const FIELD_MANAGER: &str = "pod-reloader-module-tests";

pub const CRDS: [&str; 4] = [
    "crd/prometheusrules.monitoring.coreos.com",
    "crd/podmonitors.monitoring.coreos.com",
    "crd/verticalpodautoscalers.autoscaling.k8s.io",
    "crd/grafanadashboarddefinitions.deckhouse.io",
];

/// `kubectl apply --server-side --force-conflicts` of `doc` (an object or a `List`).
pub fn apply(doc: &Value) -> tools::Run {
    apply_args(doc, &[])
}

/// `doc` as a file kubectl reads: a `List`'s items as a multi-document
/// stream (each document JSON), so each object is validated by the API
/// server as a manifest of its own would be (kubectl validates a `List`
/// client-side).
pub fn write_objects(doc: &Value, dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("objects.yaml");
    let text = match doc["items"].as_array().filter(|_| doc["kind"] == "List") {
        // Each document opens with `---`: a file that starts with `{` is read as one JSON object.
        Some(items) => items.iter().map(|o| format!("---\n{o}\n")).collect(),
        None => format!("---\n{doc}\n"),
    };
    std::fs::write(&file, text).expect("write objects");
    file
}

/// [`apply`] with extra arguments (`--dry-run=server`).
pub fn apply_args(doc: &Value, extra: &[&str]) -> tools::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_objects(doc, dir.path());
    run(kubectl()
        .args(["apply", "--server-side", "--force-conflicts", &format!("--field-manager={FIELD_MANAGER}"), "-f"])
        .arg(&file)
        .args(extra))
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The CRD fixtures and the namespaces, applied and ready; the defaults render.
pub fn ensure() -> Render {
    tools::require_testbed();
    let r = run(kubectl()
        .args(["apply", "--server-side", "--force-conflicts", &format!("--field-manager={FIELD_MANAGER}"), "-f"])
        .arg(module_tests_dir().join("crds")));
    assert!(r.ok, "apply CRD fixtures (tests/module/crds/):\n{}", r.output);
    let r = run(kubectl().args(["wait", "--for", "condition=Established", "--timeout=60s"]).args(CRDS));
    assert!(r.ok, "CRD fixtures Established:\n{}", r.output);
    let defaults = render::render_named("defaults");
    let mut items: Vec<Value> =
        defaults.find("Namespace", Some("d8-pod-reloader"), None).into_iter().cloned().collect();
    assert_eq!(items.len(), 1, "the defaults render has the module's Namespace");
    items.extend(["d8-monitoring", "shop", "billing", "pod-reloader-rbac"].map(namespace));
    let mut pss = namespace("pod-reloader-pss");
    pss["metadata"]["labels"] = json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    });
    items.push(pss);
    let r = apply(&render::list(items));
    assert!(
        r.ok,
        "namespaces d8-pod-reloader, d8-monitoring, shop, billing, pod-reloader-rbac, pod-reloader-pss:\n{}",
        r.output
    );
    defaults
}
