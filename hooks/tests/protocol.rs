//! The command side of the protocol, as addon-operator uses it: `hook list`
//! (run with an empty environment; the output must match addon-operator's
//! pattern), `hook config` (module-sdk's BatchHookConfig v1 as addon-operator
//! decodes it), `hook dump`.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pod-reloader-hooks");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env_clear().output().expect("run the binary");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_matches_addon_operators_pattern() {
    let (code, stdout, stderr) = run(&["hook", "list"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let mut lines = stdout.lines();
    let first = lines.next().expect("first line");
    // addon-operator: `Found ([1-9]|[1-9]\d|[1-9]\d\d|[1-9]\d\d\d) items`
    let n: usize = first
        .strip_prefix("Found ")
        .and_then(|r| r.strip_suffix(" items:"))
        .and_then(|n| n.parse().ok())
        .expect("Found N items:");
    assert!((1..10000).contains(&n));
    let names: Vec<String> = lines.map(String::from).collect();
    assert_eq!(names, ["0 - settings", "1 - argo_rollouts", "2 - rbac", "3 - network_policy", "4 - record_key"]);
    assert_eq!(n, names.len());
    // `hooks` is the SDK's command name, `hook` its alias.
    assert_eq!(run(&["hooks", "list"]).1, stdout);
}

#[test]
fn config_is_a_batch_hook_config_v1() {
    let (code, stdout, stderr) = run(&["hook", "config"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let cfg: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(cfg["version"], "v1");
    assert_eq!(cfg["has_settings_check"], true);
    assert!(cfg.get("readiness").is_none());
    let hooks = cfg["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 5);
    let allowed = [
        "configVersion",
        "metadata",
        "schedule",
        "kubernetes",
        "onStartup",
        "beforeHelm",
        "afterHelm",
        "afterDeleteHelm",
        "allowFailure",
        "settings",
        "logLevel",
    ];
    let binding_keys = [
        "name",
        "apiVersion",
        "kind",
        "nameSelector",
        "namespace",
        "labelSelector",
        "fieldSelector",
        "executeHookOnEvent",
        "executeHookOnSynchronization",
        "waitForSynchronization",
        "keepFullObjectsInMemory",
        "jqFilter",
        "allowFailure",
        "resynchronizationPeriod",
        "includeSnapshotsFrom",
        "queue",
    ];
    for (i, h) in hooks.iter().enumerate() {
        assert_eq!(h["configVersion"], "v1");
        assert!(h["metadata"]["name"].is_string() && h["metadata"]["path"].is_string());
        for k in h.as_object().expect("hook config").keys() {
            assert!(allowed.contains(&k.as_str()), "hook {i}: unknown key {k}");
        }
        assert!(h["beforeHelm"].is_u64(), "hook {i} runs before Helm");
        // module-sdk refuses onStartup together with kubernetes bindings.
        assert!(!(h.get("onStartup").is_some() && h.get("kubernetes").is_some()));
        for b in h.get("kubernetes").and_then(Value::as_array).into_iter().flatten() {
            for k in b.as_object().expect("binding").keys() {
                assert!(binding_keys.contains(&k.as_str()), "hook {i}: unknown binding key {k}");
            }
            assert!(b["jqFilter"].is_string() && b["keepFullObjectsInMemory"] == false);
        }
    }
}

#[test]
fn dump_writes_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out").join("hook_config.json");
    let out = Command::new(BIN)
        .args(["hook", "dump"])
        .env_clear()
        .env("HOOK_CONFIG_PATH", &path)
        .env("CREATE_FILES", "true")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let written: Value = serde_json::from_slice(&std::fs::read(&path).expect("dumped")).expect("JSON");
    let (_, printed, _) = run(&["hook", "config"]);
    assert_eq!(written, serde_json::from_str::<Value>(&printed).expect("JSON"));
}
