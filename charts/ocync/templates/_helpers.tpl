{{/* Names: <release>-ocync, or the release name alone when it already contains "ocync". */}}
{{- define "ocync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ocync.fullname" -}}
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

{{- define "ocync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ocync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ocync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ocync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ocync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ocync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The ocync command line. Arguments: root (the chart context), command (sync or watch), shard
("I/N", or empty for the whole configuration).
*/}}
{{- define "ocync.args" -}}
{{- $v := .root.Values -}}
{{- $verbosity := dict "info" "" "debug" "-v" "requests" "-vv" "warning" "-q" "error" "-qq" -}}
- --log-format
- {{ $v.logFormat | quote }}
{{- with get $verbosity $v.logLevel }}
- {{ . | quote }}
{{- end }}
- {{ .command }}
- -c
- /etc/ocync/config.yaml
{{- if eq .command "watch" }}
- --interval
- {{ $v.watch.interval | quote }}
- --listen
- {{ printf "%s:%d" $v.watch.listenAddress (int $v.watch.port) | quote }}
{{- end }}
{{- with .shard }}
- --shard
- {{ . | quote }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The pod template shared by every mode. Arguments: root, component (sync or watch),
restartPolicy, args (the rendered ocync.args list), indexed (true in an Indexed Job),
labels (extra pod labels, a dict).
*/}}
{{- define "ocync.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $watch := eq .component "watch" -}}
metadata:
  labels:
    {{- include "ocync.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- range $key, $value := .labels }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
    {{- if eq $v.workloadIdentity.provider "azure" }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "ocync.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
  restartPolicy: {{ .restartPolicy }}
  terminationGracePeriodSeconds: {{ int $v.terminationGracePeriodSeconds }}
  {{- with $v.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: ocync
      image: {{ include "ocync.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- .args | nindent 8 }}
      env:
        {{- if .indexed }}
        # Kubernetes numbers the pods of an Indexed Job; args read it as $(JOB_COMPLETION_INDEX).
        - name: JOB_COMPLETION_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
        {{- end }}
        {{- if $v.dockerConfigSecret }}
        - name: DOCKER_CONFIG
          value: /etc/ocync-docker
        {{- end }}
        {{- range $name, $value := $v.env }}
        - name: {{ $name }}
          {{- if kindIs "map" $value }}
          valueFrom:
            {{- toYaml $value | nindent 12 }}
          {{- else if kindIs "invalid" $value }}
          value: ""
          {{- else }}
          value: {{ toString $value | quote }}
          {{- end }}
        {{- end }}
      {{- with $v.envFromSecrets }}
      envFrom:
        {{- range . }}
        - secretRef:
            name: {{ . }}
        {{- end }}
      {{- end }}
      {{- if $watch }}
      ports:
        - name: http
          containerPort: {{ int $v.watch.port }}
          protocol: TCP
      {{- with $v.watch.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.watch.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/ocync
          readOnly: true
        - name: cache
          mountPath: {{ $v.cache.mountPath }}
        - name: tmp
          mountPath: /tmp
        {{- if $v.dockerConfigSecret }}
        - name: docker-config
          mountPath: /etc/ocync-docker
          readOnly: true
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    # Mounted as a directory, not with subPath, so that ConfigMap updates reach the pod.
    - name: config
      configMap:
        name: {{ include "ocync.fullname" $root }}
    - name: cache
      {{- if eq $v.cache.type "persistentVolumeClaim" }}
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-cache" (include "ocync.fullname" $root)) $v.cache.persistentVolumeClaim.existingClaim }}
      {{- else }}
      emptyDir: {{ toJson (default (dict) $v.cache.emptyDir) }}
      {{- end }}
    - name: tmp
      {{- $tmp := dict }}
      {{- with $v.tmp.medium }}{{ $_ := set $tmp "medium" . }}{{ end }}
      {{- with $v.tmp.sizeLimit }}{{ $_ := set $tmp "sizeLimit" . }}{{ end }}
      emptyDir: {{ toJson $tmp }}
    {{- if $v.dockerConfigSecret }}
    - name: docker-config
      secret:
        secretName: {{ $v.dockerConfigSecret }}
        items:
          - key: .dockerconfigjson
            path: config.json
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The spec of the Job that runs `ocync sync` (job mode, and each run of cronjob mode). Arguments:
root, ttl (whether to set ttlSecondsAfterFinished: CronJobs keep their history limits instead).
With shards > 1 it is an Indexed Job whose pod I syncs shard I of N.
*/}}
{{- define "ocync.jobSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $shards := int $v.shards -}}
{{- $shard := "" -}}
{{- if gt $shards 1 }}
{{- $shard = printf "$(JOB_COMPLETION_INDEX)/%d" $shards }}
{{- end }}
backoffLimit: {{ int $v.job.backoffLimit }}
{{- with $v.job.activeDeadlineSeconds }}
activeDeadlineSeconds: {{ int . }}
{{- end }}
{{- if .ttl }}
ttlSecondsAfterFinished: {{ int $v.job.ttlSecondsAfterFinished }}
{{- end }}
{{- if gt $shards 1 }}
completionMode: Indexed
completions: {{ $shards }}
parallelism: {{ int (default $shards $v.job.parallelism) }}
{{- end }}
podFailurePolicy:
  rules:
    # A drained node or a preempted pod is no failure of ocync: not counted against backoffLimit.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
    {{- with $v.job.failJobOnExitCodes }}
    # Retrying cannot fix a bad configuration.
    - action: FailJob
      onExitCodes:
        containerName: ocync
        operator: In
        values: {{ toJson . }}
    {{- end }}
template:
  {{- $args := include "ocync.args" (dict "root" $root "command" "sync" "shard" $shard) }}
  {{- include "ocync.podTemplate" (dict "root" $root "component" "sync" "restartPolicy" "Never" "args" $args "indexed" (gt $shards 1) "labels" (dict)) | nindent 2 }}
{{- end }}

{{/* Stops rendering with a plain message when values cannot work together. */}}
{{- define "ocync.validate" -}}
{{- if lt (int .Values.shards) 1 }}
{{- fail "shards must be 1 or more" }}
{{- end }}
{{- $provider := .Values.workloadIdentity.provider }}
{{- if and (eq $provider "gcp") (not .Values.workloadIdentity.gcp.serviceAccount) }}
{{- fail "workloadIdentity.provider=gcp needs workloadIdentity.gcp.serviceAccount (the Google service account's email)" }}
{{- end }}
{{- if and (eq $provider "azure") (not .Values.workloadIdentity.azure.clientId) }}
{{- fail "workloadIdentity.provider=azure needs workloadIdentity.azure.clientId" }}
{{- end }}
{{- if and (ne $provider "aws") .Values.workloadIdentity.aws.roleArn }}
{{- fail "workloadIdentity.aws.roleArn is set but workloadIdentity.provider is not aws" }}
{{- end }}
{{- end }}
