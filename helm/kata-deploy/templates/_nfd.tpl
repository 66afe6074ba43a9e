{{/*
Node Feature Discovery (NFD) and the TEE shims. NFD is optional and not installed by this chart;
see docs/HELM.md, "Node Feature Discovery and TEE shims".

Three things depend on it:
  - the NodeFeatureRule kata-tee-keys[-sfx] (templates/node-feature-rules.yaml): nfd-master then
    labels AMD SEV-SNP / Intel TDX nodes and advertises their key counts as extended resources;
  - overhead.podFixed of every snp / tdx RuntimeClass requests one of those keys
    (sev-snp.amd.com/esids, tdx.intel.com/keys), so the scheduler cannot place more confidential
    sandboxes on a node than it has keys; the rule and the request come together (kd.nfdRules):
    a request that nothing advertises would leave every such pod Pending;
  - the snp / tdx / se RuntimeClasses (not the nvidia-gpu ones, which carry their own selector in
    values.yaml) select the node label NFD sets for that TEE (kd.nfdSelectors), unless the shim
    has a runtimeClass.nodeSelector of its own.
*/}}

{{/*
The namespace of an NFD that runs in the cluster, "" when none is found: a DaemonSet
nfd-worker / *node-feature-discovery-worker or a Deployment nfd-master /
*node-feature-discovery-master (the names of NFD's own manifests and of its chart) in any
namespace. `lookup` finds nothing under `helm template` (no cluster).
*/}}
{{- define "kd.nfdFound" -}}
{{- $found := "" -}}
{{- range $kind := list "DaemonSet" "Deployment" -}}
{{- $role := ternary "worker" "master" (eq $kind "DaemonSet") -}}
{{- $all := lookup "apps/v1" $kind "" "" -}}
{{- range $o := (get $all "items" | default list) -}}
{{- $n := $o.metadata.name -}}
{{- if and (not $found) (or (eq $n (printf "nfd-%s" $role)) (hasSuffix (printf "node-feature-discovery-%s" $role) $n)) -}}
{{- $found = $o.metadata.namespace -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}

{{/*
nodeFeatureRules.create as one of "auto", "true", "false" (a boolean or its string; missing or
null is auto). The schema refuses anything else; this fails too, for a render without it.
*/}}
{{- define "kd.nfdCreate" -}}
{{- $nfr := .Values.nodeFeatureRules | default dict -}}
{{- $c := "auto" -}}
{{- if and (kindIs "map" $nfr) (hasKey $nfr "create") (not (kindIs "invalid" $nfr.create)) -}}
{{- $c = toString $nfr.create -}}
{{- end -}}
{{- if not (has $c (list "auto" "true" "false")) -}}
{{- fail (printf "kata-deploy: nodeFeatureRules.create must be auto, true or false (got %q)" $c) -}}
{{- end -}}
{{- $c -}}
{{- end -}}

{{/* node-feature-discovery.enabled: the user says NFD runs in the cluster. "true" or "". */}}
{{- define "kd.nfdEnabled" -}}
{{- $n := index .Values "node-feature-discovery" | default dict -}}
{{- if and (kindIs "map" $n) (eq (toString $n.enabled) "true") }}true{{ end -}}
{{- end -}}

{{/*
Render the NodeFeatureRule and request the TEE keys? "true" or "".
true / false: as said. auto: when NFD is around: node-feature-discovery.enabled, an NFD found
running (kd.nfdFound), or NFD's API (nfd.k8s-sigs.io/v1alpha1) served by the cluster, which
`helm template` learns from `--api-versions nfd.k8s-sigs.io/v1alpha1`.
*/}}
{{- define "kd.nfdRules" -}}
{{- $c := include "kd.nfdCreate" . -}}
{{- if eq $c "true" -}}
true
{{- else if eq $c "auto" -}}
{{- if or (include "kd.nfdEnabled" .) (.Capabilities.APIVersions.Has "nfd.k8s-sigs.io/v1alpha1") (include "kd.nfdFound" .) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Add NFD's TEE labels to the TEE RuntimeClasses? "true" or "": node-feature-discovery.enabled or
an NFD found running (as upstream: NFD's API alone may outlive an uninstalled NFD, and a
selector on a label nobody sets keeps every pod of the class Pending).
*/}}
{{- define "kd.nfdSelectors" -}}
{{- if or (include "kd.nfdEnabled" .) (include "kd.nfdFound" .) }}true{{ end -}}
{{- end -}}

{{/*
The extended resource a sandbox of a shim holds for its life, as "name" or "" (a shim whose
name has "snp": sev-snp.amd.com/esids, "tdx": tdx.intel.com/keys). Call with the shim name.
*/}}
{{- define "kd.teeKey" -}}
{{- if contains "snp" . -}}
sev-snp.amd.com/esids
{{- else if contains "tdx" . -}}
tdx.intel.com/keys
{{- end -}}
{{- end -}}

{{/*
The node label NFD sets for a shim's TEE, as "key" or "": snp -> the rule's
amd.feature.node.kubernetes.io/snp, tdx -> the rule's intel.feature.node.kubernetes.io/tdx,
-se / -se-runtime-rs (IBM Secure Execution) -> NFD's own
feature.node.kubernetes.io/cpu-security.se.enabled. Not for the nvidia-gpu shims (values.yaml
gives them a selector). Call with the shim name.
*/}}
{{- define "kd.teeLabel" -}}
{{- if not (contains "nvidia-gpu" .) -}}
{{- if contains "snp" . -}}
amd.feature.node.kubernetes.io/snp
{{- else if contains "tdx" . -}}
intel.feature.node.kubernetes.io/tdx
{{- else if or (hasSuffix "-se" .) (hasSuffix "-se-runtime-rs" .) -}}
feature.node.kubernetes.io/cpu-security.se.enabled
{{- end -}}
{{- end -}}
{{- end -}}
