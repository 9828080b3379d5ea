{{/* Labels every object of the chart carries. */}}
{{- define "synqx.labels" -}}
app.kubernetes.io/name: synqx
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator pods' selector. */}}
{{- define "synqx.selector" -}}
app.kubernetes.io/name: synqx-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "synqx.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* What the operator may do in a namespace it serves (a ClusterRole, or a Role per namespace). */}}
{{- define "synqx.operatorRules" -}}
- apiGroups: [synqx.io]
  resources: [pipelines, pipelineruns, connections]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [synqx.io]
  resources: [pipelines/status, pipelineruns/status, connections/status]
  verbs: [get, patch, update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list, watch, create, delete]
# The pods of the operator's Jobs (watched: their termination messages and start-up
# failures); Secrets only one by one by name (no list, no watch), to confirm that the keys
# Connections name exist and opted in; the Job controller's Events for pods it cannot create.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
# The vault of each namespace: the operator creates the keyring Secret synqx-vault once and
# publishes its public key in the ConfigMap synqx-vault. It never updates or deletes a Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [synqx-vault]
  verbs: [get, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Whether step logs go to the PersistentVolume: enabled, and no object store named instead. */}}
{{- define "synqx.logsVolume" -}}
{{- if and .Values.logs.persistence.enabled (not .Values.logs.connection) }}true{{ end }}
{{- end }}
