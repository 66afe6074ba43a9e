{{/* Job mode's helpers (templates/jobmode.yaml). */}}

{{- define "kd.jobMode" -}}
{{- eq (.Values.deploymentMode | default "daemonset") "job" -}}
{{- end -}}

{{/* The dispatcher runs `kata-deploy-agent dispatch`: job.dispatcherImage.reference, else the
agent's image.reference (upstream's kata-deploy-job-dispatcher image, which cannot read this
chart's templates, counts as unset: kd.jobWarnings); job.dispatcherImage.tag, else the agent's
tag with the agent's reference, the chart's appVersion with another. */}}
{{- define "kd.dispatcherImage" -}}
{{- $d := (.Values.job | default dict).dispatcherImage | default dict -}}
{{- $ref := .Values.image.reference -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if and $d.reference (not (include "kd.upstreamDispatcher" .)) -}}
{{- $ref = $d.reference -}}
{{- $tag = .Chart.AppVersion -}}
{{- end -}}
{{- $tag = default $tag $d.tag -}}
{{- if contains "@" $ref -}}{{ $ref }}{{- else -}}{{ $ref }}:{{ $tag }}{{- end -}}
{{- end -}}

{{/* The DaemonSet's pod spec, rendered (templates/daemonset.yaml with KdJob set). */}}
{{- define "kd.dsPodSpec" -}}
{{- $ctx := merge (dict "KdJob" true) . -}}
{{- $ds := include (print .Template.BasePath "/daemonset.yaml") $ctx | fromYaml -}}
{{- toYaml $ds.spec.template.spec -}}
{{- end -}}

{{/* The agent container's env for a per-node Job (root, dispatcher false) or the dispatcher
(dispatcher true): no health server; the dispatcher has no NODE_NAME of its own and waits
job.waitNodeReadySeconds for Ready. */}}
{{- define "kd.jobEnv" -}}
{{- $root := .root -}}
{{- $ps := include "kd.dsPodSpec" $root | fromYaml -}}
{{- $c := index $ps.containers 0 -}}
{{- $drop := list "HEALTH_PORT" "DAEMONSET_NAME" -}}
{{- if .dispatcher }}{{ $drop = concat $drop (list "NODE_NAME" "NODE_READY_TIMEOUT") }}{{ end -}}
{{- $env := list -}}
{{- range $e := $c.env }}{{ if not (has $e.name $drop) }}{{ $env = append $env $e }}{{ end }}{{ end -}}
{{- $env = append $env (dict "name" "HEALTH_PORT" "value" "0") -}}
{{- if .dispatcher -}}
{{- $env = append $env (dict "name" "NODE_READY_TIMEOUT" "value" (toString (int $root.Values.job.waitNodeReadySeconds))) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* One per-node Job (root, stage install|cleanup): the DaemonSet's pod with no
service-account token, run once. The dispatcher sets metadata.name, spec.nodeName and
NODE_RUNTIME_VERSION, and drops nodeSelector / affinity (it has selected the node by them). */}}
{{- define "kd.perNodeJob" -}}
{{- $root := .root -}}
{{- $stage := .stage -}}
{{- $job := $root.Values.job -}}
{{- $ps := include "kd.dsPodSpec" $root | fromYaml -}}
{{- $c := index $ps.containers 0 -}}
{{- $nc := omit $c "ports" "startupProbe" "livenessProbe" "readinessProbe" "env" "args" -}}
{{- $_ := set $nc "name" "kata-deploy" -}}
{{- $_ := set $nc "args" (list (printf "node-%s" $stage)) -}}
{{- $_ := set $nc "env" (include "kd.jobEnv" (dict "root" $root "dispatcher" false) | fromYamlArray) -}}
{{- $_ := set $nc "terminationMessagePolicy" "FallbackToLogsOnError" -}}
{{- $nps := omit $ps "serviceAccountName" "containers" "nodeSelector" "affinity" "tolerations" -}}
{{- $_ := set $nps "automountServiceAccountToken" false -}}
{{- $_ := set $nps "restartPolicy" "Never" -}}
{{- $_ := set $nps "containers" (list $nc) -}}
{{- if eq $stage "install" -}}
{{- with $ps.nodeSelector }}{{ $_ := set $nps "nodeSelector" . }}{{ end -}}
{{- with $ps.affinity }}{{ $_ := set $nps "affinity" . }}{{ end -}}
{{- /* The DaemonSet controller adds these to its pods; the install restarts the runtime,
       which takes the node NotReady: without them the taint manager evicts the pod. */ -}}
{{- $tol := list -}}
{{- range $k := list "node.kubernetes.io/not-ready" "node.kubernetes.io/unreachable" }}
{{- $tol = append $tol (dict "key" $k "operator" "Exists" "effect" "NoExecute") -}}
{{- end -}}
{{- range $k := list "node.kubernetes.io/disk-pressure" "node.kubernetes.io/memory-pressure" "node.kubernetes.io/pid-pressure" "node.kubernetes.io/unschedulable" }}
{{- $tol = append $tol (dict "key" $k "operator" "Exists" "effect" "NoSchedule") -}}
{{- end -}}
{{- $_ := set $nps "tolerations" (concat $tol ($ps.tolerations | default list)) -}}
{{- else -}}
{{- /* Cleanup reaches the nodes job.cleanup selects (default: every node carrying
       katacontainers.io/kata-runtime, whatever its value), tainted or not. */ -}}
{{- $cl := $job.cleanup | default dict -}}
{{- with $cl.nodeSelector }}{{ $_ := set $nps "nodeSelector" . }}{{ end -}}
{{- with $cl.nodeAffinity }}{{ $_ := set $nps "affinity" (dict "nodeAffinity" .) }}{{ end -}}
{{- $_ := set $nps "tolerations" (list (dict "operator" "Exists")) -}}
{{- end -}}
{{- $labels := include "kd.labels" $root | fromYaml -}}
{{- $_ := set $labels "kata-deploy/stage" $stage -}}
{{- $spec := dict "backoffLimit" (int $job.backoffLimit) "ttlSecondsAfterFinished" (int $job.ttlSecondsAfterFinished) "activeDeadlineSeconds" (int $job.activeDeadlineSeconds) -}}
{{- $_ := set $spec "template" (dict "metadata" (dict "labels" $labels) "spec" $nps) -}}
{{- toYaml (dict "apiVersion" "batch/v1" "kind" "Job" "metadata" (dict "labels" $labels) "spec" $spec) -}}
{{- end -}}

{{/* "true" when job.dispatcherImage.reference is upstream's dispatcher image. */}}
{{- define "kd.upstreamDispatcher" -}}
{{- $d := (.Values.job | default dict).dispatcherImage | default dict -}}
{{- if and $d.reference (regexMatch "^(quay\\.io|ghcr\\.io)/kata-containers/" $d.reference) }}true{{ end -}}
{{- end -}}

{{/* Job mode's warnings (kd.warnings), one per line. */}}
{{- define "kd.jobWarnings" -}}
{{- if and (eq (include "kd.jobMode" .) "true") (include "kd.upstreamDispatcher" .) }}
job.dispatcherImage {{ .Values.job.dispatcherImage.reference }} is upstream's dispatcher, which cannot read this chart's Job templates: the dispatcher runs from the agent image ({{ include "kd.image" . }}) instead.
{{- end -}}
{{- end -}}
