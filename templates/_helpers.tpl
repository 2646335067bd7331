{{- /*
Helpers of the pod-reloader module. The chart is self-contained: the few
Deckhouse-style helpers it needs are written here instead of depending on the
deckhouse lib-helm chart. The helm_lib_* names are the ones dmt looks for
(templates/monitoring.yaml, the kube-rbac-proxy CA ConfigMap).
*/ -}}

{{- /* Module labels: heritage/module plus the extras given as a dict.
Usage: {{ include "helm_lib_module_labels" (list . (dict "app" "pod-reloader")) }} */ -}}
{{- define "helm_lib_module_labels" -}}
{{- $context := index . 0 -}}
labels:
  heritage: deckhouse
  module: {{ $context.Chart.Name }}
{{- if eq (len .) 2 }}
{{- range $key, $value := index . 1 }}
  {{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The module's values (.Values.podReloader). */ -}}
{{- define "pod_reloader.values_key" -}}podReloader{{- end -}}

{{- /* "true" when the controller runs two replicas with leader election. The
module setting wins; without it the global Deckhouse setting is used. */ -}}
{{- define "pod_reloader.is_ha" -}}
{{- $v := .Values.podReloader -}}
{{- if hasKey $v "highAvailability" -}}
{{- if $v.highAvailability }}true{{ end -}}
{{- else if (dig "highAvailability" false .Values.global) -}}
true
{{- end -}}
{{- end -}}

{{- define "pod_reloader.replicas" -}}
{{- if include "pod_reloader.is_ha" . }}2{{ else }}1{{ end -}}
{{- end -}}

{{- /* Fails unless the hooks have set every podReloader.internal value named
(they are computed before Helm runs: RBAC rules, NetworkPolicy rules, the
controller's config). Renders nothing. Usage:
{{- include "pod_reloader.require_internal" (list . "rbac") }} */ -}}
{{- define "pod_reloader.require_internal" -}}
{{- $context := index . 0 -}}
{{- $internal := $context.Values.podReloader.internal | default dict -}}
{{- range $key := rest . -}}
{{- if not (hasKey $internal $key) -}}
{{- fail (printf "podReloader.internal.%s is not set: the module's hooks (hooks/pod-reloader-hooks) compute it before Helm runs" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* "true" when a webhook setting (the alert webhook, the webhook mode)
is on; fails when it is on without a URL or with both a URL and a Secret
reference. Never prints the URL. Usage: include "pod_reloader.webhook_on"
(list $enabled $webhook "alerting.webhook" "alerting"), where $webhook holds
url/urlSecretRef and the last two name its settings for messages. */ -}}
{{- define "pod_reloader.webhook_on" -}}
{{- $w := index . 1 | default dict -}}
{{- $setting := index . 2 -}}
{{- if index . 0 -}}
{{- $url := dig "url" "" $w -}}
{{- $ref := dig "urlSecretRef" dict $w -}}
{{- if and $url $ref }}{{ fail (printf "%s.url and %s.urlSecretRef are mutually exclusive" $setting $setting) }}{{ end -}}
{{- if not (or $url $ref.name) }}{{ fail (printf "%s.url or %s.urlSecretRef is required when %s.enabled is true" $setting $setting (index . 3)) }}{{ end -}}
true
{{- end -}}
{{- end -}}

{{- /* The Secret and key a webhook URL is mounted from: the operator's
Secret of $webhook.urlSecretRef, else the module's own $ownSecret (key url).
Usage: include "pod_reloader.url_secret" (list $webhook $ownSecret) |
fromYaml -> {name, key}. */ -}}
{{- define "pod_reloader.url_secret" -}}
{{- $ref := dig "urlSecretRef" dict (index . 0 | default dict) -}}
{{- if $ref.name -}}
name: {{ $ref.name | quote }}
key: {{ $ref.key | default "url" | quote }}
{{- else -}}
name: {{ index . 1 | quote }}
key: "url"
{{- end -}}
{{- end -}}

{{- /* The module's own Secret holding a webhook URL given as `url`.
Usage: include "pod_reloader.url_secret_object" (list . $name $url) */ -}}
{{- define "pod_reloader.url_secret_object" -}}
{{- $context := index . 0 -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ index . 1 }}
  namespace: d8-{{ $context.Chart.Name }}
  {{- include "helm_lib_module_labels" (list $context (dict "app" $context.Chart.Name)) | nindent 2 }}
type: Opaque
data:
  url: {{ index . 2 | b64enc }}
{{- end -}}

{{- /* "true" when alerting is on (see pod_reloader.webhook_on). */ -}}
{{- define "pod_reloader.alerting" -}}
{{- $a := .Values.podReloader.alerting | default dict -}}
{{- include "pod_reloader.webhook_on" (list $a.enabled $a.webhook "alerting.webhook" "alerting") -}}
{{- end -}}

{{- /* The alert webhook URL's Secret: {name, key}. */ -}}
{{- define "pod_reloader.alert_secret" -}}
{{- $a := .Values.podReloader.alerting | default dict -}}
{{- include "pod_reloader.url_secret" (list $a.webhook (printf "%s-alert" .Chart.Name)) -}}
{{- end -}}

{{- /* "true" when Reloader's webhook mode (webhookMode) is on. */ -}}
{{- define "pod_reloader.webhook_mode" -}}
{{- $w := .Values.podReloader.webhookMode | default dict -}}
{{- include "pod_reloader.webhook_on" (list $w.enabled $w "webhookMode" "webhookMode") -}}
{{- end -}}

{{- /* The webhook mode URL's Secret: {name, key}. */ -}}
{{- define "pod_reloader.webhook_mode_secret" -}}
{{- include "pod_reloader.url_secret" (list .Values.podReloader.webhookMode (printf "%s-webhook-mode" .Chart.Name)) -}}
{{- end -}}

{{- /* Image reference of the module image $name (camelCase directory name).
The module's own registry (injected by Deckhouse for modules from a
ModuleSource) wins over the global one. Usage:
{{ include "helm_lib_module_image" (list . "podReloader") }} */ -}}
{{- define "helm_lib_module_image" -}}
{{- $context := index . 0 -}}
{{- $name := index . 1 -}}
{{- $moduleKey := include "pod_reloader.values_key" $context -}}
{{- $digest := dig "modulesImages" "digests" $moduleKey $name "" $context.Values.global -}}
{{- if not $digest }}{{ fail (printf "image %s.%s has no digest in global.modulesImages.digests" $moduleKey $name) }}{{ end -}}
{{- $base := dig "modulesImages" "registry" "base" "" $context.Values.global -}}
{{- $own := dig "registry" "base" "" (index $context.Values $moduleKey) -}}
{{- if $own }}{{ $base = printf "%s/%s" (trimSuffix "/" $own) $context.Chart.Name }}{{ end -}}
{{- if not $base }}{{ fail "no registry: set global.modulesImages.registry.base" }}{{ end -}}
{{- printf "%s@%s" $base $digest -}}
{{- end -}}

{{- /* Name of the image pull Secret, empty when there are no registry credentials. */ -}}
{{- define "pod_reloader.registry_secret_name" -}}
{{- if or (dig "registry" "dockercfg" "" .Values.podReloader) (dig "modulesImages" "registry" "dockercfg" "" .Values.global) -}}
pod-reloader-registry
{{- end -}}
{{- end -}}

{{- /* nodeSelector of the controller: the setting, else the system nodes if any. */ -}}
{{- define "pod_reloader.node_selector" -}}
{{- $nodeSelector := get .Values.podReloader "nodeSelector" }}
{{- if $nodeSelector }}
nodeSelector:
  {{- $nodeSelector | toYaml | nindent 2 }}
{{- else if gt (int (dig "discovery" "d8SpecificNodeCountByRole" "system" 0 .Values.global)) 0 }}
nodeSelector:
  node-role.deckhouse.io/system: ""
{{- end }}
{{- end -}}

{{- define "pod_reloader.tolerations" -}}
{{- if hasKey .Values.podReloader "tolerations" }}
{{- if .Values.podReloader.tolerations }}
tolerations:
  {{- .Values.podReloader.tolerations | toYaml | nindent 2 }}
{{- end }}
{{- else }}
tolerations:
- key: dedicated.deckhouse.io
  operator: Equal
  value: system
- key: dedicated.deckhouse.io
  operator: Equal
  value: {{ .Chart.Name }}
{{- end }}
{{- end -}}

{{- /* The kube-rbac-proxy CA ConfigMap every d8-* namespace carries. */ -}}
{{- define "helm_lib_kube_rbac_proxy_ca_certificate" -}}
{{- $context := index . 0 -}}
{{- $namespace := index . 1 -}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-rbac-proxy-ca.crt
  namespace: {{ $namespace }}
  {{- include "helm_lib_module_labels" (list $context) | nindent 2 }}
data:
  ca.crt: {{ dig "internal" "modules" "kubeRBACProxyCA" "cert" "" $context.Values.global | quote }}
{{- end -}}

{{- /* PrometheusRule objects, one per file of monitoring/prometheus-rules/.
Each file holds a list of rule groups; *.tpl files are rendered with tpl.
__SCRAPE_INTERVAL__ and __SCRAPE_INTERVAL_X_4__ are replaced with the
cluster's scrape interval. Rendered only when the PrometheusRule API exists
(the operator-prometheus module). Usage:
{{- include "helm_lib_prometheus_rules" (list . "d8-pod-reloader") }} */ -}}
{{- define "helm_lib_prometheus_rules" -}}
{{- $context := index . 0 -}}
{{- $namespace := index . 1 -}}
{{- if or ($context.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") (has "operator-prometheus" ($context.Values.global.enabledModules | default list)) }}
{{- $interval := int (dig "discovery" "prometheusScrapeInterval" 30 $context.Values.global) -}}
{{- range $path, $_ := $context.Files.Glob "monitoring/prometheus-rules/*" }}
{{- $ext := ext $path -}}
{{- if or (eq $ext ".yaml") (eq $ext ".tpl") }}
{{- $body := $context.Files.Get $path -}}
{{- if eq $ext ".tpl" }}{{ $body = tpl $body $context }}{{ end -}}
{{- $body = $body | replace "__SCRAPE_INTERVAL_X_4__" (printf "%ds" (mul $interval 4)) | replace "__SCRAPE_INTERVAL__" (printf "%ds" $interval) }}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ $context.Chart.Name }}-{{ base $path | trimSuffix $ext }}
  namespace: {{ $namespace }}
  {{- include "helm_lib_module_labels" (list $context (dict "app" "prometheus" "prometheus" "main" "component" "rules")) | nindent 2 }}
spec:
  groups:
    {{- fromYamlArray $body | toYaml | nindent 4 }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* GrafanaDashboardDefinition objects, one per JSON file under
monitoring/grafana-dashboards/<folder>/. Rendered only when the
GrafanaDashboardDefinition API exists (the prometheus module). Usage:
{{- include "helm_lib_grafana_dashboard_definitions" . }} */ -}}
{{- define "helm_lib_grafana_dashboard_definitions" -}}
{{- $context := . -}}
{{- if or ($context.Capabilities.APIVersions.Has "deckhouse.io/v1/GrafanaDashboardDefinition") (has "prometheus" ($context.Values.global.enabledModules | default list)) }}
{{- range $path, $_ := $context.Files.Glob "monitoring/grafana-dashboards/*/*.json" }}
{{- $folder := base (dir $path) | replace "-" " " | title -}}
{{- $name := base $path | trimSuffix ".json" }}
---
apiVersion: deckhouse.io/v1
kind: GrafanaDashboardDefinition
metadata:
  name: d8-{{ $context.Chart.Name }}-{{ $name }}
  {{- include "helm_lib_module_labels" (list $context (dict "prometheus.deckhouse.io/grafana-dashboard" "")) | nindent 2 }}
spec:
  folder: {{ $folder | quote }}
  definition: |
    {{- $context.Files.Get $path | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}
