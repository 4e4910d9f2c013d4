{{- define "fx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fx.selector" -}}
app.kubernetes.io/name: fx
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fx.labels" -}}
{{ include "fx.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fx.tokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "fx.fullname" .)) -}}
{{- end -}}

{{- /* The image of a component (controller, gateway, runtime): its image.repository, else
<image.registry>/<controller|gateway|runtime-python>; its image.tag, else image.tag, else the chart's appVersion. */}}
{{- define "fx.image" -}}
{{- $values := .root.Values }}
{{- $image := index $values .component "image" }}
{{- $name := eq .component "runtime" | ternary "runtime-python" .component }}
{{- $repository := $image.repository | default (printf "%s/%s" (trimSuffix "/" $values.image.registry) $name) }}
{{- printf "%s:%s" $repository ($image.tag | default $values.image.tag | default .root.Chart.AppVersion) }}
{{- end -}}

{{- /* image.pullSecrets (Secret names) as a pod's or a ServiceAccount's imagePullSecrets. */}}
{{- define "fx.pullSecrets" -}}
{{- $secrets := list }}
{{- range .Values.image.pullSecrets }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- end -}}
imagePullSecrets: {{ toJson $secrets }}
{{- end -}}

{{- /* NATS runs with authorization: the Secrets the controller keeps the NATS identities in (it makes them). */}}
{{- define "fx.natsAuthSecret" -}}
{{ include "fx.fullname" . }}-nats-auth
{{- end }}

{{- define "fx.gatewayNatsSecret" -}}
{{ include "fx.fullname" . }}-gateway-nats
{{- end }}

{{- /* NATS servers: nats.cluster.replicas in cluster mode, else one; also the copies of each stream and bucket. */ -}}
{{- define "fx.natsServers" -}}
{{ .Values.nats.cluster.enabled | ternary .Values.nats.cluster.replicas 1 }}
{{- end -}}

{{- /* host:port of every server's route listener, by the headless Service (cluster mode only). */ -}}
{{- define "fx.natsRoutes" -}}
{{- $fullname := include "fx.fullname" . }}
{{- $routes := list }}
{{- if .Values.nats.cluster.enabled }}
{{- range $i := until (int .Values.nats.cluster.replicas) }}
{{- $routes = append $routes (printf "%s-nats-%d.%s-nats-cluster.%s.svc:6222" $fullname $i $fullname $.Release.Namespace) }}
{{- end }}
{{- end }}
{{- join "," $routes }}
{{- end -}}

{{- define "fx.natsUrl" -}}
nats://{{ include "fx.fullname" . }}-nats:4222
{{- end -}}

{{/* Restricted pod security: what every fx container runs with. */}}
{{- define "fx.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "fx.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Replicas of one component on different nodes when there are nodes enough (preferred: one node still works). */}}
{{- define "fx.spread" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "fx.selector" .root | nindent 14 }}
              app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* prometheus.io/* annotations of a pod whose /metrics answers on `port` without a token (metrics.podAnnotations). */}}
{{- define "fx.scrapeAnnotations" -}}
{{- if and .root.Values.metrics.podAnnotations .port }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* A NetworkPolicy ingress rule admitting scrapers (networkPolicy.metricsFrom; empty: any source) to `port`. */}}
{{- define "fx.metricsIngress" -}}
- ports:
    - {protocol: TCP, port: {{ .port }}}
  {{- with .root.Values.networkPolicy.metricsFrom }}
  from:
    {{- range . }}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end -}}
