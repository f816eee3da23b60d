{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "rolloutd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "rolloutd.fullname" -}}
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

{{- define "rolloutd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rolloutd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rolloutd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rolloutd.labels" -}}
helm.sh/chart: {{ include "rolloutd.chart" . }}
{{ include "rolloutd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rolloutd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rolloutd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rolloutd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rolloutd.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "rolloutd.fullname" .)) .Values.existingPoliciesConfigMap }}
{{- end }}

{{- define "rolloutd.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The permissions rolloutd uses, and nothing else (see src/kube/kinds.ts):
read and patch the route kinds whose weights it steps, read what it follows
(VirtualServices, Deployments), create and patch (fold repeats of) Events.
GatewayRoutes may also be created and deleted: a request stage on the
weighted GatewayRoute is a GatewayRoute of rolloutd's own (deleted only with
a UID precondition, and only when its state and owner reference say it is
its own). No update, no other delete, no secrets, no wildcard. Shared by the
ClusterRole and the per-namespace Roles.
*/}}
{{- define "rolloutd.rbacRules" -}}
- apiGroups: ["appmesh.k8s.aws"]
  resources: ["gatewayroutes"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
- apiGroups: ["appmesh.k8s.aws"]
  resources: ["virtualrouters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["appmesh.k8s.aws"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes", "grpcroutes"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Fails rendering on combinations the schema cannot express clearly. */}}
{{- define "rolloutd.validate" -}}
{{- if and .Values.existingPoliciesConfigMap .Values.policies }}
{{- fail "set either policies (inline) or existingPoliciesConfigMap, not both" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaced") (not .Values.rbac.namespaces) }}
{{- fail "rbac.scope=namespaced needs rbac.namespaces: the namespaces whose routes rolloutd may drive" }}
{{- end }}
{{- end }}
