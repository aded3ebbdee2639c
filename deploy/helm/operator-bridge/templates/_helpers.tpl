{{/* The chart's name. */}}
{{- define "operator-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, used for every object. */}}
{{- define "operator-bridge.fullname" -}}
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

{{- define "operator-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "operator-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "operator-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "operator-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret the chart makes for the values it is given. */}}
{{- define "operator-bridge.secretName" -}}
{{- include "operator-bridge.fullname" . }}
{{- end }}

{{/* Whether the chart makes the NATS part of its Secret. */}}
{{- define "operator-bridge.natsSecretMade" -}}
{{- if and (ne .Values.nats.auth.method "none") (not .Values.nats.auth.existingSecret) }}true{{ end }}
{{- end }}

{{/* The Secret holding the NATS password, token or creds. */}}
{{- define "operator-bridge.natsSecret" -}}
{{- .Values.nats.auth.existingSecret | default (include "operator-bridge.secretName" .) }}
{{- end }}

{{/* Whether the chart makes the operator token part of its Secret. */}}
{{- define "operator-bridge.operatorTokenMade" -}}
{{- if and .Values.operator.token.value (not .Values.operator.token.existingSecret) }}true{{ end }}
{{- end }}

{{/* The environments ConfigMap. */}}
{{- define "operator-bridge.environmentsConfigMap" -}}
{{- .Values.environments.existingConfigMap | default (printf "%s-environments" (include "operator-bridge.fullname" .)) }}
{{- end }}
