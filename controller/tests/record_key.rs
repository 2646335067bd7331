//! The keyed rolled-to record on the real apiserver: migration from the
//! unkeyed form (40-hex SHA-1s) rolls nothing and writes nothing; a stale
//! unkeyed entry rolls once and leaves a keyed record; a record written under
//! another key is no record (a new baseline, no rollout); a keyed record is
//! compared under the key after a restart.

// Test code may unwrap (the workspace denies it in shipped code); clippy.toml
// covers #[test] functions, this covers the helpers beside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use pod_reloader_core::ContentHash;
use pod_reloader_core::record::{KEY_ID_MEMBER, KEY_LEN, RecordKey};
use pod_reloader_testsupport::{ControllerProcess, TestNamespace, admin_client, wait_for};
use serde_json::{Value, json};

const RECORD: &str = "pod-reloader.deckhouse.io/reloaded-hashes";

fn auto_with_record(record: &Value) -> Value {
    json!({"reloader.stakater.com/auto": "true", RECORD: record.to_string()})
}

async fn record_text(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let d = dyn_api(client, ns, "Deployment").get(name).await.ok()?;
    d.metadata.annotations?.get(RECORD).cloned()
}

/// `{"<resource>": seal(content), "keyId": id}` under `key`.
fn keyed(key: &RecordKey, entries: &[(&str, &[u8])]) -> Value {
    let mut map: BTreeMap<String, String> = entries
        .iter()
        .map(|(r, content)| {
            let sha1 = ContentHash::parse_hex(&sha1_hex(content)).expect("40 hex");
            (r.to_string(), key.seal(sha1).to_string())
        })
        .collect();
    map.insert(KEY_ID_MEMBER.into(), key.id().to_string());
    serde_json::to_value(map).unwrap()
}

async fn wait_record(client: &kube::Client, ns: &str, name: &str, want: &Value) {
    wait_for(&format!("record of {ns}/{name} to be {want}"), Duration::from_secs(30), || async {
        let text = record_text(client, ns, name).await?;
        (serde_json::from_str::<Value>(&text).ok()? == *want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_to_the_keyed_record_rolls_only_what_changed() {
    let client = admin_client().await;
    let ns = TestNamespace::create(&client, "recordkey").await;
    let n = ns.name.as_str();
    let dir = tempfile_dir(n);
    let key_file = dir.join("key");
    let secret_key = [0x5au8; KEY_LEN];
    std::fs::write(&key_file, secret_key).unwrap();
    let key = RecordKey::new(&secret_key).unwrap();
    let other_key = RecordKey::new(&[0x33u8; KEY_LEN]).unwrap();

    create(&client, n, secret("tls", json!({"key": "s1"}), json!({}), json!({}))).await;
    create(&client, n, configmap("cfg-stale", json!({"key": "v1"}), json!({}), json!({}))).await;
    create(&client, n, configmap("cfg-foreign", json!({"key": "v1"}), json!({}), json!({}))).await;
    // As an earlier pod-reloader left them: unkeyed records.
    let current_record = json!({"Secret/tls": sha1_hex(b"key=s1")});
    let stale_record = json!({"ConfigMap/cfg-stale": sha1_hex(b"key=v0")});
    // Written under a key that is gone (its Secret deleted and generated anew), stale too.
    let foreign_record = keyed(&other_key, &[("ConfigMap/cfg-foreign", b"key=v0")]);
    for (name, res, used, record) in [
        ("current", Res::Secret, "tls", &current_record),
        ("stale", Res::ConfigMap, "cfg-stale", &stale_record),
        ("foreign", Res::ConfigMap, "cfg-foreign", &foreign_record),
    ] {
        let spec = pod_spec(res, used, Use::EnvFrom);
        create(&client, n, workload("Deployment", name, &auto_with_record(record), &json!({}), spec)).await;
    }
    // Both kinds are under test (the Secret of `current`, the ConfigMaps of
    // the others): a sentinel on each stream.
    let mut barrier = Barrier::create(&client, n, &[Res::ConfigMap, Res::Secret], json!({})).await;
    for name in ["current", "stale", "foreign"] {
        wait_replica_sets(&client, n, name, 1, Duration::from_secs(30)).await;
    }
    let current_before = record_text(&client, n, "current").await.expect("record");

    let args = [
        format!("--namespaces={n}"),
        "--coalesce-window=0".into(),
        format!("--record-key-file={}", key_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = ControllerProcess::start(BIN, &args).await;
    // Stale: exactly one rollout, and the record it writes is keyed.
    wait_replica_sets(&client, n, "stale", 2, Duration::from_secs(30)).await;
    wait_record(&client, n, "stale", &keyed(&key, &[("ConfigMap/cfg-stale", b"key=v1")])).await;
    // Another key: no rollout, a new baseline under this key.
    wait_record(&client, n, "foreign", &keyed(&key, &[("ConfigMap/cfg-foreign", b"key=v1")])).await;
    barrier.wait_followed().await;
    assert_quiet_after(&mut barrier, || async {
        assert_eq!(settled_replica_sets(&client, n, "stale").await, 2, "exactly one rollout");
        assert_eq!(settled_replica_sets(&client, n, "foreign").await, 1, "a record under another key never rolls");
        assert_eq!(settled_replica_sets(&client, n, "current").await, 1, "an equal unkeyed record rolls nothing");
        assert_eq!(
            record_text(&client, n, "current").await.as_deref(),
            Some(current_before.as_str()),
            "an equal unkeyed record is not rewritten at upgrade"
        );
    })
    .await;
    let logs = c.logs();
    assert!(logs.contains(&key.id().to_string()), "the key id is logged at start:\n{logs}");
    assert!(!logs.contains("no --record-key-file"), "{logs}");

    // A change with the key: the unkeyed record is written keyed, with the rollout.
    set_value(&client, n, Res::Secret, "tls", "s2").await;
    wait_replica_sets(&client, n, "current", 2, Duration::from_secs(30)).await;
    wait_record(&client, n, "current", &keyed(&key, &[("Secret/tls", b"key=s2")])).await;
    c.stop();
    for name in ["current", "stale", "foreign"] {
        let text = record_text(&client, n, name).await.unwrap();
        for content in [&b"key=s1"[..], b"key=s2", b"key=v0", b"key=v1"] {
            assert!(!text.contains(&sha1_hex(content)), "no bare SHA-1 left in {name}: {text}");
        }
    }

    // Keyed records are compared under the key after a restart: nothing rolls.
    // The start's decisions come before the sentinels' edits.
    let c = ControllerProcess::start(BIN, &args).await;
    assert_quiet_after(&mut barrier, || async {
        for (name, want) in [("current", 2), ("stale", 2), ("foreign", 1)] {
            assert_eq!(settled_replica_sets(&client, n, name).await, want, "{name} after a clean restart");
        }
    })
    .await;
    drop(c);

    // explain compares the keyed record under the key; without it, it says it cannot.
    let explain_of = |name: &str, extra: &[String]| {
        let out = std::process::Command::new(BIN)
            .args(["explain", &format!("deployment/{name}"), "-n", n])
            .args(extra)
            .env("KUBECONFIG", pod_reloader_testsupport::kubeconfig_path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let explain = |extra: &[String]| explain_of("current", extra);
    let with_key = explain(&[format!("--record-key-file={}", key_file.display())]);
    assert!(with_key.contains("State:         in sync"), "{with_key}");
    assert!(with_key.contains(&format!("Workload runs: {} (record, keyed)", &sha1_hex(b"key=s2")[..12])), "{with_key}");
    // `foreign` was never rolled: no Reloader env var stands in for the record.
    let without = explain_of("foreign", &[]);
    assert!(without.contains("unknown: the record is keyed"), "{without}");
    set_value(&client, n, Res::Secret, "tls", "s3").await;
    let differs = explain(&[format!("--record-key-file={}", key_file.display())]);
    assert!(differs.contains("DIFFERS"), "{differs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_file_stops_the_start_naming_the_file() {
    let dir = tempfile_dir("badkey");
    let key_file = dir.join("key");
    std::fs::write(&key_file, b"short").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--namespaces=default", &format!("--record-key-file={}", key_file.display())])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&key_file.display().to_string()) && stderr.contains("32"), "{stderr}");
    assert!(!stderr.contains("short"), "never the content: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pod-reloader-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
