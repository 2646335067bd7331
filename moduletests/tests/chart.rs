//! What every render of the matrix (`tests/module/values/`) must contain:
//! labels, the controller's Deployment (args, record key, probes, security
//! context, resources), the config file the hooks computed (Reloader's
//! spellings of Deckhouse's settings), alerting's Secret and mounts, HA,
//! optional-module objects, RBAC exactly as the controller needs it, the
//! NetworkPolicy, and each case's own `expect`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use pod_reloader_moduletests::render::{Render, render_all, render_named};
use pod_reloader_moduletests::values::{MODULE_KEY, TEST_RECORD_KEY};
use pod_reloader_moduletests::yaml;
use regex::Regex;
use serde_json::{Value, json};

/// Deckhouse's spellings of the enum settings → the controller's (Reloader's),
/// written out here as the expectation (not taken from the hooks' table).
fn controller_spelling(setting: &str, value: &str) -> String {
    let table: &[(&str, &str)] = match setting {
        "reloadStrategy" => &[("EnvVars", "env-vars"), ("Annotations", "annotations")],
        "logFormat" => &[("Text", "text"), ("JSON", "json")],
        "logLevel" => &[("Debug", "debug"), ("Info", "info"), ("Warn", "warn"), ("Error", "error")],
        "resourcesToIgnore" => &[("ConfigMaps", "configmaps"), ("Secrets", "secrets")],
        "ignoredWorkloadTypes" => &[
            ("Deployment", "deployments"),
            ("StatefulSet", "statefulsets"),
            ("DaemonSet", "daemonsets"),
            ("CronJob", "cronjobs"),
            ("Job", "jobs"),
            ("Rollout", "rollouts"),
        ],
        "sink" => &[("Slack", "slack"), ("Teams", "teams"), ("GChat", "gchat"), ("Webhook", "webhook")],
        _ => panic!("no spelling table for {setting}"),
    };
    table.iter().find(|(d, _)| *d == value).map(|(_, c)| c.to_string()).unwrap_or_else(|| format!("<{value}?>"))
}

struct Checker<'a> {
    r: &'a Render,
    v: &'a Value,
    failures: Vec<String>,
    count: usize,
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
}

impl<'a> Checker<'a> {
    fn expect(&mut self, cond: bool, msg: impl Into<String>) {
        self.count += 1;
        if !cond {
            self.failures.push(msg.into());
        }
    }

    fn find(&self, kind: &str, name: Option<&str>, ns: Option<&str>) -> Vec<&'a Value> {
        self.r.find(kind, name, ns)
    }

    fn one(&mut self, kind: &str, name: Option<&str>, ns: Option<&str>) -> &'a Value {
        static EMPTY: Value = Value::Null;
        let found = self.find(kind, name, ns);
        self.expect(
            found.len() == 1,
            format!("expected exactly one {kind} {}/{}, found {}", ns.unwrap_or(""), name.unwrap_or(""), found.len()),
        );
        found.first().copied().unwrap_or(&EMPTY)
    }

    fn generic(&mut self) {
        let (r, v) = (self.r, self.v);
        for o in &r.objects {
            let labels = &o["metadata"]["labels"];
            self.expect(
                labels["heritage"] == "deckhouse" && labels["module"] == "pod-reloader",
                format!("{}/{}: module/heritage labels missing", o["kind"], o["metadata"]["name"]),
            );
        }
        let ns = self.one("Namespace", Some("d8-pod-reloader"), None);
        self.expect(
            ns["metadata"]["labels"]["prometheus.deckhouse.io/rules-watcher-enabled"] == "true",
            "namespace lacks the rules-watcher label",
        );
        let dep = self.one("Deployment", Some("pod-reloader"), Some("d8-pod-reloader"));
        let spec = &dep["spec"];
        let pod = &spec["template"]["spec"];
        let c = &pod["containers"][0];
        self.expect(pod["containers"].as_array().is_some_and(|a| a.len() == 1), "one container expected");
        self.expect(
            c["args"]
                == json!([
                    "--config",
                    "/etc/pod-reloader/config.yaml",
                    "--listen-address",
                    "0.0.0.0:9090",
                    "--record-key-file",
                    "/etc/pod-reloader/record-key/key"
                ]),
            format!("unexpected args {}", c["args"]),
        );
        // The record key: the Secret holds the hooks' key, mounted read-only where the flag points.
        let key_secret = self.one("Secret", Some("pod-reloader-record-key"), Some("d8-pod-reloader"));
        let want_key = v["internal"]["recordKey"].as_str().unwrap_or(TEST_RECORD_KEY);
        self.expect(key_secret["data"]["key"] == want_key, "record key Secret holds the key of the cluster's Secret");
        let key_len = base64::engine::general_purpose::STANDARD
            .decode(key_secret["data"]["key"].as_str().unwrap_or_default())
            .map(|k| k.len())
            .unwrap_or(0);
        self.expect(key_len == 32, "record key is 32 bytes");
        let by_name = |list: &Value| -> BTreeMap<String, Value> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|m| (m["name"].as_str().unwrap_or_default().to_string(), m.clone()))
                .collect()
        };
        let mounts = by_name(&c["volumeMounts"]);
        let vols = by_name(&pod["volumes"]);
        let mount = |n: &str| mounts.get(n).cloned().unwrap_or(Value::Null);
        let vol = |n: &str| vols.get(n).cloned().unwrap_or(Value::Null);
        self.expect(
            mount("record-key")["mountPath"] == "/etc/pod-reloader/record-key"
                && mount("record-key")["readOnly"] == true,
            "record key mounted read-only",
        );
        self.expect(
            vol("record-key")["secret"]["secretName"] == "pod-reloader-record-key"
                && vol("record-key")["secret"]["items"] == json!([{"key": "key", "path": "key"}]),
            "record key volume",
        );
        let image = c["image"].as_str().unwrap_or_default();
        self.expect(
            Regex::new(r"^[^@]+@sha256:[0-9a-f]{64}$").expect("regex").is_match(image),
            format!("image not by digest: {image}"),
        );
        let envs = by_name(&c["env"]);
        let field_path = |n: &str| envs.get(n).map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone());
        self.expect(field_path("POD_NAME") == Some(json!("metadata.name")), "POD_NAME");
        self.expect(field_path("POD_NAMESPACE") == Some(json!("metadata.namespace")), "POD_NAMESPACE");
        self.expect(
            envs.keys().map(String::as_str).collect::<Vec<_>>() == ["POD_NAME", "POD_NAMESPACE"],
            format!("unexpected env {:?}", envs.keys().collect::<Vec<_>>()),
        );
        self.expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe /healthz");
        self.expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe /readyz");
        let sc = &c["securityContext"];
        self.expect(sc["readOnlyRootFilesystem"] == true, "readOnlyRootFilesystem");
        self.expect(sc["allowPrivilegeEscalation"] == false, "allowPrivilegeEscalation false");
        self.expect(sc["capabilities"]["drop"] == json!(["ALL"]), "capabilities drop ALL");
        let psc = &pod["securityContext"];
        self.expect(psc["runAsNonRoot"] == true && psc["runAsUser"] == 64535, "non-root 64535");
        self.expect(psc["seccompProfile"]["type"] == "RuntimeDefault", "seccomp RuntimeDefault");
        self.expect(
            c["ports"] == json!([{"name": "http-metrics", "containerPort": 9090, "protocol": "TCP"}]),
            "one port 9090",
        );

        // Resources from the settings.
        for k in ["cpu", "memory"] {
            let (got, want) = (&c["resources"]["requests"][k], &v["resources"]["requests"][k]);
            self.expect(got == want, format!("requests.{k} {got} != {want}"));
            let (got, want) = (&c["resources"]["limits"][k], &v["resources"]["limits"][k]);
            self.expect(got == want, format!("limits.{k} {got} != {want}"));
        }

        // The config file.
        let cm = self.one("ConfigMap", Some("pod-reloader-config"), Some("d8-pod-reloader"));
        let cfg = cm["data"]["config.yaml"].as_str().map(|t| yaml::parse(t, "config.yaml")).unwrap_or(json!({}));
        let expected_keys: BTreeSet<&str> = [
            "reloadStrategy",
            "reloadOnCreate",
            "reloadOnDelete",
            "autoReloadAll",
            "namespaces",
            "namespacesToIgnore",
            "namespaceSelector",
            "resourceLabelSelector",
            "resourcesToIgnore",
            "ignoredWorkloadTypes",
            "argoRollouts",
            "coalesceWindow",
            "logFormat",
            "logLevel",
            "leaderElection",
            "alerting",
            "maxRolloutsPerSecond",
            "metricsCountByNamespace",
            "customWorkloads",
            "webhookUrlFile",
            "csiIntegration",
            "statefulSetOnDeleteRestart",
            "cronJobTrigger",
        ]
        .into();
        let got_keys: BTreeSet<&str> = cfg.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
        self.expect(
            got_keys == expected_keys,
            format!("config keys differ: {:?}", got_keys.symmetric_difference(&expected_keys).collect::<Vec<_>>()),
        );
        // Deckhouse's spellings in the settings, Reloader's in the controller's config.
        for k in ["reloadStrategy", "logFormat", "logLevel"] {
            let want = controller_spelling(k, v[k].as_str().unwrap_or_default());
            self.expect(cfg[k] == want.as_str(), format!("config {k}={}, want {want:?} for {}", cfg[k], v[k]));
        }
        for k in ["resourcesToIgnore", "ignoredWorkloadTypes"] {
            let want: Vec<String> = strs(&v[k]).iter().map(|x| controller_spelling(k, x)).collect();
            self.expect(cfg[k] == json!(want), format!("config {k}={}, want {want:?} for {}", cfg[k], v[k]));
        }
        for k in [
            "reloadOnCreate",
            "reloadOnDelete",
            "autoReloadAll",
            "resourceLabelSelector",
            "coalesceWindow",
            "namespaces",
            "maxRolloutsPerSecond",
            "metricsCountByNamespace",
        ] {
            self.expect(cfg[k] == v[k], format!("config {k}={}, settings {}", cfg[k], v[k]));
        }
        let scoped = v["namespaces"].as_array().is_some_and(|a| !a.is_empty());
        let want_selector = if scoped { json!("") } else { v["namespaceSelector"].clone() };
        self.expect(cfg["namespaceSelector"] == want_selector, "namespaceSelector in config");
        let want_ignore = if scoped { json!([]) } else { v["namespacesToIgnore"].clone() };
        self.expect(cfg["namespacesToIgnore"] == want_ignore, "namespacesToIgnore in config");
        self.expect(cfg["argoRollouts"] == v["internal"]["argoRolloutsEnabled"], "argoRollouts in config");
        let replicas = spec["replicas"].as_i64().unwrap_or(0);
        let ha =
            v.get("highAvailability").unwrap_or(&r.values["global"]["highAvailability"]).as_bool().unwrap_or(false);
        self.expect(replicas == if ha { 2 } else { 1 }, format!("replicas {replicas} with HA={ha}"));
        self.expect(
            cfg["leaderElection"] == json!({"enabled": replicas > 1, "leaseName": "pod-reloader"}),
            format!("leaderElection {}", cfg["leaderElection"]),
        );
        let alerting = v["alerting"]["enabled"] == true;
        self.expect(cfg["alerting"]["enabled"] == alerting, "alerting.enabled in config");
        self.expect(cfg["alerting"]["webhookUrlFile"] == "/etc/pod-reloader/alert/url", "webhookUrlFile");
        let sink = controller_spelling("sink", v["alerting"]["webhook"]["sink"].as_str().unwrap_or_default());
        self.expect(
            cfg["alerting"]["sink"] == sink.as_str(),
            format!("alerting.sink {} != {sink}", cfg["alerting"]["sink"]),
        );
        let url = v["alerting"]["webhook"]["url"].as_str().filter(|u| !u.is_empty());
        let secret_ref = v["alerting"]["webhook"].get("urlSecretRef").filter(|r| r.is_object());
        if let Some(url) = url {
            self.expect(!r.text.contains(url), "the webhook URL appears in clear text in the render");
        }
        let secrets = self.find("Secret", Some("pod-reloader-alert"), None);
        match (alerting, secret_ref) {
            (true, Some(sref)) => {
                // The operator's Secret is mounted; the module renders none of its own.
                self.expect(secrets.is_empty(), "no module alert Secret with urlSecretRef");
                let want = json!({"secretName": sref["name"], "items": [{"key": sref.get("key").unwrap_or(&json!("url")), "path": "url"}]});
                let got = json!({"secretName": vol("alert")["secret"]["secretName"], "items": vol("alert")["secret"]["items"]});
                self.expect(got == want, format!("alert volume from the operator's Secret: {got} != {want}"));
                self.expect(mount("alert")["mountPath"] == "/etc/pod-reloader/alert", "alert Secret mounted");
            }
            (true, None) => {
                self.expect(secrets.len() == 1, "alert Secret expected");
                let got = secrets
                    .first()
                    .and_then(|s| s["data"]["url"].as_str())
                    .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                self.expect(got.as_deref() == url, "alert Secret holds the URL");
                self.expect(
                    vol("alert")["secret"]["secretName"] == "pod-reloader-alert",
                    "alert volume from pod-reloader-alert",
                );
                self.expect(mount("alert")["mountPath"] == "/etc/pod-reloader/alert", "alert Secret mounted");
            }
            (false, _) => {
                self.expect(secrets.is_empty(), "no alert Secret when alerting is off");
                self.expect(!mounts.contains_key("alert"), "no alert mount when alerting is off");
            }
        }
        self.check_webhook_mode(&r.text, &cfg, &mount, &vol);
        self.expect(mount("config")["mountPath"] == "/etc/pod-reloader/config.yaml", "config mount");

        // Strategy and anti-affinity.
        let lease_roles = self.find("Role", Some("pod-reloader:leader-election"), Some("d8-pod-reloader")).len();
        if replicas > 1 {
            self.expect(spec["strategy"]["type"] == "RollingUpdate", "HA: RollingUpdate");
            let aff = &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
            self.expect(aff[0]["topologyKey"] == "kubernetes.io/hostname", "HA: anti-affinity by hostname");
            self.expect(lease_roles == 1, "HA: lease Role");
        } else {
            self.expect(spec["strategy"]["type"] == "Recreate", "single replica: Recreate");
            self.expect(pod.get("affinity").is_none(), "single replica: no affinity");
            self.expect(
                self.find("Role", Some("pod-reloader:leader-election"), None).is_empty(),
                "single replica: no lease Role",
            );
        }

        // The PDB matches the pods.
        let pdb = self.one("PodDisruptionBudget", Some("pod-reloader"), Some("d8-pod-reloader"));
        self.expect(
            pdb["spec"]["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"],
            "PDB selector matches the pod labels",
        );

        // Optional-module objects.
        let mods = strs(&r.values["global"]["enabledModules"]);
        let has_mod = |m: &str| mods.iter().any(|x| x == m);
        let served: BTreeSet<String> = r.case.api_versions().into_iter().collect();
        let present = |kind: &str| !self.find(kind, None, None).is_empty();
        let (vpa, pm, pr, gd) = (
            present("VerticalPodAutoscaler"),
            present("PodMonitor"),
            present("PrometheusRule"),
            present("GrafanaDashboardDefinition"),
        );
        self.expect(vpa == has_mod("vertical-pod-autoscaler"), "VPA only with the VPA module");
        self.expect(
            pm == (has_mod("operator-prometheus") || served.contains("monitoring.coreos.com/v1/PodMonitor")),
            "PodMonitor only with operator-prometheus or its API",
        );
        self.expect(
            pr == (has_mod("operator-prometheus") || served.contains("monitoring.coreos.com/v1/PrometheusRule")),
            "PrometheusRule only with operator-prometheus or its API",
        );
        self.expect(
            gd == (has_mod("prometheus") || served.contains("deckhouse.io/v1/GrafanaDashboardDefinition")),
            "dashboard only with prometheus or its API",
        );
        for vpa in self.find("VerticalPodAutoscaler", None, None) {
            self.expect(vpa["spec"]["updatePolicy"]["updateMode"] != "Auto", "VPA updateMode is not Auto");
            let names: Vec<&Value> = vpa["spec"]["resourcePolicy"]["containerPolicies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["containerName"])
                .collect();
            self.expect(names == [&c["name"]], "VPA policy for every container");
        }
        self.check_rbac();
        self.check_network_policy();
    }

    fn rules_by_resource(rules: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for r in rules.as_array().into_iter().flatten() {
            for g in strs(&r["apiGroups"]) {
                for res in strs(&r["resources"]) {
                    out.entry((g.clone(), res)).or_default().extend(strs(&r["verbs"]));
                }
            }
        }
        out
    }

    fn check_rbac(&mut self) {
        let v = self.v;
        for kind in ["ClusterRole", "Role"] {
            for o in self.find(kind, None, None) {
                for r in o["rules"].as_array().into_iter().flatten() {
                    let wild =
                        ["verbs", "resources", "apiGroups"].iter().any(|f| strs(&r[*f]).iter().any(|x| x == "*"));
                    self.expect(!wild, format!("{kind}/{}: wildcard rule", o["metadata"]["name"]));
                }
            }
        }
        let scoped = v["namespaces"].as_array().is_some_and(|a| !a.is_empty());
        let ignored: BTreeSet<String> =
            strs(&v["ignoredWorkloadTypes"]).iter().map(|k| controller_spelling("ignoredWorkloadTypes", k)).collect();
        let resources_ignored: BTreeSet<String> =
            strs(&v["resourcesToIgnore"]).iter().map(|k| controller_spelling("resourcesToIgnore", k)).collect();
        let argo = v["internal"]["argoRolloutsEnabled"] == true;
        let set = |verbs: &[&str]| verbs.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        let key = |g: &str, r: &str| (g.to_string(), r.to_string());
        let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        // Exactly what the controller calls: reflectors list/watch ConfigMaps
        // and Secrets (no get), workloads are read with get before a patch.
        for res in ["configmaps", "secrets"] {
            if !resources_ignored.contains(res) {
                want.insert(key("", res), set(&["list", "watch"]));
            }
        }
        for res in ["deployments", "daemonsets", "statefulsets"] {
            if !ignored.contains(res) {
                want.insert(key("apps", res), set(&["get", "list", "watch", "patch"]));
            }
        }
        if !ignored.contains("cronjobs") {
            want.insert(key("batch", "cronjobs"), set(&["get", "list", "watch", "patch"]));
        }
        if !ignored.contains("jobs") {
            want.insert(key("batch", "jobs"), set(&["get", "list", "watch", "create", "delete", "patch"]));
        }
        if argo && !ignored.contains("rollouts") {
            want.insert(key("argoproj.io", "rollouts"), set(&["get", "list", "watch", "patch"]));
        }
        // A Rollout's workloadRef names a Deployment it follows: read even when Deployments are not rolled.
        if argo && !ignored.contains("rollouts") && ignored.contains("deployments") {
            want.insert(key("apps", "deployments"), set(&["get", "list", "watch"]));
        }
        // OnDelete StatefulSets get their pods replaced one by one (on unless turned off).
        if v["statefulSetOnDeleteRestart"] != false && !ignored.contains("statefulsets") {
            want.insert(key("", "pods"), set(&["list", "delete"]));
        }
        // A reloaded CronJob starts a Job (cronJobTrigger) even when Jobs themselves are not rolled.
        if v["cronJobTrigger"] == true && ignored.contains("jobs") && !ignored.contains("cronjobs") {
            want.insert(key("batch", "jobs"), set(&["create"]));
        }
        if v["csiIntegration"] == true {
            want.insert(key("secrets-store.csi.x-k8s.io", "secretproviderclasspodstatuses"), set(&["list", "watch"]));
            want.insert(key("secrets-store.csi.x-k8s.io", "secretproviderclasses"), set(&["get"]));
        }
        for c in v["customWorkloads"].as_array().into_iter().flatten() {
            let (group, plural) = (c["group"].as_str().unwrap_or_default(), c["plural"].as_str().unwrap_or_default());
            want.insert(key(group, plural), set(&["get", "list", "watch", "patch"]));
        }
        want.insert(key("events.k8s.io", "events"), set(&["create", "patch"]));
        if let Some(lease_role) =
            self.find("Role", Some("pod-reloader:leader-election"), Some("d8-pod-reloader")).first()
        {
            // get/patch on the one Lease by name; create cannot be restricted by name.
            let want_lease = json!([
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"],
                 "resourceNames": ["pod-reloader"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            ]);
            self.expect(lease_role["rules"] == want_lease, format!("lease Role rules: {}", lease_role["rules"]));
        }
        let subjects = json!([{"kind": "ServiceAccount", "name": "pod-reloader", "namespace": "d8-pod-reloader"}]);
        // The baseline store's shards, in the module's namespace, in every render.
        let store_role = self.one("Role", Some("pod-reloader:baseline-store"), Some("d8-pod-reloader"));
        let want_store = json!([{"apiGroups": [""], "resources": ["configmaps"],
            "verbs": ["get", "list", "watch", "create", "update"]}]);
        self.expect(store_role["rules"] == want_store, format!("baseline store Role rules: {}", store_role["rules"]));
        let store_binding = self.one("RoleBinding", Some("pod-reloader:baseline-store"), Some("d8-pod-reloader"));
        self.expect(store_binding["subjects"] == subjects, "baseline store RoleBinding subjects");
        let main_roles = |c: &Self| -> Vec<&Value> {
            c.find("Role", None, None).into_iter().filter(|o| o["metadata"]["name"] == "d8:pod-reloader").collect()
        };
        if scoped {
            self.expect(
                self.find("ClusterRole", None, None).is_empty()
                    && self.find("ClusterRoleBinding", None, None).is_empty(),
                "scoped mode: no ClusterRole/ClusterRoleBinding",
            );
            for ns in strs(&v["namespaces"]) {
                let role = self.one("Role", Some("d8:pod-reloader"), Some(&ns));
                let got = Self::rules_by_resource(&role["rules"]);
                self.expect(got == want, format!("Role in {ns}: {got:?} != {want:?}"));
                let rb = self.one("RoleBinding", Some("d8:pod-reloader"), Some(&ns));
                self.expect(rb["subjects"] == subjects, format!("RoleBinding in {ns} subjects"));
            }
            let mut got: Vec<String> = main_roles(self)
                .iter()
                .map(|o| o["metadata"]["namespace"].as_str().unwrap_or_default().into())
                .collect();
            let mut listed = strs(&v["namespaces"]);
            got.sort();
            listed.sort();
            self.expect(got == listed, "Roles only in the listed namespaces");
        } else {
            if v["namespaceSelector"].as_str().is_some_and(|s| !s.is_empty()) {
                want.insert(key("", "namespaces"), set(&["list", "watch"]));
            }
            let cr = self.one("ClusterRole", Some("d8:pod-reloader"), None);
            let got = Self::rules_by_resource(&cr["rules"]);
            self.expect(got == want, format!("ClusterRole rules: {got:?} != {want:?}"));
            let crb = self.one("ClusterRoleBinding", Some("d8:pod-reloader"), None);
            self.expect(crb["subjects"] == subjects, "ClusterRoleBinding subjects");
            self.expect(main_roles(self).is_empty(), "cluster-wide: no per-namespace Roles");
        }
    }

    /// Reloader's webhook mode: the config names the mounted file only when
    /// it is on; the URL is in a Secret (the module's, or the operator's of
    /// `urlSecretRef`), mounted at /etc/pod-reloader/webhook-mode, 0440.
    fn check_webhook_mode(
        &mut self,
        text: &str,
        cfg: &Value,
        mount: &dyn Fn(&str) -> Value,
        vol: &dyn Fn(&str) -> Value,
    ) {
        let w = &self.v["webhookMode"];
        let on = w["enabled"] == true;
        let want_file = if on { "/etc/pod-reloader/webhook-mode/url" } else { "" };
        self.expect(
            cfg["webhookUrlFile"] == want_file,
            format!("webhookUrlFile {} with webhookMode on={on}", cfg["webhookUrlFile"]),
        );
        let url = w["url"].as_str().filter(|u| !u.is_empty());
        if let Some(url) = url {
            self.expect(!text.contains(url), "the webhook mode URL appears in clear text in the render");
        }
        let own = self.find("Secret", Some("pod-reloader-webhook-mode"), None);
        if !on {
            self.expect(own.is_empty(), "no webhook mode Secret when webhookMode is off");
            self.expect(mount("webhook-mode").is_null(), "no webhook-mode mount when webhookMode is off");
            return;
        }
        let (secret, key) = match w.get("urlSecretRef").filter(|r| r.is_object()) {
            Some(r) => {
                self.expect(own.is_empty(), "no module webhook mode Secret with urlSecretRef");
                (r["name"].clone(), r.get("key").cloned().unwrap_or(json!("url")))
            }
            None => {
                let got = own
                    .first()
                    .and_then(|s| s["data"]["url"].as_str())
                    .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                self.expect(own.len() == 1 && got.as_deref() == url, "webhook mode Secret holds the URL");
                (json!("pod-reloader-webhook-mode"), json!("url"))
            }
        };
        let want = json!({"secretName": secret, "items": [{"key": key, "path": "url"}]});
        let got = vol("webhook-mode")["secret"].clone();
        self.expect(
            json!({"secretName": got["secretName"], "items": got["items"]}) == want,
            format!("webhook-mode volume {got} != {want}"),
        );
        // 0440 as the record key's (this YAML reader does not read 0440 as octal: compared, not spelled out).
        self.expect(
            !got["defaultMode"].is_null() && got["defaultMode"] == vol("record-key")["secret"]["defaultMode"],
            format!("webhook-mode volume mode {}", got["defaultMode"]),
        );
        self.expect(
            mount("webhook-mode")
                == json!({"name": "webhook-mode", "mountPath": "/etc/pod-reloader/webhook-mode", "readOnly": true}),
            format!("webhook-mode mount {}", mount("webhook-mode")),
        );
    }

    fn check_network_policy(&mut self) {
        let v = self.v;
        let np = self.one("NetworkPolicy", Some("pod-reloader"), Some("d8-pod-reloader"));
        let spec = &np["spec"];
        self.expect(spec["policyTypes"] == json!(["Ingress", "Egress"]), "NetworkPolicy covers ingress and egress");
        let ingress = &spec["ingress"];
        self.expect(
            ingress.as_array().is_some_and(|a| a.len() == 1)
                && ingress[0]["ports"] == json!([{"protocol": "TCP", "port": 9090}]),
            format!("ingress only to 9090: {ingress}"),
        );
        let egress: Vec<Value> = spec["egress"].as_array().cloned().unwrap_or_default();
        let mut rules = egress.clone();
        let take = |rules: &mut Vec<Value>, matched: &[Value]| rules.retain(|r| !matched.contains(r));
        for ep in v["internal"]["apiserverEndpoints"].as_array().into_iter().flatten() {
            let address = ep["address"].as_str().unwrap_or_default();
            let suffix = if address.contains(':') { "/128" } else { "/32" };
            let matched: Vec<Value> = rules
                .iter()
                .filter(|r| {
                    r["to"] == json!([{"ipBlock": {"cidr": format!("{address}{suffix}")}}])
                        && r["ports"] == json!([{"protocol": "TCP", "port": ep["port"]}])
                })
                .cloned()
                .collect();
            self.expect(matched.len() == 1, format!("egress to apiserver endpoint {ep}"));
            take(&mut rules, &matched);
        }
        // Unknown endpoints: no apiserver rule at all (fail closed), checked
        // by "no rule without peers" here and "no unexpected rule" below.
        for r in &egress {
            self.expect(
                r["to"].as_array().is_some_and(|t| !t.is_empty()),
                format!("egress rule without peers (the port to any address): {r}"),
            );
        }
        let dns: Vec<Value> = rules
            .iter()
            .filter(|r| r["ports"] == json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]))
            .cloned()
            .collect();
        self.expect(
            dns.len() == 1
                && dns[0]["to"]
                    == json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]),
            "egress to DNS in kube-system",
        );
        take(&mut rules, &dns);
        // Each webhook that is on (alerting's, the webhook mode's) gets its own rule.
        for (setting, on, webhook) in [
            ("alerting.webhook", &v["alerting"]["enabled"], &v["alerting"]["webhook"]),
            ("webhookMode", &v["webhookMode"]["enabled"], &v["webhookMode"]),
        ] {
            if *on != true {
                continue;
            }
            let mut cidrs = strs(&webhook["egress"]);
            let port = match webhook["url"].as_str().filter(|u| !u.is_empty()) {
                Some(url) => {
                    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    let hostport = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
                    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                        let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
                        (h, p.strip_prefix(':').and_then(|p| p.parse::<u64>().ok()))
                    } else {
                        match hostport.rsplit_once(':') {
                            Some((h, p)) => (h, p.parse::<u64>().ok()),
                            None => (hostport, None),
                        }
                    };
                    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
                    if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit() || c == '.') {
                        let own = format!("{host}/32");
                        cidrs.retain(|c| *c != own);
                        cidrs.insert(0, own);
                    }
                    port
                }
                None => webhook["port"].as_u64().unwrap_or(443),
            };
            // A host name without egress CIDRs: no rule (never the port to any
            // address); "unexpected egress rules" below catches one.
            if cidrs.is_empty() {
                continue;
            }
            let want: Vec<Value> = cidrs.iter().map(|c| json!({"ipBlock": {"cidr": c}})).collect();
            let want = json!({"to": want, "ports": [{"protocol": "TCP", "port": port}]});
            let matched: Vec<Value> = rules.iter().filter(|r| **r == want).cloned().collect();
            self.expect(matched.len() == 1, format!("{setting}: egress {want} in {rules:?}"));
            take(&mut rules, &matched);
        }
        self.expect(rules.is_empty(), format!("unexpected egress rules: {rules:?}"));
    }

    /// The case's own `expect`.
    fn specific(&mut self) {
        let exp = self.r.case.def["expect"].clone();
        for (kind_name, present) in exp["objects"].as_object().into_iter().flatten() {
            let (kind, name) = kind_name.split_once('/').unwrap_or((kind_name, ""));
            let got = !self.find(kind, (!name.is_empty()).then_some(name), None).is_empty();
            self.expect(json!(got) == *present, format!("object {kind_name} present={got}, expected {present}"));
        }
        let pod_field = |c: &mut Self, field: &str| {
            let dep = c.one("Deployment", Some("pod-reloader"), None);
            dep["spec"]["template"]["spec"][field].clone()
        };
        for field in ["nodeSelector", "tolerations", "imagePullSecrets"] {
            if let Some(want) = exp.get(field) {
                let got = pod_field(self, field);
                self.expect(got == *want, format!("{field} {got} != {want}"));
            }
        }
        if let Some(want) = exp.get("image") {
            let got = pod_field(self, "containers")[0]["image"].clone();
            self.expect(got == *want, format!("image {got} != {want}"));
        }
        if let Some(want) = exp.get("vpaMaxAllowed") {
            let vpa = self.one("VerticalPodAutoscaler", Some("pod-reloader"), None);
            let got = &vpa["spec"]["resourcePolicy"]["containerPolicies"][0]["maxAllowed"];
            self.expect(got == want, format!("VPA maxAllowed {got} != {want}"));
        }
    }
}

/// The assertions of one render: (how many, the failed ones).
fn check(r: &Render) -> (usize, Vec<String>) {
    let mut c = Checker { r, v: &r.values[MODULE_KEY], failures: Vec::new(), count: 0 };
    c.generic();
    c.specific();
    (c.count, c.failures)
}

#[test]
fn every_render_holds_its_assertions() {
    let renders = render_all();
    let mut failed = Vec::new();
    for r in &renders {
        let (count, failures) = check(r);
        println!(
            "render {}: {} objects, {} of {count} assertions hold",
            r.case.name,
            r.objects.len(),
            count - failures.len()
        );
        assert!(count >= 90, "{}: only {count} assertions ran", r.case.name);
        failed.extend(failures.into_iter().map(|f| format!("{}: {f}", r.case.name)));
    }
    assert!(failed.is_empty(), "failed assertions:\n  {}", failed.join("\n  "));
}

/// The checker itself catches what it is there for: a drifted config, a
/// wider ClusterRole, a NetworkPolicy rule to any address.
#[test]
fn the_assertions_catch_a_broken_render() {
    let mut render = render_named("defaults");
    let r = &mut render;
    assert_eq!(check(r).1, Vec::<String>::new(), "defaults holds before it is broken");
    for o in &mut r.objects {
        match o["kind"].as_str() {
            Some("ConfigMap") if o["metadata"]["name"] == "pod-reloader-config" => {
                let text = o["data"]["config.yaml"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("reloadOnCreate: true", "reloadOnCreate: false");
                o["data"]["config.yaml"] = json!(text);
            }
            Some("ClusterRole") if o["metadata"]["name"] == "d8:pod-reloader" => {
                o["rules"]
                    .as_array_mut()
                    .expect("rules")
                    .push(json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]}));
            }
            Some("NetworkPolicy") => {
                o["spec"]["egress"]
                    .as_array_mut()
                    .expect("egress")
                    .push(json!({"ports": [{"protocol": "TCP", "port": 443}]}));
            }
            _ => {}
        }
    }
    let failures = check(r).1;
    let text = failures.join("\n");
    assert!(text.contains("config reloadOnCreate=false, settings true"), "{text}");
    assert!(text.contains("ClusterRole rules:"), "{text}");
    assert!(text.contains("egress rule without peers"), "{text}");
}
