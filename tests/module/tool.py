#!/usr/bin/env python3
"""Helpers of tests/module/run.sh (the module package tests).

Subcommands:
  values CASE.yaml           print the Helm values for a matrix case: the
                             case's settings with the openapi defaults applied
                             (as addon-operator does), validated against the
                             schema, plus the global stub; then the module's
                             hooks binary ($POD_RELOADER_HOOKS) runs every
                             beforeHelm hook on them, as addon-operator does
                             before Helm, and its values patches are applied
                             (the case's `internal` values stand for the
                             cluster: Argo Rollouts served, apiserver
                             endpoints); the result must validate against
                             openapi/values.yaml with x-required-for-helm.
  api-versions CASE.yaml     print the case's extra --api-versions, one a line.
  cases                      check openapi/openapi-case-tests.yaml: every
                             positive case validates, every negative case is
                             rejected with a message naming its field.
  check CASE RENDER.yaml     assertions on one rendered case.
  schemas OPENAPI_V2.json DIR
                             write kubeconform JSON schemas (strict: unknown
                             fields rejected) for every kind the API server
                             serves, laid out as DIR/<group>/<version>/<kind>.json.
  split RENDER.yaml DIR      write each rendered object to its own file.
  golden RENDER.yaml         print RENDER as kept in golden/ (dashboard JSON
                             replaced by its size and hash).
  positive-cases DIR         write every positive configValues case of the
                             openapi case file as a case file into DIR.
  dmt-report LOG RC          read the output of Deckhouse's `dmt lint` (LOG, its
                             exit code RC): print "N errors, N warnings" and
                             one line per finding; exit 1 if dmt found an
                             error, exited non-zero or printed no summary.
"""

import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODULE_KEY = "podReloader"
# Deckhouse's spellings of the enum settings -> the controller's
# (Reloader-compatible) spellings in its config file, as the hooks translate.
CONTROLLER_SPELLING = {
    "reloadStrategy": {"EnvVars": "env-vars", "Annotations": "annotations"},
    "logFormat": {"Text": "text", "JSON": "json"},
    "logLevel": {"Debug": "debug", "Info": "info", "Warn": "warn", "Error": "error"},
    "resourcesToIgnore": {"ConfigMaps": "configmaps", "Secrets": "secrets"},
    "ignoredWorkloadTypes": {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
                             "CronJob": "cronjobs", "Job": "jobs", "Rollout": "rollouts"},
    "sink": {"Slack": "slack", "Teams": "teams", "GChat": "gchat", "Webhook": "webhook"},
}


# --------------------------------------------------------------------------
# openapi: schema loading, addon-operator-like defaults, validation
# --------------------------------------------------------------------------

def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def strictify(schema):
    """addon-operator treats an object schema without additionalProperties as
    additionalProperties: false. Apply that through properties/items, not into
    anyOf/oneOf/allOf branches (those describe partial objects)."""
    if not isinstance(schema, dict):
        return schema
    s = dict(schema)
    if "properties" in s:
        s["properties"] = {k: strictify(v) for k, v in s["properties"].items()}
        if "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("items"), dict):
        s["items"] = strictify(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = strictify(s["additionalProperties"])
    return s


def config_schema():
    return strictify(load_yaml(os.path.join(ROOT, "openapi", "config-values.yaml")))


def values_schema():
    """values.yaml extended with config-values.yaml (x-extend)."""
    vals = load_yaml(os.path.join(ROOT, "openapi", "values.yaml"))
    ext = vals.pop("x-extend", None)
    if ext:
        base = load_yaml(os.path.join(ROOT, "openapi", ext["schema"]))
        merged = copy.deepcopy(base)
        merged.setdefault("properties", {}).update(vals.get("properties", {}))
        for k, v in vals.items():
            if k != "properties":
                merged.setdefault(k, v)
        vals = merged
    return strictify(vals)


def apply_defaults(schema, value):
    """Fill in defaults top-down, like addon-operator: a missing property with
    a default gets a copy of it; objects (given or defaulted) are descended."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def validation_errors(schema, instance):
    import jsonschema
    validator = jsonschema.Draft7Validator(schema)
    return sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))


def path_of(err):
    return ".".join(str(p) for p in err.absolute_path) or "<root>"


def message_of(err):
    """The validator's message, with long patterns cut and anyOf explained."""
    if err.validator == "pattern":
        return f"{err.instance!r} does not match the pattern of the field"
    if err.validator in ("anyOf", "oneOf") and err.context:
        subs = sorted({f"{'.'.join(str(p) for p in sub.absolute_path) or '.'}: {sub.message}" for sub in err.context})
        return "matches none of the allowed shapes (" + "; ".join(subs) + ")"
    return err.message


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def compose_values(case_path):
    case = load_yaml(case_path) or {}
    settings = copy.deepcopy(case.get("settings") or {})
    errs = validation_errors(config_schema(), settings)
    if errs:
        for e in errs:
            print(f"{case_path}: settings.{path_of(e)}: {message_of(e)}", file=sys.stderr)
        sys.exit(1)
    module = copy.deepcopy(settings)
    module["internal"] = copy.deepcopy(case.get("internal") or {})
    if "registry" in case:
        module["registry"] = copy.deepcopy(case["registry"])
    schema = values_schema()
    module = apply_defaults(schema, module)
    errs = validation_errors(schema, module)
    if errs:
        for e in errs:
            print(f"{case_path}: values.{path_of(e)}: {message_of(e)}", file=sys.stderr)
        sys.exit(1)
    stub = load_yaml(os.path.join(HERE, "global-values.yaml"))
    glob = deep_merge(stub["global"], case.get("global") or {})
    return {"global": glob, MODULE_KEY: module}


# --------------------------------------------------------------------------
# the module's hooks, run as addon-operator runs them before Helm
# --------------------------------------------------------------------------

def apply_json_patch(doc, ops):
    """RFC 6902 add/replace/remove on JSON-pointer paths (what the hooks emit)."""
    for op in ops:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = tokens[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise ValueError(f"unsupported patch op {op}")
    return doc


# base64 of the bytes 0x00..0x1f: the record key of every rendered case.
TEST_RECORD_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def cluster_snapshots(internal):
    """Snapshots (jqFilter results) of the hooks' kubernetes bindings for a
    cluster where what the case's `internal` values say holds."""
    served = [{"filterResult": {"name": "rollouts.argoproj.io", "served": ["v1alpha1"]}}]
    slices = []
    for i, ep in enumerate(internal.get("apiserverEndpoints") or []):
        family = "IPv6" if ":" in ep["address"] else "IPv4"
        slices.append({"filterResult": {"name": f"kubernetes-{i}", "addressType": family,
                                        "addresses": [ep["address"]], "ports": [ep["port"]]}})
    # The record key Secret exists with the case's key, else a fixed test key
    # (a generated one would make every render differ).
    key = internal.get("recordKey") or TEST_RECORD_KEY
    secret = [{"filterResult": {"name": "pod-reloader-record-key", "key": key}}]
    return {"argo_rollouts_crd": served if internal.get("argoRolloutsEnabled") else [],
            "apiserver_endpointslices": slices,
            "record_key_secret": secret}


def run_hooks(values):
    """Every beforeHelm hook of `hook config`, in order, with a beforeHelm
    binding context carrying the snapshots of its own bindings; each values
    patch is applied before the next hook runs."""
    binary = os.environ.get("POD_RELOADER_HOOKS")
    if not binary:
        raise SystemExit("POD_RELOADER_HOOKS is not set (the pod-reloader-hooks binary)")
    env = dict(os.environ, MODULE_DIR=ROOT)
    config = json.loads(subprocess.run([binary, "hook", "config"], check=True, capture_output=True, env=env).stdout)
    order = sorted((h["beforeHelm"], h["metadata"]["name"], i) for i, h in enumerate(config["hooks"]) if "beforeHelm" in h)
    snapshots = cluster_snapshots(values[MODULE_KEY].get("internal") or {})
    with tempfile.TemporaryDirectory() as tmp:
        for _, name, i in order:
            bindings = [k["name"] for k in config["hooks"][i].get("kubernetes") or []]
            files = {k: os.path.join(tmp, f"{i}-{k.lower()}") for k in (
                "BINDING_CONTEXT_PATH", "VALUES_PATH", "CONFIG_VALUES_PATH", "VALUES_JSON_PATCH_PATH",
                "CONFIG_VALUES_JSON_PATCH_PATH", "METRICS_PATH", "KUBERNETES_PATCH_PATH")}
            context = [{"binding": "beforeHelm", "snapshots": {b: snapshots[b] for b in bindings}}]
            with open(files["BINDING_CONTEXT_PATH"], "w") as f:
                json.dump(context, f)
            with open(files["VALUES_PATH"], "w") as f:
                json.dump(values, f)
            with open(files["CONFIG_VALUES_PATH"], "w") as f:
                json.dump({}, f)
            for k in ("VALUES_JSON_PATCH_PATH", "CONFIG_VALUES_JSON_PATCH_PATH", "METRICS_PATH", "KUBERNETES_PATCH_PATH"):
                open(files[k], "w").close()
            r = subprocess.run([binary, "hook", "run", str(i)], capture_output=True, text=True, env=dict(env, **files))
            if r.returncode != 0:
                raise SystemExit(f"hook {i} ({name}) failed: {r.stderr.strip()}")
            with open(files["VALUES_JSON_PATCH_PATH"]) as f:
                text = f.read().strip()
            if text:
                apply_json_patch(values, json.loads(text))
    return values


def helm_values(case_path):
    """compose_values, then the hooks; the result validates against
    openapi/values.yaml with internal's x-required-for-helm."""
    values = run_hooks(compose_values(case_path))
    schema = values_schema()
    internal = schema["properties"]["internal"]
    internal["required"] = list(internal.get("x-required-for-helm") or [])
    errs = validation_errors(schema, values[MODULE_KEY])
    if errs:
        for e in errs:
            print(f"{case_path}: values after the hooks: {path_of(e)}: {message_of(e)}", file=sys.stderr)
        sys.exit(1)
    return values


# --------------------------------------------------------------------------
# openapi case file
# --------------------------------------------------------------------------

def run_cases():
    cases = load_yaml(os.path.join(ROOT, "openapi", "openapi-case-tests.yaml"))
    schemas = {"configValues": config_schema(), "values": values_schema()}
    passed = failed = 0
    for polarity in ("positive", "negative"):
        for kind in ("configValues", "values"):
            for i, case in enumerate((cases.get(polarity) or {}).get(kind) or []):
                instance = copy.deepcopy(case)
                if kind == "values":
                    instance = apply_defaults(schemas["values"], instance)
                errs = validation_errors(schemas[kind], instance)
                label = f"{polarity}.{kind}[{i}] {json.dumps(case, sort_keys=True)}"
                if polarity == "positive":
                    if errs:
                        failed += 1
                        print(f"FAIL {label}: unexpectedly rejected:")
                        for e in errs:
                            print(f"       {path_of(e)}: {message_of(e)}")
                    else:
                        passed += 1
                        print(f"ok   {label}")
                    continue
                if not errs:
                    failed += 1
                    print(f"FAIL {label}: accepted, expected a rejection")
                    continue
                # The message must name the offending field: a top-level key of
                # the case is in the error path or in the message text.
                keys = set(case.keys()) if isinstance(case, dict) else set()
                named = [e for e in errs
                         if (list(e.absolute_path) and str(list(e.absolute_path)[0]) in keys)
                         or any(f"'{k}'" in e.message for k in keys)]
                if not named:
                    failed += 1
                    print(f"FAIL {label}: rejected, but no message names a field of {sorted(keys)}:")
                    for e in errs:
                        print(f"       {path_of(e)}: {message_of(e)}")
                    continue
                passed += 1
                e = named[0]
                print(f"ok   {label}\n       rejected: {path_of(e)}: {message_of(e)}")
    # Coverage: every setting (every property path of config-values.yaml,
    # objects included) appears in at least one positive and one negative
    # configValues case.
    def prop_paths(schema, prefix=""):
        for name, sub in (schema.get("properties") or {}).items():
            path = f"{prefix}.{name}" if prefix else name
            yield path
            if isinstance(sub, dict):
                yield from prop_paths(sub, path)
                if isinstance(sub.get("items"), dict):
                    yield from prop_paths(sub["items"], path + "[]")

    def case_paths(value, prefix=""):
        if isinstance(value, dict):
            for k, v in value.items():
                path = f"{prefix}.{k}" if prefix else k
                yield path
                yield from case_paths(v, path)
        elif isinstance(value, list):
            for v in value:
                yield from case_paths(v, prefix + "[]")

    schema_paths = set(prop_paths(load_yaml(os.path.join(ROOT, "openapi", "config-values.yaml"))))
    for polarity in ("positive", "negative"):
        covered = set()
        for case in (cases.get(polarity) or {}).get("configValues") or []:
            covered |= set(case_paths(case))
        missing = sorted(p for p in schema_paths if p not in covered
                         # a list item's fields are covered through their list
                         and not re.search(r"\[\]\.", p))
        if missing:
            failed += 1
            print(f"FAIL {polarity} configValues cases cover every setting; missing: {', '.join(missing)}")
        else:
            passed += 1
            print(f"ok   {polarity} configValues cases cover all {len(schema_paths)} settings")
    print(f"openapi cases: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


# --------------------------------------------------------------------------
# JSON schemas for kubeconform from the API server's /openapi/v2
# --------------------------------------------------------------------------

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def convert_schema(node, name=None):
    if isinstance(node, list):
        return [convert_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if name == QUANTITY:
        return {"oneOf": [{"type": "string"}, {"type": "number"}],
                "description": node.get("description", "")}
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        out = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        if "description" in node:
            out["description"] = node["description"]
        return out
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {pk: convert_schema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
            out[k] = convert_schema(v)
        elif k == "$ref":
            out[k] = v
        else:
            out[k] = v
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def refs_of(node, acc):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            acc.add(r[len("#/definitions/"):])
        for v in node.values():
            refs_of(v, acc)
    elif isinstance(node, list):
        for v in node:
            refs_of(v, acc)


def write_schemas(openapi_path, out_dir):
    with open(openapi_path, encoding="utf-8") as f:
        doc = json.load(f)
    defs = doc["definitions"]
    converted = {n: convert_schema(d, n) for n, d in defs.items()}
    written = 0
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            closure, todo = set(), [name]
            while todo:
                n = todo.pop()
                if n in closure or n not in converted:
                    continue
                closure.add(n)
                deps = set()
                refs_of(converted[n], deps)
                todo.extend(deps - closure)
            schema = copy.deepcopy(converted[name])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schema["definitions"] = {n: converted[n] for n in sorted(closure) if n != name}
            if name in closure:
                schema["definitions"][name] = converted[name]
            group = gvk.get("group") or gvk["version"]
            d_out = os.path.join(out_dir, group, gvk["version"])
            os.makedirs(d_out, exist_ok=True)
            with open(os.path.join(d_out, gvk["kind"].lower() + ".json"), "w", encoding="utf-8") as f:
                json.dump(schema, f)
            written += 1
    print(f"wrote {written} schemas to {out_dir}")


# --------------------------------------------------------------------------
# render helpers and assertions
# --------------------------------------------------------------------------

def load_render(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def split_render(path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for i, obj in enumerate(load_render(path)):
        md = obj.get("metadata", {})
        name = f"{i:03d}-{obj['kind']}-{md.get('namespace', '_')}-{md['name']}".replace(":", "_")
        with open(os.path.join(out_dir, name + ".yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(obj, f, sort_keys=False)


class Checker:
    def __init__(self, case, render_path):
        self.case = case
        self.objs = load_render(render_path)
        with open(render_path, encoding="utf-8") as f:
            self.text = f.read()
        self.case_def = load_yaml(os.path.join(HERE, "values", case + ".yaml")) or {}
        self.values = compose_values(os.path.join(HERE, "values", case + ".yaml"))
        self.v = self.values[MODULE_KEY]
        self.failures = []
        self.count = 0

    def expect(self, cond, msg):
        self.count += 1
        if not cond:
            self.failures.append(msg)

    def find(self, kind, name=None, namespace=None):
        return [o for o in self.objs if o["kind"] == kind
                and (name is None or o["metadata"]["name"] == name)
                and (namespace is None or o["metadata"].get("namespace") == namespace)]

    def one(self, kind, name=None, namespace=None):
        found = self.find(kind, name, namespace)
        self.expect(len(found) == 1, f"expected exactly one {kind} {namespace or ''}/{name or ''}, found {len(found)}")
        return found[0] if found else {}

    # --- generic checks, for every case -----------------------------------
    def generic(self):
        for o in self.objs:
            labels = o["metadata"].get("labels", {})
            self.expect(labels.get("heritage") == "deckhouse" and labels.get("module") == "pod-reloader",
                        f"{o['kind']}/{o['metadata']['name']}: module/heritage labels missing")
        ns = self.one("Namespace", "d8-pod-reloader")
        self.expect(ns.get("metadata", {}).get("labels", {}).get("prometheus.deckhouse.io/rules-watcher-enabled") == "true",
                    "namespace lacks the rules-watcher label")
        dep = self.one("Deployment", "pod-reloader", "d8-pod-reloader")
        spec = dep.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        c = (pod.get("containers") or [{}])[0]
        self.expect(len(pod.get("containers", [])) == 1, "one container expected")
        self.expect(c.get("args") == ["--config", "/etc/pod-reloader/config.yaml", "--listen-address", "0.0.0.0:9090",
                                      "--record-key-file", "/etc/pod-reloader/record-key/key"],
                    f"unexpected args {c.get('args')}")
        # The record key: the Secret holds the hooks' key, mounted read-only where the flag points.
        key_secret = self.one("Secret", "pod-reloader-record-key", "d8-pod-reloader")
        want_key = self.v["internal"].get("recordKey") or TEST_RECORD_KEY
        self.expect(key_secret.get("data", {}).get("key") == want_key, "record key Secret holds the key of the cluster's Secret")
        self.expect(len(base64.b64decode(key_secret.get("data", {}).get("key", ""))) == 32, "record key is 32 bytes")
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        self.expect(mounts.get("record-key", {}).get("mountPath") == "/etc/pod-reloader/record-key"
                    and mounts.get("record-key", {}).get("readOnly") is True, "record key mounted read-only")
        self.expect(vols.get("record-key", {}).get("secret", {}).get("secretName") == "pod-reloader-record-key"
                    and vols.get("record-key", {}).get("secret", {}).get("items") == [{"key": "key", "path": "key"}],
                    "record key volume")
        self.expect(re.match(r"^[^@]+@sha256:[0-9a-f]{64}$", c.get("image", "")) is not None, f"image not by digest: {c.get('image')}")
        envs = {e["name"]: e for e in c.get("env", [])}
        self.expect(envs.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME")
        self.expect(envs.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace", "POD_NAMESPACE")
        self.expect(set(envs) == {"POD_NAME", "POD_NAMESPACE"}, f"unexpected env {sorted(envs)}")
        self.expect(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe /healthz")
        self.expect(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe /readyz")
        sc = c.get("securityContext", {})
        self.expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
        self.expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
        self.expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
        psc = pod.get("securityContext", {})
        self.expect(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 64535, "non-root 64535")
        self.expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
        self.expect(c.get("ports") == [{"name": "http-metrics", "containerPort": 9090, "protocol": "TCP"}], "one port 9090")

        # resources from the settings
        res = c.get("resources", {})
        want_req = self.v["resources"].get("requests", {})
        want_lim = self.v["resources"].get("limits", {})
        for k in ("cpu", "memory"):
            self.expect(res.get("requests", {}).get(k) == want_req.get(k), f"requests.{k} {res.get('requests', {}).get(k)} != {want_req.get(k)}")
            self.expect(res.get("limits", {}).get(k) == want_lim.get(k), f"limits.{k} {res.get('limits', {}).get(k)} != {want_lim.get(k)}")

        # the config file
        cm = self.one("ConfigMap", "pod-reloader-config", "d8-pod-reloader")
        cfg = yaml.safe_load(cm.get("data", {}).get("config.yaml", "{}")) or {}
        self.cfg = cfg
        expected_keys = {"reloadStrategy", "reloadOnCreate", "reloadOnDelete", "autoReloadAll", "namespaces",
                         "namespacesToIgnore", "namespaceSelector", "resourceLabelSelector", "resourcesToIgnore",
                         "ignoredWorkloadTypes", "argoRollouts", "coalesceWindow", "logFormat", "logLevel",
                         "leaderElection", "alerting", "statefulSetOnDeleteRestart",
                         "cronJobTrigger"}
        self.expect(set(cfg) == expected_keys, f"config keys differ: {sorted(set(cfg) ^ expected_keys)}")
        # Deckhouse's spellings in the settings, Reloader's in the controller's config.
        for k in ("reloadStrategy", "logFormat", "logLevel"):
            want = CONTROLLER_SPELLING[k][self.v[k]]
            self.expect(cfg.get(k) == want, f"config {k}={cfg.get(k)!r}, want {want!r} for {self.v[k]!r}")
        for k in ("resourcesToIgnore", "ignoredWorkloadTypes"):
            want = [CONTROLLER_SPELLING[k][x] for x in self.v[k]]
            self.expect(cfg.get(k) == want, f"config {k}={cfg.get(k)!r}, want {want!r} for {self.v[k]!r}")
        for k in ("reloadOnCreate", "reloadOnDelete", "autoReloadAll", "resourceLabelSelector", "coalesceWindow",
                  "namespaces", "statefulSetOnDeleteRestart", "cronJobTrigger"):
            self.expect(cfg.get(k) == self.v[k], f"config {k}={cfg.get(k)!r}, settings {self.v[k]!r}")
        scoped = bool(self.v["namespaces"])
        self.expect(cfg.get("namespaceSelector") == ("" if scoped else self.v["namespaceSelector"]), "namespaceSelector in config")
        self.expect(cfg.get("namespacesToIgnore") == ([] if scoped else self.v["namespacesToIgnore"]), "namespacesToIgnore in config")
        self.expect(cfg.get("argoRollouts") == self.v["internal"]["argoRolloutsEnabled"], "argoRollouts in config")
        replicas = spec.get("replicas")
        ha = self.v.get("highAvailability", self.values["global"].get("highAvailability", False))
        self.expect(replicas == (2 if ha else 1), f"replicas {replicas} with HA={ha}")
        self.expect(cfg.get("leaderElection") == {"enabled": replicas > 1, "leaseName": "pod-reloader"},
                    f"leaderElection {cfg.get('leaderElection')}")
        alerting = bool(self.v["alerting"].get("enabled"))
        self.expect(cfg.get("alerting", {}).get("enabled") == alerting, "alerting.enabled in config")
        self.expect(cfg.get("alerting", {}).get("webhookUrlFile") == "/etc/pod-reloader/alert/url", "webhookUrlFile")
        sink = CONTROLLER_SPELLING["sink"][self.v["alerting"]["webhook"]["sink"]]
        self.expect(cfg.get("alerting", {}).get("sink") == sink, f"alerting.sink {cfg.get('alerting', {}).get('sink')} != {sink}")
        url = self.v["alerting"]["webhook"].get("url")
        ref = self.v["alerting"]["webhook"].get("urlSecretRef")
        if url:
            self.expect(url not in self.text, "the webhook URL appears in clear text in the render")
        secrets = self.find("Secret", "pod-reloader-alert")
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        volumes = {v_["name"]: v_ for v_ in pod.get("volumes", [])}
        if alerting and ref:
            # The operator's Secret is mounted; the module renders none of its own.
            self.expect(not secrets, "no module alert Secret with urlSecretRef")
            want = {"secretName": ref["name"], "items": [{"key": ref.get("key", "url"), "path": "url"}]}
            got = {k: volumes.get("alert", {}).get("secret", {}).get(k) for k in want}
            self.expect(got == want, f"alert volume from the operator's Secret: {got} != {want}")
            self.expect(mounts.get("alert", {}).get("mountPath") == "/etc/pod-reloader/alert", "alert Secret mounted")
        elif alerting:
            self.expect(len(secrets) == 1, "alert Secret expected")
            got = base64.b64decode(secrets[0]["data"]["url"]).decode() if secrets else None
            self.expect(got == url, "alert Secret holds the URL")
            self.expect(volumes.get("alert", {}).get("secret", {}).get("secretName") == "pod-reloader-alert",
                        "alert volume from pod-reloader-alert")
            self.expect(mounts.get("alert", {}).get("mountPath") == "/etc/pod-reloader/alert", "alert Secret mounted")
        else:
            self.expect(not secrets, "no alert Secret when alerting is off")
            self.expect("alert" not in mounts, "no alert mount when alerting is off")
        self.expect(mounts.get("config", {}).get("mountPath") == "/etc/pod-reloader/config.yaml", "config mount")

        # strategy and anti-affinity
        if replicas > 1:
            self.expect(spec.get("strategy", {}).get("type") == "RollingUpdate", "HA: RollingUpdate")
            aff = pod.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
            self.expect(bool(aff) and aff[0].get("topologyKey") == "kubernetes.io/hostname", "HA: anti-affinity by hostname")
            self.expect(len(self.find("Role", "pod-reloader:leader-election", "d8-pod-reloader")) == 1, "HA: lease Role")
        else:
            self.expect(spec.get("strategy", {}).get("type") == "Recreate", "single replica: Recreate")
            self.expect("affinity" not in pod, "single replica: no affinity")
            self.expect(not self.find("Role", "pod-reloader:leader-election"), "single replica: no lease Role")

        # PDB matches the pods
        pdb = self.one("PodDisruptionBudget", "pod-reloader", "d8-pod-reloader")
        self.expect(pdb.get("spec", {}).get("selector", {}).get("matchLabels") == spec.get("template", {}).get("metadata", {}).get("labels"),
                    "PDB selector matches the pod labels")

        # optional-module objects
        mods = self.values["global"].get("enabledModules", [])
        served = set(self.case_def.get("apiVersions") or [])
        self.expect(bool(self.find("VerticalPodAutoscaler")) == ("vertical-pod-autoscaler" in mods), "VPA only with the VPA module")
        self.expect(bool(self.find("PodMonitor")) == ("operator-prometheus" in mods or "monitoring.coreos.com/v1/PodMonitor" in served),
                    "PodMonitor only with operator-prometheus or its API")
        self.expect(bool(self.find("PrometheusRule")) == ("operator-prometheus" in mods or "monitoring.coreos.com/v1/PrometheusRule" in served),
                    "PrometheusRule only with operator-prometheus or its API")
        self.expect(bool(self.find("GrafanaDashboardDefinition")) == ("prometheus" in mods or "deckhouse.io/v1/GrafanaDashboardDefinition" in served),
                    "dashboard only with prometheus or its API")
        for vpa in self.find("VerticalPodAutoscaler"):
            self.expect(vpa["spec"]["updatePolicy"]["updateMode"] != "Auto", "VPA updateMode is not Auto")
            names = [p["containerName"] for p in vpa["spec"]["resourcePolicy"]["containerPolicies"]]
            self.expect(names == [c.get("name")], "VPA policy for every container")

        self.check_rbac()
        self.check_network_policy()

    def rules_by_resource(self, rules):
        out = {}
        for r in rules:
            for g in r.get("apiGroups", []):
                for res in r.get("resources", []):
                    out.setdefault((g, res), set()).update(r.get("verbs", []))
        return out

    def check_rbac(self):
        v = self.v
        for kind in ("ClusterRole", "Role"):
            for o in self.find(kind):
                for r in o.get("rules", []):
                    self.expect("*" not in r.get("verbs", []) and "*" not in r.get("resources", []) and "*" not in r.get("apiGroups", []),
                                f"{kind}/{o['metadata']['name']}: wildcard rule")
        scoped = bool(v["namespaces"])
        ignored = {CONTROLLER_SPELLING["ignoredWorkloadTypes"][k] for k in v["ignoredWorkloadTypes"]}
        resources_ignored = {CONTROLLER_SPELLING["resourcesToIgnore"][k] for k in v["resourcesToIgnore"]}
        argo = v["internal"]["argoRolloutsEnabled"]
        want = {}
        # Exactly what the controller calls: reflectors list/watch ConfigMaps
        # and Secrets (no get), workloads are read with get before a patch.
        for res in ("configmaps", "secrets"):
            if res not in resources_ignored:
                want[("", res)] = {"list", "watch"}
        for res in ("deployments", "daemonsets", "statefulsets"):
            if res not in ignored:
                want[("apps", res)] = {"get", "list", "watch", "patch"}
        if "cronjobs" not in ignored:
            want[("batch", "cronjobs")] = {"get", "list", "watch", "patch"}
        if "jobs" not in ignored:
            want[("batch", "jobs")] = {"get", "list", "watch", "create", "delete", "patch"}
        elif "cronjobs" not in ignored and v.get("cronJobTrigger", False):
            want[("batch", "jobs")] = {"create"}  # reloaded CronJobs start a Job (cronJobTrigger)
        if argo and "rollouts" not in ignored:
            want[("argoproj.io", "rollouts")] = {"get", "list", "watch", "patch"}
        # OnDelete StatefulSets: their pods are listed and deleted in order after a reload.
        if v.get("statefulSetOnDeleteRestart", True) and "statefulsets" not in ignored:
            want[("", "pods")] = {"list", "delete"}
        want[("events.k8s.io", "events")] = {"create", "patch"}
        lease_roles = self.find("Role", "pod-reloader:leader-election", "d8-pod-reloader")
        if lease_roles:
            # get/patch on the one Lease by name; create cannot be restricted by name.
            want_lease = [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"],
                 "resourceNames": ["pod-reloader"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            ]
            self.expect(lease_roles[0].get("rules") == want_lease, f"lease Role rules: {lease_roles[0].get('rules')}")
        if scoped:
            self.expect(not self.find("ClusterRole") and not self.find("ClusterRoleBinding"),
                        "scoped mode: no ClusterRole/ClusterRoleBinding")
            for ns in v["namespaces"]:
                role = self.one("Role", "d8:pod-reloader", ns)
                got = self.rules_by_resource(role.get("rules", []))
                self.expect(got == want, f"Role in {ns}: {got} != {want}")
                rb = self.one("RoleBinding", "d8:pod-reloader", ns)
                self.expect(rb.get("subjects") == [{"kind": "ServiceAccount", "name": "pod-reloader", "namespace": "d8-pod-reloader"}],
                            f"RoleBinding in {ns} subjects")
            roles = [o for o in self.find("Role") if o["metadata"]["name"] == "d8:pod-reloader"]
            self.expect(sorted(o["metadata"]["namespace"] for o in roles) == sorted(v["namespaces"]), "Roles only in the listed namespaces")
        else:
            if v["namespaceSelector"]:
                want[("", "namespaces")] = {"list", "watch"}
            cr = self.one("ClusterRole", "d8:pod-reloader")
            got = self.rules_by_resource(cr.get("rules", []))
            self.expect(got == want, f"ClusterRole rules: {got} != {want}")
            crb = self.one("ClusterRoleBinding", "d8:pod-reloader")
            self.expect(crb.get("subjects") == [{"kind": "ServiceAccount", "name": "pod-reloader", "namespace": "d8-pod-reloader"}],
                        "ClusterRoleBinding subjects")
            self.expect(not [o for o in self.find("Role") if o["metadata"]["name"] == "d8:pod-reloader"], "cluster-wide: no per-namespace Roles")

    def check_network_policy(self):
        np_ = self.one("NetworkPolicy", "pod-reloader", "d8-pod-reloader")
        spec = np_.get("spec", {})
        self.expect(spec.get("policyTypes") == ["Ingress", "Egress"], "NetworkPolicy covers ingress and egress")
        ingress = spec.get("ingress", [])
        self.expect(len(ingress) == 1 and ingress[0].get("ports") == [{"protocol": "TCP", "port": 9090}],
                    f"ingress only to 9090: {ingress}")
        egress = spec.get("egress", [])
        eps = self.v["internal"]["apiserverEndpoints"]
        rules = list(egress)
        if eps:
            for ep in eps:
                suffix = "/128" if ":" in ep["address"] else "/32"
                match = [r for r in rules if r.get("to") == [{"ipBlock": {"cidr": ep["address"] + suffix}}]
                         and r.get("ports") == [{"protocol": "TCP", "port": ep["port"]}]]
                self.expect(len(match) == 1, f"egress to apiserver endpoint {ep}")
                for m in match:
                    rules.remove(m)
        # Unknown endpoints: no apiserver rule at all (fail closed); checked by
        # "no rule without peers" below.
        for r in egress:
            self.expect(bool(r.get("to")), f"egress rule without peers (the port to any address): {r}")
        dns = [r for r in rules if r.get("ports") == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]]
        self.expect(len(dns) == 1 and dns[0].get("to") == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "egress to DNS in kube-system")
        for m in dns:
            rules.remove(m)
        if self.v["alerting"].get("enabled"):
            from urllib.parse import urlparse
            webhook = self.v["alerting"]["webhook"]
            cidrs = list(webhook.get("egress") or [])
            if webhook.get("url"):
                u = urlparse(webhook["url"])
                port = u.port or (443 if u.scheme == "https" else 80)
                if re.match(r"^[0-9.]+$", u.hostname or ""):
                    cidrs = [u.hostname + "/32"] + [c for c in cidrs if c != u.hostname + "/32"]
            else:
                port = webhook.get("port", 443)
            match = [r for r in rules if r.get("ports") == [{"protocol": "TCP", "port": port}]]
            if cidrs:
                self.expect(len(match) == 1 and match[0].get("to") == [{"ipBlock": {"cidr": c}} for c in cidrs],
                            f"egress to the webhook port {port} in {cidrs}: {match}")
            else:
                # A host name without alerting.webhook.egress: no rule (never the port to any address).
                self.expect(not match, f"no egress to the webhook port {port} without egress CIDRs: {match}")
            for m in match:
                rules.remove(m)
        self.expect(not rules, f"unexpected egress rules: {rules}")

    def specific(self):
        exp = self.case_def.get("expect") or {}
        for kind_name, present in (exp.get("objects") or {}).items():
            kind, _, name = kind_name.partition("/")
            got = bool([o for o in self.objs if o["kind"] == kind and (not name or o["metadata"]["name"] == name)])
            self.expect(got == present, f"object {kind_name} present={got}, expected {present}")
        if "nodeSelector" in exp:
            dep = self.one("Deployment", "pod-reloader")
            got = dep.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector")
            self.expect(got == exp["nodeSelector"], f"nodeSelector {got} != {exp['nodeSelector']}")
        if "tolerations" in exp:
            dep = self.one("Deployment", "pod-reloader")
            got = dep.get("spec", {}).get("template", {}).get("spec", {}).get("tolerations")
            self.expect(got == exp["tolerations"], f"tolerations {got} != {exp['tolerations']}")
        if "image" in exp:
            dep = self.one("Deployment", "pod-reloader")
            got = dep["spec"]["template"]["spec"]["containers"][0]["image"]
            self.expect(got == exp["image"], f"image {got} != {exp['image']}")
        if "imagePullSecrets" in exp:
            dep = self.one("Deployment", "pod-reloader")
            got = dep["spec"]["template"]["spec"].get("imagePullSecrets")
            self.expect(got == exp["imagePullSecrets"], f"imagePullSecrets {got} != {exp['imagePullSecrets']}")
        if "vpaMaxAllowed" in exp:
            vpa = self.one("VerticalPodAutoscaler", "pod-reloader")
            got = vpa.get("spec", {}).get("resourcePolicy", {}).get("containerPolicies", [{}])[0].get("maxAllowed")
            self.expect(got == exp["vpaMaxAllowed"], f"VPA maxAllowed {got} != {exp['vpaMaxAllowed']}")

    def run(self):
        self.generic()
        self.specific()
        for f in self.failures:
            print(f"  - {f}")
        print(f"{self.case}: {self.count - len(self.failures)} of {self.count} assertions hold")
        return 0 if not self.failures else 1


# --------------------------------------------------------------------------
# the report of Deckhouse's dmt
# --------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A finding opens with "<emoji> [rule (#linter)]"; its fields are indented
# "Name: value" lines, a long message continues on further indented lines.
DMT_FINDING = re.compile(r"^\S*\s*\[(?P<rule>[^\]]+)\]\s*$")
DMT_FIELD = re.compile(r"^\s+(?P<name>Message|Module|Object|FilePath|LineNumber|Value):\s*(?P<value>.*)$")


# dmt warnings the module keeps, each with its reason; any other warning
# fails the step (a warning is fixed or listed here, never just ignored).
DMT_KEPT_WARNINGS = {
    ("legacy-release-file", "release.yaml"):
        "release.yaml is the source of the release image's version.json and "
        "changelog.yaml (scripts/release.sh); it is not in the bundle and "
        "Deckhouse never reads it",
}


def dmt_report(log_path, rc):
    """Findings and totals of a `dmt lint` run (its text output, colours on).

    dmt marks a finding's level only by colour: the message is red (31) for
    an error, yellow (93) for a warning. The verdict rests on the totals
    dmt prints, not on the colours."""
    raw = open(log_path, encoding="utf-8", errors="replace").read()
    findings, cur, field = [], None, None
    for line in raw.split("\n"):
        plain = ANSI.sub("", line)
        m = DMT_FINDING.match(plain)
        if m:
            cur = {"rule": m.group("rule"), "level": "", "Message": "", "FilePath": "", "LineNumber": ""}
            findings.append(cur)
            field = None
            continue
        if cur is None:
            continue
        f = DMT_FIELD.match(plain)
        if f:
            field = f.group("name")
            cur[field] = f.group("value").strip()
            if field == "Message":
                cur["level"] = "error" if "\x1b[31m" in line else "warning" if "\x1b[93m" in line else ""
        elif plain.strip() and plain.startswith(" ") and field == "Message":
            cur["Message"] += " " + plain.strip()
        elif not plain.strip() or not plain.startswith(" "):
            cur, field = None, None
    plain = ANSI.sub("", raw)
    totals = {k: re.search(rf"^\W*{k}:\s+(\d+)\s*$", plain, re.M) for k in ("Critical", "Errors", "Warnings")}
    version = re.search(r"msg='DMT version'.*version='([^']+)'", plain)
    if totals["Errors"] is None or totals["Warnings"] is None:
        print(f"dmt printed no summary (exit code {rc}); its output:")
        for line in plain.strip().split("\n")[-30:]:
            print(f"    {line}")
        return 1
    critical = int(totals["Critical"].group(1)) if totals["Critical"] else 0
    errors, warnings = int(totals["Errors"].group(1)), int(totals["Warnings"].group(1))
    def count(n, what):
        return f"{n} {what}" + ("" if n == 1 else "s")

    print(f"{count(critical + errors, 'error')}, {count(warnings, 'warning')} "
          f"(dmt {version.group(1) if version else 'version unknown'}, exit code {rc})")
    for x in sorted(findings, key=lambda x: (x["level"] != "error", x["rule"], x["FilePath"], int(x["LineNumber"] or 0))):
        # With no error in the totals, every finding is a warning.
        level = x["level"] or ("warning" if critical + errors == 0 else "finding")
        where = x["FilePath"] + (f":{x['LineNumber']}" if x["LineNumber"] else "")
        print(f"    {level} [{x['rule']}] {where}: {x['Message']}")
    unexpected = [x for x in findings if (x["rule"].split()[0], x["FilePath"]) not in DMT_KEPT_WARNINGS]
    for x in unexpected:
        print(f"    not among the kept warnings (tool.py DMT_KEPT_WARNINGS): [{x['rule']}] {x['FilePath']}")
    return 0 if critical + errors == 0 and rc == 0 and not unexpected else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "values":
        yaml.safe_dump(helm_values(argv[2]), sys.stdout, sort_keys=False)
        return 0
    if cmd == "api-versions":
        for a in (load_yaml(argv[2]) or {}).get("apiVersions") or []:
            print(a)
        return 0
    if cmd == "cases":
        return run_cases()
    if cmd == "check":
        return Checker(argv[2], argv[3]).run()
    if cmd == "schemas":
        write_schemas(argv[2], argv[3])
        return 0
    if cmd == "golden":
        # The render as compared with golden/: each dashboard JSON (hundreds
        # of lines, the same in every case) is replaced with its size and
        # hash, so the golden diff shows the manifests.
        import hashlib
        out, body, in_def = [], [], False
        def flush():
            text = "\n".join(body) + "\n"
            out.append(f"    # dashboard JSON: {len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}")
        for line in open(argv[2], encoding="utf-8").read().split("\n"):
            if in_def:
                if line.startswith("    ") or line == "":
                    body.append(line)
                    continue
                flush()
                body, in_def = [], False
            out.append(line)
            if line == "  definition: |":
                in_def = True
        if in_def:
            flush()
        sys.stdout.write("\n".join(out))
        return 0
    if cmd == "positive-cases":
        # Each positive configValues case of the openapi case file as a
        # matrix case file (settings only), for rendering.
        cases = load_yaml(os.path.join(ROOT, "openapi", "openapi-case-tests.yaml"))
        os.makedirs(argv[2], exist_ok=True)
        for i, case in enumerate((cases.get("positive") or {}).get("configValues") or []):
            with open(os.path.join(argv[2], f"openapi-positive-{i:02d}.yaml"), "w", encoding="utf-8") as f:
                yaml.safe_dump({"settings": case}, f, sort_keys=False)
        return 0
    if cmd == "dmt-report":
        return dmt_report(argv[2], int(argv[3]))
    if cmd == "split":
        split_render(argv[2], argv[3])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
