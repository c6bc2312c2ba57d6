{{/*
Labels every workload of the platform carries, so dashboards and cost reports can
group by team and component whatever chart deployed it.
*/}}
{{- define "common.labels" -}}
app.kubernetes.io/part-of: {{ .Values.global.partOf | default "storefront" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
team: {{ .Values.global.team | default "platform" }}
{{- end -}}

{{- define "common.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .release }}
{{- end -}}
