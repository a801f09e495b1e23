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
otherwise win over the file.
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
{{- with .Values.clusterName }}{{ $_ := set $settings "cluster_name" . }}{{ end }}
{{- with .Values.namespaces }}{{ $_ := set $settings "namespaces" . }}{{ end }}
{{- with $f.includeTypes }}{{ $_ := set $settings "include_types" . }}{{ end }}
{{- with $f.excludeTypes }}{{ $_ := set $settings "exclude_types" . }}{{ end }}
{{- with $f.includeReasons }}{{ $_ := set $settings "include_reasons" . }}{{ end }}
{{- with $f.excludeReasons }}{{ $_ := set $settings "exclude_reasons" . }}{{ end }}
{{- with $f.includeKinds }}{{ $_ := set $settings "include_kinds" . }}{{ end }}
{{- with $f.excludeKinds }}{{ $_ := set $settings "exclude_kinds" . }}{{ end }}
{{- with $f.excludeNamespaces }}{{ $_ := set $settings "exclude_namespaces" . }}{{ end }}
{{- /* extraConfig last: an explicit setting there wins over the chart's keys above. */}}
{{- $settings = merge (deepCopy .Values.extraConfig) $settings }}
{{- toYaml $settings }}
{{- end }}
