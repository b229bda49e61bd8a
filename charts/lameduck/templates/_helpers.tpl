{{/* Chart name, unless nameOverride says otherwise. */}}
{{- define "lameduck.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. A release whose name already contains the
chart name is used as is, so `helm install lameduck` gives plain `lameduck`.
*/}}
{{- define "lameduck.fullname" -}}
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

{{- define "lameduck.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries, without the component (see selectorLabels).
*/}}
{{- define "lameduck.commonLabels" -}}
helm.sh/chart: {{ include "lameduck.chart" . }}
app.kubernetes.io/name: {{ include "lameduck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selects the server pods. The component is part of it so that the `helm test`
pod (component "test") is never picked up by the Service or the PDB.
*/}}
{{- define "lameduck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lameduck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "lameduck.labels" -}}
{{ include "lameduck.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "lameduck.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lameduck.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lameduck.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
An int-or-string value (a count or a percentage such as "25%"), printed so that
a count stays a YAML integer.
*/}}
{{- define "lameduck.intOrString" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}

{{/*
Milliseconds in a duration such as "500ms", "20s", "1m" or "1m30s" (units ms,
s, m, h). Call with (list "values.path" value). The schema rejects other forms
first; this guards renders that skip schema validation.
*/}}
{{- define "lameduck.durationMs" -}}
{{- $path := index . 0 }}
{{- $value := index . 1 | toString }}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $value) }}
{{- fail (printf "%s: %q is not a duration such as 500ms, 20s, 1m or 1m30s" $path $value) }}
{{- end }}
{{- $unitMs := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $value -1 }}
{{- $digits := regexFind "^[0-9]+" . }}
{{- $total = add $total (mul (atoi $digits) (get $unitMs (trimPrefix $digits .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
Whole seconds (rounded up) the termination timeline needs before SIGKILL may
come: preStop + drain delay + shutdown timeout + the wait for the final scrape
+ a 5 s margin for the process to exit and the kubelet to notice.
*/}}
{{- define "lameduck.requiredGraceSeconds" -}}
{{- $preStopMs := mul (int64 .Values.lifecycle.preStopSleepSeconds) 1000 }}
{{- $drainMs := include "lameduck.durationMs" (list "server.drainDelay" .Values.server.drainDelay) | int64 }}
{{- $shutdownMs := include "lameduck.durationMs" (list "server.shutdownTimeout" .Values.server.shutdownTimeout) | int64 }}
{{- $finalScrapeMs := include "lameduck.durationMs" (list "server.finalScrapeTimeout" .Values.server.finalScrapeTimeout) | int64 }}
{{- $neededMs := add $preStopMs $drainMs $shutdownMs $finalScrapeMs 5000 }}
{{- div (add $neededMs 999) 1000 }}
{{- end }}

{{/*
Refuses to render a grace period that would SIGKILL the pod before its own
shutdown can finish: the kubelet counts it from the start of preStop.
*/}}
{{- define "lameduck.validateTimeline" -}}
{{- /* Parsed only to fail early on a malformed value; the server gets the string. */}}
{{- $_ := include "lameduck.durationMs" (list "server.idleGrace" .Values.server.idleGrace) }}
{{- $_ = include "lameduck.durationMs" (list "server.headerReadTimeout" .Values.server.headerReadTimeout) }}
{{- $_ = include "lameduck.durationMs" (list "server.idleTimeout" .Values.server.idleTimeout) }}
{{- $needed := include "lameduck.requiredGraceSeconds" . | int64 }}
{{- $grace := int64 .Values.terminationGracePeriodSeconds }}
{{- if lt $grace $needed }}
{{- fail (printf "terminationGracePeriodSeconds is %d, but the termination timeline needs %d: lifecycle.preStopSleepSeconds (%ds) + server.drainDelay (%s) + server.shutdownTimeout (%s) + server.finalScrapeTimeout (%s) + 5s margin. Raise terminationGracePeriodSeconds to %d or more, or lower lifecycle.preStopSleepSeconds, server.drainDelay, server.shutdownTimeout or server.finalScrapeTimeout." $grace $needed (int64 .Values.lifecycle.preStopSleepSeconds) (toString .Values.server.drainDelay) (toString .Values.server.shutdownTimeout) (toString .Values.server.finalScrapeTimeout) $needed) }}
{{- end }}
{{- end }}
