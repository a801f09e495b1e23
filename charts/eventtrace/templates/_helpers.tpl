{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "eventtrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or the release name alone when it already contains the chart
name. Truncated to 63 characters (a DNS label).
*/}}
{{- define "eventtrace.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eventtrace.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "eventtrace.labels" -}}
helm.sh/chart: {{ include "eventtrace.chart" . }}
{{ include "eventtrace.selectorLabels" . }}
app.kubernetes.io/version: {{ include "eventtrace.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: event-exporter
{{- end }}

{{/*
Selector labels: stable for the life of a release (a Deployment's selector is immutable).
*/}}
{{- define "eventtrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventtrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eventtrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eventtrace.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eventtrace.clusterRoleName" -}}
{{- default (include "eventtrace.fullname" .) .Values.clusterRole.name }}
{{- end }}

{{- define "eventtrace.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "eventtrace.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "eventtrace.imageTag" .) }}
{{- end }}

{{/*
Where the settings file and the OTLP CA are mounted in the container.
*/}}
{{- define "eventtrace.configDir" -}}/etc/eventtrace{{- end }}
{{- define "eventtrace.tlsDir" -}}/etc/eventtrace/tls{{- end }}

{{/*
eventtrace's settings file: keys are the field names of eventtrace/settings.py. Empty
values are left out so eventtrace's own defaults apply. metrics_addr is not here: it is
set by environment in the Deployment, because the image's EVENTTRACE_METRICS_ADDR would
otherwise win over the file. Nor is identity: it is the pod's name, which only the
downward API knows (EVENTTRACE_IDENTITY in the Deployment).
*/}}
{{- define "eventtrace.settings" -}}
{{- $f := .Values.filters }}
{{- $settings := dict
  "trace_idle" .Values.traceIdle
  "trace_max" .Values.traceMax
  "resolve_timeout" .Values.resolveTimeout
  "log_level" .Values.logLevel
  "output" .Values.output
}}
{{- $_ := set $settings "leader_election" (include "eventtrace.leaderElection" .) }}
{{- $_ := set $settings "state" (include "eventtrace.state" .) }}
{{- with .Values.clusterName }}{{ $_ := set $settings "cluster_name" . }}{{ end }}
{{- with .Values.namespaces }}{{ $_ := set $settings "namespaces" . }}{{ end }}
{{- with $f.includeTypes }}{{ $_ := set $settings "include_types" . }}{{ end }}
{{- with $f.excludeTypes }}{{ $_ := set $settings "exclude_types" . }}{{ end }}
{{- with $f.includeReasons }}{{ $_ := set $settings "include_reasons" . }}{{ end }}
{{- with $f.excludeReasons }}{{ $_ := set $settings "exclude_reasons" . }}{{ end }}
{{- with $f.includeKinds }}{{ $_ := set $settings "include_kinds" . }}{{ end }}
{{- with $f.excludeKinds }}{{ $_ := set $settings "exclude_kinds" . }}{{ end }}
{{- with $f.excludeNamespaces }}{{ $_ := set $settings "exclude_namespaces" . }}{{ end }}
{{- /* extraConfig last: an explicit setting there wins over the chart's keys above
(but not over leader_election and state: eventtrace.checks refuses those there). */}}
{{- $settings = merge (deepCopy .Values.extraConfig) $settings }}
{{- toYaml $settings }}
{{- end }}

{{/*
Leader election: the Lease only the leader holds, in the release's namespace. The
settings value is lease:NAMESPACE/NAME, or none.
*/}}
{{- define "eventtrace.leaseName" -}}
{{- default (include "eventtrace.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "eventtrace.leaderElection" -}}
{{- if .Values.leaderElection.enabled -}}
lease:{{ .Release.Namespace }}/{{ include "eventtrace.leaseName" . }}
{{- else -}}
none
{{- end }}
{{- end }}

{{/*
State kept across restarts: configmap:NAMESPACE/NAME, file:PATH or none.
*/}}
{{- define "eventtrace.stateConfigMapName" -}}
{{- default (printf "%s-state" (include "eventtrace.fullname" .)) .Values.state.configMapName }}
{{- end }}

{{- define "eventtrace.state" -}}
{{- if eq .Values.state.type "configmap" -}}
configmap:{{ .Release.Namespace }}/{{ include "eventtrace.stateConfigMapName" . }}
{{- else if eq .Values.state.type "file" -}}
file:{{ .Values.state.path }}
{{- else -}}
none
{{- end }}
{{- end }}

{{/*
The in-chart Jaeger (jaeger.enabled). Its labels differ from eventtrace's in
app.kubernetes.io/name, so no eventtrace selector (Deployment, Service, PDB, network
policy, anti-affinity) picks its pod.
*/}}
{{- define "eventtrace.jaegerFullname" -}}
{{- printf "%s-jaeger" (include "eventtrace.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "eventtrace.jaegerSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-jaeger" (include "eventtrace.name" . | trunc 56 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- /* On its pods: no chart version, so a chart upgrade alone does not restart Jaeger
(and empty its memory). */}}
{{- define "eventtrace.jaegerPodLabels" -}}
{{ include "eventtrace.jaegerSelectorLabels" . }}
app.kubernetes.io/component: trace-backend
app.kubernetes.io/part-of: {{ include "eventtrace.name" . }}
{{- end }}

{{- define "eventtrace.jaegerLabels" -}}
helm.sh/chart: {{ include "eventtrace.chart" . }}
{{ include "eventtrace.jaegerPodLabels" . }}
app.kubernetes.io/version: {{ .Values.jaeger.image.tag | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The OTLP endpoint eventtrace exports to: the in-chart Jaeger's Service (plaintext; the
port of otlp.protocol) when jaeger.enabled, else otlp.endpoint (may be empty).
*/}}
{{- define "eventtrace.otlpEndpoint" -}}
{{- if .Values.jaeger.enabled -}}
{{- $port := ternary 4318 4317 (eq .Values.otlp.protocol "http/protobuf") -}}
http://{{ include "eventtrace.jaegerFullname" . }}.{{ .Release.Namespace }}.svc:{{ $port }}
{{- else -}}
{{- .Values.otlp.endpoint }}
{{- end }}
{{- end }}

{{/*
Combinations the schema cannot express clearly; checked on every render.
*/}}
{{- define "eventtrace.checks" -}}
{{- $tls := .Values.otlp.tls.ca }}
{{- if and $tls.existingSecret $tls.existingConfigMap }}
{{- fail "otlp.tls.ca: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: without the Lease every replica would export every span. Set replicaCount to 0 or 1, or enable leader election." (int .Values.replicaCount)) }}
{{- end }}
{{- range $key := list "leader_election" "state" "identity" }}
{{- if hasKey $.Values.extraConfig $key }}
{{- fail (printf "extraConfig.%s: set by the chart (with the RBAC it needs) from leaderElection and state; remove it from extraConfig" $key) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.state.type "file") (not .Values.state.path) }}
{{- fail "state.type is file: set state.path to an absolute path in the pod" }}
{{- end }}
{{- if .Values.jaeger.enabled }}
{{- if .Values.otlp.endpoint }}
{{- fail (printf "jaeger.enabled sends spans to the in-chart Jaeger, but otlp.endpoint is also set (%s): keep one of the two" .Values.otlp.endpoint) }}
{{- end }}
{{- if ne .Values.output "otlp" }}
{{- fail (printf "jaeger.enabled needs output: otlp (output is %s, so nothing would reach Jaeger)" .Values.output) }}
{{- end }}
{{- end }}
{{- end }}
