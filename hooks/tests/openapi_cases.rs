//! `hook check` against `openapi/openapi-case-tests.yaml`: every positive
//! configValues case is accepted, every negative one is rejected with a
//! message naming its field (a top-level key of the case). Through the
//! library for all cases, and through the binary (`SETTINGS_PATH`) for each.

mod common;

use std::process::Command;

use pod_reloader_hooks::hooks::check;
use pod_reloader_hooks::schema::{Origin, SettingsSchema};
use serde_json::Value;

fn cases() -> Value {
    let path = common::module_dir().join("openapi/openapi-case-tests.yaml");
    let text = std::fs::read_to_string(&path).expect("openapi case file");
    serde_saphyr::from_str(&text).expect("case file parses")
}

fn schema() -> SettingsSchema {
    let dir = common::module_dir();
    SettingsSchema::load(Some(&dir)).expect("schema loads")
}

fn list<'a>(cases: &'a Value, polarity: &str) -> &'a Vec<Value> {
    cases[polarity]["configValues"].as_array().expect("configValues cases")
}

fn run_binary(settings: &Value) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("settings.json");
    std::fs::write(&path, settings.to_string()).expect("write settings");
    let out = Command::new(env!("CARGO_BIN_EXE_pod-reloader-hooks"))
        .args(["hook", "check"])
        .env("SETTINGS_PATH", &path)
        .env("MODULE_DIR", common::module_dir())
        .output()
        .expect("run hook check");
    let code = out.status.code().expect("exit code");
    let stream = if code == 0 { &out.stdout } else { &out.stderr };
    (code, serde_json::from_slice(stream).expect("check result JSON"))
}

#[test]
fn schema_comes_from_the_module_dir_and_matches_the_embedded_copy() {
    let s = schema();
    assert!(matches!(s.origin, Origin::File(_)), "{}", s.origin);
    let embedded = SettingsSchema::embedded().expect("embedded schema");
    assert_eq!(s.setting_names(), embedded.setting_names());
}

#[test]
fn every_positive_case_is_accepted() {
    let cases = cases();
    let schema = schema();
    let positive = list(&cases, "positive");
    assert!(positive.len() > 20);
    for case in positive {
        let r = check(&schema, case);
        assert!(r.valid, "rejected positive case {case}: {}", r.message);
        let (code, body) = run_binary(case);
        assert_eq!((code, &body["valid"]), (0, &Value::Bool(true)), "binary rejected {case}: {body}");
    }
}

#[test]
fn every_negative_case_is_rejected_naming_the_field() {
    let cases = cases();
    let schema = schema();
    let negative = list(&cases, "negative");
    assert!(negative.len() > 20);
    for case in negative {
        let r = check(&schema, case);
        assert!(!r.valid, "accepted negative case {case}");
        let keys: Vec<&String> = case.as_object().expect("case is an object").keys().collect();
        assert!(
            keys.iter().any(|k| r.message.contains(&format!("$.{k}")) || r.message.contains(&format!("\"{k}\""))),
            "the message for {case} names none of {keys:?}: {}",
            r.message
        );
        let (code, body) = run_binary(case);
        assert_eq!(code, 1, "binary accepted {case}");
        assert_eq!(body["valid"], Value::Bool(false));
        assert_eq!(body["message"], Value::String(r.message.clone()));
    }
}
