//! Every render passes `kubectl apply --server-side --dry-run=server` on the
//! test bed (field validation is strict, so the CRD fixtures check the
//! custom resources too: an unknown field in a PodMonitor is refused), and
//! the controller's pod passes the "restricted" Pod Security Standard.

use pod_reloader_moduletests::fixtures::{self, apply_args};
use pod_reloader_moduletests::render::render_all;
use pod_reloader_moduletests::tools::{kubectl, run};
use serde_json::json;

#[test]
fn every_render_passes_a_server_side_dry_run() {
    let defaults = fixtures::ensure();
    let mut failures = Vec::new();
    let renders = render_all();
    for r in &renders {
        let out = apply_args(&r.as_list(), &["--dry-run=server"]);
        if out.ok {
            println!("dry-run {}: ok", r.case.name);
        } else {
            failures.push(format!("dry-run {}:\n{}", r.case.name, out.output));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Self-check: the dry-run catches an unknown field in a custom resource.
    let mut broken = defaults.as_list();
    let monitor = broken["items"]
        .as_array_mut()
        .and_then(|items| items.iter_mut().find(|o| o["kind"] == "PodMonitor"))
        .expect("the defaults render has a PodMonitor");
    let endpoint = &mut monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["honorLabels"], json!(true), "the PodMonitor's endpoint sets honorLabels");
    endpoint["honourLabels"] = json!(true);
    endpoint.as_object_mut().expect("endpoint").remove("honorLabels");
    let out = apply_args(&broken, &["--dry-run=server"]);
    assert!(
        !out.ok && out.output.contains("field not declared in schema"),
        "the dry-run must reject an unknown field in a PodMonitor:\n{}",
        out.output
    );

    // The controller's pod under the "restricted" Pod Security Standard
    // (priority class and service account left out: they are not part of it
    // and do not exist on the test bed).
    for r in renders.iter().filter(|r| r.case.name == "defaults" || r.case.name == "full") {
        let dep = r.find("Deployment", Some("pod-reloader"), None)[0];
        let mut spec = dep["spec"]["template"]["spec"].clone();
        let s = spec.as_object_mut().expect("pod spec");
        s.remove("priorityClassName");
        s.remove("serviceAccountName");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "pod-reloader-pss-check", "namespace": "pod-reloader-pss"},
                         "spec": spec});
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pod.json");
        std::fs::write(&file, pod.to_string()).expect("write pod");
        let out = run(kubectl().args(["create", "--dry-run=server", "-f"]).arg(&file));
        assert!(out.ok, "the pod of {} fails the restricted Pod Security Standard:\n{}", r.case.name, out.output);
        println!("pod of {} passes the restricted Pod Security Standard", r.case.name);
    }
}
