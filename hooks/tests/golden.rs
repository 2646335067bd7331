//! Golden tests of the hooks binary: every directory under
//! `tests/hooks/golden/` is one run of `pod-reloader-hooks`.
//!
//! A case directory holds:
//! - `args`: the command line after the binary name (`hook run 1`, `hook check`);
//! - inputs, each optional (a missing one is passed as a path that does not
//!   exist): `binding_context.json`, `values.json`, `config_values.json`,
//!   `settings.json` (for `hook check`, as `SETTINGS_PATH`);
//! - `expected/`: `exit_code`, and what the run wrote: `values.json`
//!   (`VALUES_JSON_PATCH_PATH`), `config_values.json`, `metrics.json`,
//!   `kubernetes.json`, `stdout`, `stderr` (JSON files compared as JSON, the
//!   metrics line by line).
//!
//! `UPDATE_GOLDEN=1 cargo test -p pod-reloader-hooks --test golden` rewrites
//! every `expected/` directory from the current binary.
//!
//! A record key the hook generated (random) is compared by its shape: a
//! `recordKey` value that is base64 of 32 bytes and appears in none of the
//! case's inputs is stored as `GENERATED_KEY`; any other value stays as it is.

mod common;

use common::module_dir;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader-hooks");
const GENERATED_KEY: &str = "<generated: 32 random bytes, base64>";

/// The values patch with a generated record key replaced by `GENERATED_KEY`.
fn mask_generated_key(patch: &str, inputs: &str) -> String {
    let Ok(Value::Array(mut ops)) = serde_json::from_str::<Value>(patch) else {
        return patch.to_string();
    };
    for op in &mut ops {
        if !op["path"].as_str().is_some_and(|p| p.ends_with("/internal/recordKey")) {
            continue;
        }
        let Some(key) = op["value"].as_str() else { continue };
        let shaped = base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|b| b.len() == 32);
        if shaped && !inputs.contains(key) {
            op["value"] = Value::String(GENERATED_KEY.into());
        }
    }
    serde_json::to_string(&ops).unwrap_or_default()
}

fn golden_dir() -> PathBuf {
    common::module_dir().join("tests/hooks/golden")
}

/// What one run produced, keyed by expected file name.
fn run_case(case: &Path) -> Vec<(String, String)> {
    let args = fs::read_to_string(case.join("args")).expect("args file");
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = |name: &str| {
        let p = case.join(name);
        if p.exists() { p } else { tmp.path().join("missing").join(name) }
    };
    let out = |name: &str| tmp.path().join(name);
    for name in ["values.json", "config_values.json", "metrics.json", "kubernetes.json"] {
        fs::write(out(name), "").expect("pre-create output");
    }
    let output = Command::new(BIN)
        .args(args.split_whitespace())
        .env_clear()
        .env("MODULE_DIR", module_dir())
        .env("BINDING_CONTEXT_PATH", input("binding_context.json"))
        .env("VALUES_PATH", input("values.json"))
        .env("CONFIG_VALUES_PATH", input("config_values.json"))
        .env("SETTINGS_PATH", input("settings.json"))
        .env("VALUES_JSON_PATCH_PATH", out("values.json"))
        .env("CONFIG_VALUES_JSON_PATCH_PATH", out("config_values.json"))
        .env("METRICS_PATH", out("metrics.json"))
        .env("KUBERNETES_PATCH_PATH", out("kubernetes.json"))
        .output()
        .expect("run the hooks binary");
    let code = output.status.code().expect("exited, not killed by a signal (a panic aborts)");
    // Paths in messages vary from run to run: keep them as placeholders.
    let placeholders = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .replace(&tmp.path().display().to_string(), "$TMP")
            .replace(&case.display().to_string(), "$CASE")
    };
    let mut produced = vec![
        ("exit_code".to_string(), format!("{code}\n")),
        ("stdout".to_string(), placeholders(&output.stdout)),
        ("stderr".to_string(), placeholders(&output.stderr)),
    ];
    let inputs: String = ["binding_context.json", "values.json", "config_values.json"]
        .iter()
        .map(|n| fs::read_to_string(case.join(n)).unwrap_or_default())
        .collect();
    for name in ["values.json", "config_values.json", "metrics.json", "kubernetes.json"] {
        let mut text = fs::read_to_string(out(name)).unwrap_or_default();
        if name == "values.json" {
            text = mask_generated_key(&text, &inputs);
        }
        produced.push((name.to_string(), text));
    }
    // Keep the expected directory small: empty outputs are not stored.
    produced.retain(|(name, text)| name == "exit_code" || !text.is_empty());
    produced
}

/// JSON text as a value (a JSON-lines file as an array of values), or the text itself.
fn normalise(name: &str, text: &str) -> Value {
    if name == "metrics.json" {
        return Value::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.into())))
                .collect(),
        );
    }
    if name.ends_with(".json") || name == "stderr" || name == "stdout" {
        let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        if let (Some(Ok(v)), None) = (it.next(), it.next()) {
            return v;
        }
    }
    Value::String(text.to_string())
}

fn pretty(name: &str, text: &str) -> String {
    match normalise(name, text) {
        Value::String(s) => s,
        v if name == "metrics.json" => v.as_array().into_iter().flatten().map(|l| format!("{l}\n")).collect::<String>(),
        v => format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default()),
    }
}

#[test]
fn golden_cases() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/hooks/golden")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("args").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "expected the golden cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let produced = run_case(case);
        let expected_dir = case.join("expected");
        if update {
            let _ = fs::remove_dir_all(&expected_dir);
            fs::create_dir_all(&expected_dir).expect("expected dir");
            for (file, text) in &produced {
                fs::write(expected_dir.join(file), pretty(file, text)).expect("write expected");
            }
            continue;
        }
        let mut expected: Vec<String> = fs::read_dir(&expected_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        expected.sort();
        let mut got: Vec<String> = produced.iter().map(|(f, _)| f.clone()).collect();
        got.sort();
        if expected != got {
            failures.push(format!("{name}: produced {got:?}, expected files {expected:?}"));
            continue;
        }
        for (file, text) in &produced {
            let want = fs::read_to_string(expected_dir.join(file)).unwrap_or_default();
            if normalise(file, &want) != normalise(file, text) {
                failures.push(format!("{name}: {file} differs\n--- expected\n{want}\n--- got\n{}", pretty(file, text)));
            }
        }
        // Failures are reported as the module-sdk error JSON, and nothing else.
        let code = produced.iter().find(|(f, _)| f == "exit_code").map(|(_, t)| t.trim().to_string());
        if code.as_deref() == Some("1") {
            let stderr = produced.iter().find(|(f, _)| f == "stderr").map(|(_, t)| t.as_str()).unwrap_or_default();
            match normalise("stderr", stderr) {
                Value::Object(m) if m.get("message").is_some_and(Value::is_string) => {}
                other => failures.push(format!("{name}: exit 1 without the error JSON on stderr: {other}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} golden cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
