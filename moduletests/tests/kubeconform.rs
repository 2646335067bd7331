//! Every object of every render passes `kubeconform -strict` against JSON
//! schemas generated from the test bed's `/openapi/v2` (the CRD fixtures
//! included), cached outside the repository per server version and fixture
//! set; and kubeconform rejects an unknown field (in a Deployment and in a
//! PodMonitor), so it really checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pod_reloader_moduletests::fixtures;
use pod_reloader_moduletests::kubeschema::write_schemas;
use pod_reloader_moduletests::render::render_all;
use pod_reloader_moduletests::tools::{cache_dir, kubectl, module_tests_dir, require, run};
use serde_json::Value;
use sha2::{Digest, Sha256};

const NEEDED: [&str; 4] = [
    "monitoring.coreos.com/v1/prometheusrule",
    "monitoring.coreos.com/v1/podmonitor",
    "autoscaling.k8s.io/v1/verticalpodautoscaler",
    "deckhouse.io/v1/grafanadashboarddefinition",
];

/// The schema directory for this server and fixture set, generated when not cached.
fn schemas() -> PathBuf {
    let version = run(kubectl().args(["version", "-o", "json"]));
    assert!(version.ok, "kubectl version: {}", version.output);
    let start = version.output.find('{').unwrap_or(0);
    let v: Value = serde_json::Deserializer::from_str(&version.output[start..])
        .into_iter()
        .next()
        .and_then(Result::ok)
        .expect("kubectl version JSON");
    let server = v["serverVersion"]["gitVersion"].as_str().expect("server version").to_string();
    // Keyed by the fixtures and the converter, so either change regenerates.
    let mut hash = Sha256::new();
    let mut crds: Vec<PathBuf> =
        std::fs::read_dir(module_tests_dir().join("crds")).expect("crds").map(|e| e.expect("entry").path()).collect();
    crds.sort();
    for p in crds {
        hash.update(std::fs::read(p).expect("crd"));
    }
    hash.update(include_str!("../src/kubeschema.rs"));
    let key: String = hash.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let dir = cache_dir().join("kubeconform-schemas").join(format!("{server}-{key}"));
    if dir.join(".complete").is_file() {
        println!("JSON schemas cached in {}", dir.display());
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    // A CRD's schema is published shortly after it is Established.
    for _ in 0..15 {
        let out = kubectl().args(["get", "--raw", "/openapi/v2"]).output().expect("kubectl get --raw");
        assert!(out.status.success(), "GET /openapi/v2: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("/openapi/v2 is JSON");
        std::fs::create_dir_all(&dir).expect("schema dir");
        let n = write_schemas(&doc, &dir).expect("write schemas");
        let missing: Vec<&str> = NEEDED.iter().filter(|s| !dir.join(format!("{s}.json")).is_file()).copied().collect();
        if missing.is_empty() {
            std::fs::write(dir.join(".complete"), "").expect("mark complete");
            println!("JSON schemas generated from the test bed's /openapi/v2: {n} in {}", dir.display());
            return dir;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("no schema for some CRD fixtures in /openapi/v2: {NEEDED:?}");
}

fn kubeconform(schemas: &Path, file: &Path) -> pod_reloader_moduletests::tools::Run {
    let location =
        format!("{}/{{{{ .Group }}}}/{{{{ .ResourceAPIVersion }}}}/{{{{ .ResourceKind }}}}.json", schemas.display());
    run(Command::new(require("kubeconform"))
        .args(["-strict", "-summary", "-verbose", "-schema-location", &location])
        .arg(file))
}

#[test]
fn every_render_passes_kubeconform_strict() {
    let defaults = fixtures::ensure();
    let schemas = schemas();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for r in render_all() {
        let file = dir.path().join(format!("{}.yaml", r.case.name));
        std::fs::write(&file, &r.text).expect("write render");
        let out = kubeconform(&schemas, &file);
        if out.ok {
            println!("kubeconform {}: ok", r.case.name);
        } else {
            failures.push(format!("kubeconform {}:\n{}", r.case.name, out.output));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Self-checks: an unknown field in a Deployment and in a PodMonitor.
    for (from, to, what) in [
        ("\n  revisionHistoryLimit: 2\n", "\n  revisionHistoryLimit: 2\n  unknownField: 1\n", "Deployment"),
        ("\n      honorLabels: true\n", "\n      honourLabels: true\n", "PodMonitor"),
    ] {
        assert!(defaults.text.contains(from), "the defaults render has {from:?}");
        let file = dir.path().join("broken.yaml");
        std::fs::write(&file, defaults.text.replace(from, to)).expect("write broken render");
        let out = kubeconform(&schemas, &file);
        assert!(
            !out.ok && out.output.contains("additional properties"),
            "kubeconform must reject an unknown field in a {what}:\n{}",
            out.output
        );
        println!("kubeconform rejects an unknown field in a {what} (self-check)");
    }
}
