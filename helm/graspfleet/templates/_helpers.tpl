{{/* Names and labels shared by every object of the chart. */}}

{{- define "graspfleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "graspfleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
graspfleet/run: {{ .Values.train.run }}
{{- end -}}

{{- define "graspfleet.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "graspfleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "graspfleet.redisSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "graspfleet.fullname" .)) -}}
{{- end -}}

{{/* The Redis URL, its password taken from the REDIS_PASSWORD variable of the same container. */}}
{{- define "graspfleet.redisEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "graspfleet.redisSecret" . }}
      key: {{ .Values.redis.passwordKey }}
- name: GRASPFLEET_REDIS
  value: "redis://:$(REDIS_PASSWORD)@{{ include "graspfleet.fullname" . }}-redis:6379/0"
{{- end -}}

{{/* The replay shards' stable addresses (StatefulSet pods behind the headless Service). */}}
{{- define "graspfleet.replayArgs" -}}
{{- $name := include "graspfleet.fullname" . -}}
{{- range $i := until (int .Values.replay.shards) }}
- --replay
- {{ printf "%s-replay-%d.%s-replay.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.replay.port) }}
{{- end }}
{{- end -}}
