//! Hooks never panic on what addon-operator (or anyone who can write the
//! files) hands them: arbitrary JSON, JSON shaped like the real inputs with
//! arbitrary parts, and bytes that are not JSON, in every input file `hook
//! run` reads (binding context, values, config values) and in `hook check`'s
//! settings file.
//!
//! Each case runs the binary's own entry point (`cli::run`) in-process under
//! `catch_unwind`, so a panic fails the test (the binary would turn one into
//! the error JSON and hide it), and asserts the protocol: exit 0 with a JSON
//! values patch, or exit 1 with exactly one `{"message": "..."}` line on
//! stderr. A few cases run the real binary to check the same from outside
//! (no signal, no abort). Case counts are bounded to keep `make test` fast.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use common::module_dir;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use pod_reloader_hooks::cli::{self, Env, Outcome};
use pod_reloader_hooks::hooks::HOOKS;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader-hooks");

/// Names the hooks look for, so arbitrary objects reach deep paths.
const NAMES: &[&str] = &[
    "binding",
    "type",
    "watchEvent",
    "snapshots",
    "objects",
    "object",
    "filterResult",
    "groupName",
    "podReloader",
    "global",
    "internal",
    "recordKey",
    "argoRolloutsEnabled",
    "apiserverEndpoints",
    "alerting",
    "webhook",
    "url",
    "namespaces",
    "reloadStrategy",
    "metadata",
    "name",
    "namespace",
    "data",
    "key",
    "served",
    "spec",
    "versions",
    "addresses",
    "ports",
    "addressType",
    "address",
    "port",
    "highAvailability",
    "enabledModules",
    "argo_rollouts_crd",
    "apiserver_endpointslices",
    "record_key_secret",
    "beforeHelm",
    "Synchronization",
    "Event",
    "Group",
    "Deleted",
    "Added",
    "pod-reloader-record-key",
    "rollouts.argoproj.io",
    "v1alpha1",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_string),
        ".{0,24}",
        // base64-ish, sometimes a valid 32-byte key.
        "[A-Za-z0-9+/]{43}=",
        "[0-9a-f:.]{0,20}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        (0u64..70000).prop_map(|p| json!(p)),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Binding contexts shaped like shell-operator's, with arbitrary parts.
fn arb_binding_context() -> impl Strategy<Value = Value> {
    let binding = prop::sample::select(
        &["beforeHelm", "argo_rollouts_crd", "apiserver_endpointslices", "record_key_secret", "x"][..],
    );
    let kind = prop::sample::select(&["Synchronization", "Event", "Group", "Schedule", ""][..]);
    let item = (arb_json(), arb_json()).prop_map(|(o, f)| json!({"object": o, "filterResult": f}));
    let items = prop::collection::vec(prop_oneof![item, arb_json()], 0..4);
    let ctx = (binding, kind, items.clone(), arb_json(), arb_json(), items).prop_map(
        |(b, k, objects, object, filter, snap)| {
            json!({"binding": b, "type": k, "watchEvent": "Deleted", "objects": objects, "object": object,
               "filterResult": filter, "snapshots": {b: snap}})
        },
    );
    prop::collection::vec(prop_oneof![ctx, arb_json()], 0..3).prop_map(Value::Array)
}

/// A valid values document (the settings every hook accepts).
fn valid_values() -> Value {
    json!({
        "global": {"enabledModules": ["vertical-pod-autoscaler"], "highAvailability": false,
                   "discovery": {"clusterDomain": "cluster.local"}},
        "podReloader": {"reloadStrategy": "Annotations", "namespaceSelector": "team in (a,b)",
                        "alerting": {"enabled": true, "webhook": {"url": "https://192.0.2.1/hook", "sink": "slack"}},
                        "internal": {"argoRolloutsEnabled": true, "apiserverEndpoints": []}}
    })
}

/// Values shaped like addon-operator's, with arbitrary parts: either random
/// subtrees in the usual places, or a valid document with one value (a
/// setting, an internal value, a global one) replaced by arbitrary JSON, so
/// the hooks that validate the settings get past the schema too.
fn arb_values() -> impl Strategy<Value = Value> {
    let random = (arb_json(), arb_json(), arb_json(), arb_json()).prop_map(|(global, internal, alerting, other)| {
        json!({"global": global, "podReloader": {"internal": internal, "alerting": alerting, "namespaces": other}})
    });
    let pointers = prop::sample::select(
        &[
            "/podReloader/internal/argoRolloutsEnabled",
            "/podReloader/internal/apiserverEndpoints",
            "/podReloader/internal/recordKey",
            "/podReloader/internal",
            "/podReloader/alerting/webhook/url",
            "/podReloader/namespaceSelector",
            "/podReloader/highAvailability",
            "/global/highAvailability",
            "/global/enabledModules",
            "/global/discovery",
            "/global",
        ][..],
    );
    let one_changed = (pointers, arb_json()).prop_map(|(pointer, value)| {
        let mut v = valid_values();
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.insert(last.to_string(), value);
        }
        v
    });
    prop_oneof![random, one_changed, Just(valid_values())]
}

/// What goes into one input file.
#[derive(Clone, Debug)]
enum Input {
    Json(Value),
    Bytes(Vec<u8>),
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Input::Json(v) => serde_json::to_vec(v).unwrap(),
            Input::Bytes(b) => b.clone(),
        }
    }
}

fn arb_input(shaped: BoxedStrategy<Value>) -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => shaped.prop_map(Input::Json),
        2 => arb_json().prop_map(Input::Json),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Input::Bytes),
    ]
}

/// Inputs of one `hook run`: a hook index and the three files.
#[derive(Clone, Debug)]
struct Case {
    hook: usize,
    binding_context: Input,
    values: Input,
    config_values: Input,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        0..HOOKS.len(),
        arb_input(arb_binding_context().boxed()),
        arb_input(arb_values().boxed()),
        arb_input(arb_values().boxed()),
    )
        .prop_map(|(hook, binding_context, values, config_values)| Case {
            hook,
            binding_context,
            values,
            config_values,
        })
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(case: &Case) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("binding_context.json"), case.binding_context.bytes()).unwrap();
        fs::write(dir.path().join("values.json"), case.values.bytes()).unwrap();
        fs::write(dir.path().join("config_values.json"), case.config_values.bytes()).unwrap();
        Files { dir }
    }

    fn var(&self, k: &str) -> Option<String> {
        let p = |name: &str| Some(self.dir.path().join(name).display().to_string());
        match k {
            "MODULE_DIR" => Some(module_dir().display().to_string()),
            "BINDING_CONTEXT_PATH" => p("binding_context.json"),
            "VALUES_PATH" => p("values.json"),
            "CONFIG_VALUES_PATH" => p("config_values.json"),
            "SETTINGS_PATH" => p("values.json"),
            "VALUES_JSON_PATCH_PATH" => p("out-values.json"),
            "CONFIG_VALUES_JSON_PATCH_PATH" => p("out-config-values.json"),
            "METRICS_PATH" => p("out-metrics.json"),
            "KUBERNETES_PATCH_PATH" => p("out-kubernetes.json"),
            _ => None,
        }
    }
}

/// The protocol on one outcome: exit 0 with the outputs written, or exit 1
/// with one error JSON line.
fn assert_protocol(outcome: &Outcome, files: &Files, check: bool) -> Result<(), TestCaseError> {
    match outcome.code {
        0 if check => {
            let v: Value = serde_json::from_str(&outcome.stdout).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&v["valid"], &json!(true));
        }
        0 => {
            let patch = fs::read(files.dir.path().join("out-values.json")).unwrap_or_default();
            let patch: Value =
                serde_json::from_slice(&patch).map_err(|e| TestCaseError::fail(format!("values patch: {e}")))?;
            prop_assert!(patch.is_array(), "values patch is a JSON array: {}", patch);
            for line in outcome.stderr.lines() {
                let l: Value = serde_json::from_str(line)
                    .map_err(|e| TestCaseError::fail(format!("stderr line {line:?}: {e}")))?;
                prop_assert_eq!(&l["level"], &json!("warn"));
            }
        }
        1 => {
            prop_assert!(outcome.stdout.is_empty(), "nothing on stdout: {:?}", outcome.stdout);
            prop_assert_eq!(outcome.stderr.lines().count(), 1, "one line: {:?}", outcome.stderr);
            let e: Value = serde_json::from_str(&outcome.stderr)
                .map_err(|e| TestCaseError::fail(format!("stderr {:?}: {e}", outcome.stderr)))?;
            let message = e["message"].as_str().or(e["valid"].as_bool().and(e["message"].as_str()));
            prop_assert!(message.is_some_and(|m| !m.is_empty()), "error JSON with a message: {}", e);
            prop_assert!(!message.unwrap_or_default().contains("internal error"), "a panic caught: {}", e);
        }
        other => prop_assert!(false, "exit code {other}: {outcome:?}"),
    }
    Ok(())
}

fn run_in_process(args: &[&str], files: &Files) -> Result<Outcome, TestCaseError> {
    let var = |k: &str| files.var(k);
    let env = Env { var: &var, exe: None };
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    catch_unwind(AssertUnwindSafe(|| cli::run(&args, &env))).map_err(|p| {
        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
        TestCaseError::fail(format!("panicked: {}", what.unwrap_or_default()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hook_run_never_panics(case in arb_case()) {
        let files = Files::new(&case);
        let index = case.hook.to_string();
        let outcome = run_in_process(&["hook", "run", &index], &files)?;
        assert_protocol(&outcome, &files, false)?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hook_check_never_panics(settings in arb_input(arb_values().boxed())) {
        let case = Case { hook: 0, binding_context: Input::Bytes(vec![]), values: settings, config_values: Input::Bytes(vec![]) };
        let files = Files::new(&case);
        let outcome = run_in_process(&["hook", "check"], &files)?;
        assert_protocol(&outcome, &files, true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same through the real binary: an exit code (never a signal) and the protocol.
    #[test]
    fn the_binary_answers_with_the_protocol(case in arb_case()) {
        let files = Files::new(&case);
        let mut cmd = Command::new(BIN);
        cmd.args(["hook", "run", &case.hook.to_string()]).env_clear();
        for k in ["MODULE_DIR", "BINDING_CONTEXT_PATH", "VALUES_PATH", "CONFIG_VALUES_PATH", "VALUES_JSON_PATCH_PATH",
                  "CONFIG_VALUES_JSON_PATCH_PATH", "METRICS_PATH", "KUBERNETES_PATCH_PATH"] {
            cmd.env(k, files.var(k).unwrap());
        }
        let out = cmd.output().unwrap();
        let code = out.status.code();
        prop_assert!(code.is_some(), "killed by a signal: {:?}", out.status);
        let outcome = Outcome {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: code.unwrap_or(-1) as u8,
        };
        assert_protocol(&outcome, &files, false)?;
    }
}

/// The generators reach both outcomes (a test that only ever saw errors
/// would prove little about the hooks' logic on odd but valid input).
#[test]
fn generated_cases_reach_success_and_failure() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_case();
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..200 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let files = Files::new(&case);
        let index = case.hook.to_string();
        let var = |k: &str| files.var(k);
        let env = Env { var: &var, exe: None };
        match cli::run(&["hook".into(), "run".into(), index], &env).code {
            0 => ok += 1,
            _ => failed += 1,
        }
    }
    eprintln!("{ok} of 200 generated runs succeeded, {failed} failed");
    assert!(ok >= 10 && failed >= 10, "{ok} succeeded, {failed} failed");
}
