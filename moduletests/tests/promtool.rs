//! The alert rules of `monitoring/prometheus-rules/` under Prometheus's own
//! tool: `promtool check rules`, and `promtool test rules` on every
//! `tests/module/promtool/*_test.yaml`.

use std::path::PathBuf;
use std::process::Command;

use pod_reloader_moduletests::tools::{module_tests_dir, require, root, run};
use pod_reloader_moduletests::yaml;
use serde_json::json;

/// The module's rule files (bare lists of groups) as promtool wants them
/// (`{groups: [...]}`), with the scrape-interval placeholders substituted as
/// the chart does (30s), written into `dir`.
fn rule_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let src = root().join("monitoring").join("prometheus-rules");
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&src).expect("monitoring/prometheus-rules").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path)
            .expect("rule file")
            .replace("__SCRAPE_INTERVAL_X_4__", "120s")
            .replace("__SCRAPE_INTERVAL__", "30s");
        let groups = yaml::parse(&text, &path.display().to_string());
        let file = dir.join(path.file_name().expect("file name"));
        std::fs::write(&file, json!({"groups": groups}).to_string()).expect("write rule file");
        out.push(file);
    }
    out
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let promtool = require("promtool");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rule_files(dir.path());
    assert!(!rules.is_empty(), "no rule files in monitoring/prometheus-rules");
    let r = run(Command::new(&promtool).args(["check", "rules"]).args(&rules));
    assert!(r.ok, "promtool check rules:\n{}", r.output);
    println!("promtool check rules: {} files", rules.len());
    let mut tests = 0;
    for entry in std::fs::read_dir(module_tests_dir().join("promtool")).expect("tests/module/promtool") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy test file");
    }
    for entry in std::fs::read_dir(dir.path()).expect("tempdir") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if !name.ends_with("_test.yaml") {
            continue;
        }
        let r = run(Command::new(&promtool).current_dir(dir.path()).args(["test", "rules", &name]));
        assert!(r.ok, "promtool test rules {name}:\n{}", r.output);
        println!("promtool test rules {name}: ok");
        tests += 1;
    }
    assert!(tests > 0, "no *_test.yaml in tests/module/promtool");
}
