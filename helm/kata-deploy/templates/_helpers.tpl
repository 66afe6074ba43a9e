{{/*
Naming. Every object name, handler, label and host path carries the multi-install suffix,
so two releases with different suffixes never share anything.
*/}}
{{- define "kd.sfx" -}}
{{- with .Values.env.multiInstallSuffix }}-{{ . }}{{ end -}}
{{- end -}}

{{- define "kd.name" -}}
kata-deploy{{ include "kd.sfx" . }}
{{- end -}}

{{/* Value of the kata-deploy/instance label: the suffix, or "default". */}}
{{- define "kd.instance" -}}
{{- default "default" .Values.env.multiInstallSuffix -}}
{{- end -}}

{{- define "kd.labels" -}}
app.kubernetes.io/name: kata-deploy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kata-containers
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
kata-deploy/instance: {{ include "kd.instance" . }}
{{- end -}}

{{/* The Kata version of the image's payload (Chart.yaml annotation), for RuntimeClasses. */}}
{{- define "kd.kataVersion" -}}
{{- index (.Chart.Annotations | default dict) "katacontainers.io/kata-version" -}}
{{- end -}}

{{- define "kd.image" -}}
{{ .Values.image.reference }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/*
The pre-delete hook's image: kubectlImage as a string, or upstream's {reference, tag} map
(reference:tag; the reference alone when it has a digest or the tag is empty). "" for none.
*/}}
{{- define "kd.kubectlImage" -}}
{{- $k := .Values.kubectlImage -}}
{{- if kindIs "map" $k -}}
{{- $ref := toString ($k.reference | default "") -}}
{{- $tag := toString ($k.tag | default "") -}}
{{- if or (not $ref) (contains "@" $ref) (not $tag) -}}
{{- $ref -}}
{{- else -}}
{{- printf "%s:%s" $ref $tag -}}
{{- end -}}
{{- else -}}
{{- toString ($k | default "") -}}
{{- end -}}
{{- end -}}

{{/*
Chart architecture names -> the suffix of the agent's per-architecture variables.
*/}}
{{- define "kd.archs" -}}
amd64:X86_64 arm64:AARCH64 s390x:S390X ppc64le:PPC64LE
{{- end -}}

{{/*
Is a shim enabled? "enabled: ~" (null or missing) follows shims.disableAll, as upstream.
Call with (dict "root" $ "shim" NAME). Returns "true" or "".
*/}}
{{- define "kd.shimOn" -}}
{{- $cfg := get .root.Values.shims .shim -}}
{{- if kindIs "map" $cfg -}}
{{- if kindIs "bool" $cfg.enabled -}}
{{- if $cfg.enabled }}true{{ end -}}
{{- else if not .root.Values.shims.disableAll -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Enabled shims for one chart architecture, space separated, sorted.
Call with (dict "root" $ "arch" "amd64").
*/}}
{{- define "kd.shimsFor" -}}
{{- $root := .root -}}
{{- $arch := .arch -}}
{{- $out := list -}}
{{- range $name, $cfg := $root.Values.shims -}}
{{- if and (kindIs "map" $cfg) (include "kd.shimOn" (dict "root" $root "shim" $name)) -}}
{{- if has $arch ($cfg.supportedArches | default list) -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{/* Enabled shims on any architecture, space separated, sorted. */}}
{{- define "kd.shimsAny" -}}
{{- $root := . -}}
{{- $out := list -}}
{{- range $pair := splitList " " (include "kd.archs" $root) -}}
{{- range $s := splitList " " (include "kd.shimsFor" (dict "root" $root "arch" (index (splitList ":" $pair) 0))) -}}
{{- if and $s (not (has $s $out)) -}}
{{- $out = append $out $s -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join " " (sortAlpha $out) -}}
{{- end -}}

{{/*
Custom runtimes (customRuntimes.*): extra handlers whose Kata configuration and binary come
from an enabled shim's (baseConfig), plus an optional drop-in. The handler is the key under
customRuntimes.runtimes, without any suffix. Nothing of it is used unless
customRuntimes.enabled. Returns "true" or "".
*/}}
{{- define "kd.customOn" -}}
{{- $c := .Values.customRuntimes -}}
{{- if and (kindIs "map" $c) $c.enabled (kindIs "map" $c.runtimes) }}true{{ end -}}
{{- end -}}

{{/*
The runtimeClass a custom runtime gives in full (a YAML string, as upstream, or a map), as
JSON; "" when it gives none (a missing, empty string or empty map runtimeClass).
Call with (dict "name" NAME "rt" RUNTIME).
*/}}
{{- define "kd.customRC" -}}
{{- $rc := .rt.runtimeClass -}}
{{- if and (kindIs "string" $rc) (trim $rc) -}}
{{- $m := fromYaml $rc -}}
{{- if hasKey $m "Error" -}}
{{- fail (printf "kata-deploy: customRuntimes.runtimes.%s.runtimeClass is not a YAML mapping (a RuntimeClass object): %s" .name (get $m "Error")) -}}
{{- end -}}
{{- toJson $m -}}
{{- else if and (kindIs "map" $rc) $rc -}}
{{- toJson $rc -}}
{{- end -}}
{{- end -}}

{{/* Name of a custom runtime's RuntimeClass: runtimeClass.metadata.name, else the handler. */}}
{{- define "kd.customRCName" -}}
{{- $user := include "kd.customRC" . -}}
{{- if $user -}}
{{- (fromJson $user).metadata.name -}}
{{- else -}}
{{- .name -}}
{{- end -}}
{{- end -}}

{{/*
Data of the <daemonset>-custom-configs ConfigMap the agent reads at /custom-configs, as JSON
({} when there is nothing to put in it):
  custom-runtimes.list   handler:baseConfig:snapshotter:pullType per line, sorted by handler
                         (customRuntimes.enabled with at least one runtime)
  dropin-<handler>.toml  customRuntimes.runtimes.<handler>.dropIn, verbatim
  dropin-<shim>.toml     shims.<shim>.dropIn of an enabled shim, verbatim
  containerd-user-dropin.toml  containerd.userDropIn, verbatim (CONTAINERD_USER_DROP_IN_SOURCE_FILE)
*/}}
{{- define "kd.customData" -}}
{{- $root := . -}}
{{- $data := dict -}}
{{- if include "kd.customOn" $root -}}
{{- $lines := list -}}
{{- range $name, $rt := $root.Values.customRuntimes.runtimes -}}
{{- $ctd := $rt.containerd | default dict -}}
{{- $crio := $rt.crio | default dict -}}
{{- $lines = append $lines (printf "%s:%s:%s:%s" $name (toString $rt.baseConfig) ($ctd.snapshotter | default "" | toString) ($crio.pullType | default "" | toString)) -}}
{{- with $rt.dropIn -}}
{{- $_ := set $data (printf "dropin-%s.toml" $name) . -}}
{{- end -}}
{{- end -}}
{{- if $lines -}}
{{- $_ := set $data "custom-runtimes.list" (printf "%s\n" (join "\n" $lines)) -}}
{{- end -}}
{{- end -}}
{{- range $s := compact (splitList " " (include "kd.shimsAny" $root)) -}}
{{- with (get $root.Values.shims $s).dropIn -}}
{{- $_ := set $data (printf "dropin-%s.toml" $s) . -}}
{{- end -}}
{{- end -}}
{{- with trim ($root.Values.containerd.userDropIn | default "") -}}
{{- $_ := set $data "containerd-user-dropin.toml" (printf "%s\n" .) -}}
{{- end -}}
{{- toJson $data -}}
{{- end -}}

{{/*
Custom runtime checks (with customRuntimes.enabled): names are DNS labels, neither a shim name
(dropin-<name>.toml would be ambiguous) nor the handler of an enabled shim (kata-<shim>, with
the suffix or without, plain, -debug or -devkit); baseConfig is an enabled shim; pullType
is "", default or guest-pull; a full runtimeClass is a RuntimeClass with a metadata.name that no
other RuntimeClass of the release uses.
*/}}
{{- define "kd.validateCustom" -}}
{{- $root := . -}}
{{- $known := without (keys $root.Values.shims | sortAlpha) "disableAll" -}}
{{- $enabled := compact (splitList " " (include "kd.shimsAny" $root)) -}}
{{- $sfx := include "kd.sfx" $root -}}
{{- $handlers := dict -}}
{{- $rcNames := dict -}}
{{- $variants := list "" -}}
{{- if $root.Values.debug }}{{ $variants = append $variants "-debug" }}{{ end -}}
{{- if $root.Values.devkit }}{{ $variants = append $variants "-devkit" }}{{ end -}}
{{- range $s := compact (splitList " " (include "kd.shimsAny" $root)) -}}
{{- range $x := list "" $sfx -}}
{{- range $v := list "" "-debug" "-devkit" -}}
{{- $_ := set $handlers (printf "kata-%s%s%s" $s $x $v) $s -}}
{{- end -}}
{{- end -}}
{{- if $root.Values.runtimeClasses.enabled -}}
{{- range $v := $variants -}}
{{- $_ := set $rcNames (printf "kata-%s%s%s" $s $sfx $v) (printf "shim %s" $s) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $root.Values.runtimeClasses.enabled $root.Values.runtimeClasses.createDefault (not $root.Values.env.multiInstallSuffix) -}}
{{- $_ := set $rcNames $root.Values.runtimeClasses.defaultName "runtimeClasses.defaultName" -}}
{{- end -}}
{{- range $name, $rt := $root.Values.customRuntimes.runtimes -}}
{{- $key := printf "customRuntimes.runtimes.%s" $name -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $name) -}}
{{- fail (printf "kata-deploy: %s: the name is the runtime handler and must be a DNS label (1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)" $key) -}}
{{- end -}}
{{- if has $name $known -}}
{{- fail (printf "kata-deploy: %s: %q is a shim name; a custom runtime needs a name of its own (e.g. kata-my-%s)" $key $name $name) -}}
{{- end -}}
{{- if hasKey $handlers $name -}}
{{- fail (printf "kata-deploy: %s: %q is a handler of the enabled shim %s; choose another name" $key $name (get $handlers $name)) -}}
{{- end -}}
{{- if not (kindIs "map" $rt) -}}
{{- fail (printf "kata-deploy: %s must be a map with at least baseConfig" $key) -}}
{{- end -}}
{{- if not (has (toString $rt.baseConfig) $known) -}}
{{- fail (printf "kata-deploy: %s.baseConfig %q is not a shim of this chart (one of: %s)" $key (toString $rt.baseConfig) (join ", " $known)) -}}
{{- end -}}
{{- if not (has (toString $rt.baseConfig) $enabled) -}}
{{- fail (printf "kata-deploy: %s.baseConfig %q is not an enabled shim (enabled: %s); the custom runtime uses its binary and configuration, set shims.%s.enabled: true" $key (toString $rt.baseConfig) (join " " $enabled) (toString $rt.baseConfig)) -}}
{{- end -}}
{{- $crio := $rt.crio | default dict -}}
{{- $pull := $crio.pullType | default "" | toString -}}
{{- if not (has $pull (list "" "default" "guest-pull")) -}}
{{- fail (printf "kata-deploy: %s.crio.pullType %q must be \"\", \"default\" or \"guest-pull\"" $key $pull) -}}
{{- end -}}
{{- $user := include "kd.customRC" (dict "name" $name "rt" $rt) -}}
{{- if $user -}}
{{- $m := fromJson $user -}}
{{- if and (hasKey $m "kind") (ne (toString $m.kind) "RuntimeClass") -}}
{{- fail (printf "kata-deploy: %s.runtimeClass has kind %q, want RuntimeClass" $key (toString $m.kind)) -}}
{{- end -}}
{{- if and (hasKey $m "apiVersion") (ne (toString $m.apiVersion) "node.k8s.io/v1") -}}
{{- fail (printf "kata-deploy: %s.runtimeClass has apiVersion %q, want node.k8s.io/v1" $key (toString $m.apiVersion)) -}}
{{- end -}}
{{- $md := $m.metadata -}}
{{- if not (and (kindIs "map" $md) (kindIs "string" $md.name) $md.name) -}}
{{- fail (printf "kata-deploy: %s.runtimeClass has no metadata.name (the RuntimeClass name pods refer to)" $key) -}}
{{- end -}}
{{- if not (and (le (len $md.name) 253) (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $md.name)) -}}
{{- fail (printf "kata-deploy: %s.runtimeClass.metadata.name %q is not a valid object name (lowercase letters, digits, '-' and '.')" $key $md.name) -}}
{{- end -}}
{{- end -}}
{{- if $root.Values.runtimeClasses.enabled -}}
{{- $rcName := include "kd.customRCName" (dict "name" $name "rt" $rt) -}}
{{- if hasKey $rcNames $rcName -}}
{{- fail (printf "kata-deploy: %s: RuntimeClass %q is already created for %s" $key $rcName (get $rcNames $rcName)) -}}
{{- end -}}
{{- $_ := set $rcNames $rcName $key -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Checks the schema cannot express. Fails the render with a message naming the key.
*/}}
{{- define "kd.validate" -}}
{{- $root := . -}}
{{- if not (include "kd.shimsAny" $root) -}}
{{- fail "kata-deploy: no shim is enabled: set shims.<name>.enabled: true for at least one shim (shims.disableAll is true or every shim is disabled)" -}}
{{- end -}}
{{- range $pair := splitList " " (include "kd.archs" $root) -}}
{{- $arch := index (splitList ":" $pair) 0 -}}
{{- $on := include "kd.shimsFor" (dict "root" $root "arch" $arch) -}}
{{- $def := get $root.Values.defaultShim $arch -}}
{{- if and $on (not (has $def (splitList " " $on))) -}}
{{- fail (printf "kata-deploy: defaultShim.%s is %q, which is not an enabled shim for %s (enabled for %s: %s)" $arch $def $arch $arch $on) -}}
{{- end -}}
{{- end -}}
{{- if and $root.Values.runtimeClasses.enabled $root.Values.runtimeClasses.createDefault (not $root.Values.env.multiInstallSuffix) -}}
{{- $on := include "kd.shimsFor" (dict "root" $root "arch" "amd64") -}}
{{- if not (has $root.Values.defaultShim.amd64 (splitList " " $on)) -}}
{{- fail (printf "kata-deploy: runtimeClasses.createDefault needs defaultShim.amd64 (%q) to be an enabled amd64 shim" $root.Values.defaultShim.amd64) -}}
{{- end -}}
{{- end -}}
{{- if $root.Release.IsUpgrade -}}
{{- $dss := lookup "apps/v1" "DaemonSet" $root.Release.Namespace "" -}}
{{- range $ds := (get $dss "items" | default list) -}}
{{- $l := $ds.metadata.labels | default dict -}}
{{- if and (eq (get $l "app.kubernetes.io/instance") $root.Release.Name) (eq (get $l "app.kubernetes.io/name") "kata-deploy") (ne $ds.metadata.name (include "kd.name" $root)) -}}
{{- fail (printf "kata-deploy: this release runs DaemonSet %s; env.multiInstallSuffix cannot change on upgrade (uninstall, then install with the new suffix)" $ds.metadata.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if regexMatch "^(quay\\.io/kata-containers|ghcr\\.io/kata-containers)/" $root.Values.image.reference -}}
{{- fail (printf "kata-deploy: image.reference %q is upstream's image, which does not contain this chart's agent (/usr/bin/kata-deploy-agent); remove image.reference from your values to use the default" $root.Values.image.reference) -}}
{{- end -}}
{{- with $root.Values.env.installationPrefix -}}
{{- if regexMatch "(^|/)\\.\\.?(/|$)" . -}}
{{- fail (printf "kata-deploy: env.installationPrefix %q must not contain \".\" or \"..\" path components" .) -}}
{{- end -}}
{{- end -}}
{{- if include "kd.customOn" $root -}}
{{- include "kd.validateCustom" $root -}}
{{- end -}}
{{- with trim ($root.Values.containerd.configFileName | default "") -}}
{{- if or (contains "/" .) (eq . ".") (eq . "..") -}}
{{- fail (printf "kata-deploy: containerd.configFileName %q must be a file name in /etc/containerd, without '/'" .) -}}
{{- end -}}
{{- end -}}
{{- if and $root.Values.devkit (not $root.Values.debug) -}}
{{- fail "kata-deploy: devkit: true needs debug: true (devkit handlers are debug handlers with the devkit guest image)" -}}
{{- end -}}
{{- if and (ne $root.Values.k8sDistribution "k8s") (ne $root.Values.containerRuntime "auto") (ne $root.Values.containerRuntime "containerd") -}}
{{- fail (printf "kata-deploy: containerRuntime %q needs k8sDistribution k8s (%s always runs containerd)" $root.Values.containerRuntime $root.Values.k8sDistribution) -}}
{{- end -}}
{{- end -}}

{{/*
Warnings for accepted upstream keys that have no effect here, one per line.
*/}}
{{- define "kd.warnings" -}}
{{- $v := .Values -}}
{{- include "kd.jobWarnings" . -}}
{{- range $k := list "configDir" "runtimeSocket" -}}
{{- if get $v.containerd $k }}
containerd.{{ $k }} is ignored: the agent finds the runtime configuration from k8sDistribution and the node.
{{- end -}}
{{- end -}}
{{- if and (trim ($v.containerd.configFileName | default "")) (ne $v.k8sDistribution "k8s") }}
containerd.configFileName is ignored with k8sDistribution {{ $v.k8sDistribution }}: it names a file in /etc/containerd, which {{ $v.k8sDistribution }}'s containerd does not read.
{{- end -}}
{{- if and (trim ($v.containerd.userDropIn | default "")) (eq $v.containerRuntime "crio") }}
containerd.userDropIn is ignored with containerRuntime crio: it is a containerd drop-in.
{{- end -}}

{{- if include "kd.customOn" $ -}}
{{- if not $v.customRuntimes.runtimes }}
customRuntimes.enabled has no effect: customRuntimes.runtimes is empty.
{{- end -}}
{{- range $name, $rt := $v.customRuntimes.runtimes -}}
{{- $user := include "kd.customRC" (dict "name" $name "rt" $rt) -}}
{{- if $user -}}
{{- $h := (fromJson $user).handler -}}
{{- if and $h (ne (toString $h) $name) }}
customRuntimes.runtimes.{{ $name }}.runtimeClass.handler ({{ $h }}) is replaced by "{{ $name }}": a custom runtime's handler is its name.
{{- end -}}
{{- end -}}
{{- end -}}
{{- else if and (kindIs "map" $v.customRuntimes) $v.customRuntimes.runtimes }}
customRuntimes.runtimes is ignored: customRuntimes.enabled is false.
{{- end -}}
{{- if and $v.monitor $v.monitor.enabled }}
monitor.enabled is ignored: kata-monitor is not part of this chart.
{{- end -}}
{{- if include "kd.nfdEnabled" $ }}
node-feature-discovery.enabled does not install NFD here: run it yourself; the NodeFeatureRule, TEE keys and TEE node selectors are rendered for it.
{{- end -}}
{{- if not (include "kd.nfdRules" $) -}}
{{- $sel := include "kd.nfdSelectors" $ -}}
{{- range $name := compact (splitList " " (include "kd.shimsAny" $)) -}}
{{- $rc := (get $v.shims $name).runtimeClass | default dict -}}
{{- $keys := keys ($rc.nodeSelector | default dict) -}}
{{- if and (not $keys) $sel (include "kd.teeLabel" $name) -}}
{{- $keys = list (include "kd.teeLabel" $name) -}}
{{- end -}}
{{- range $l := sortAlpha $keys -}}
{{- if has $l (list "amd.feature.node.kubernetes.io/snp" "intel.feature.node.kubernetes.io/tdx") }}
RuntimeClass kata-{{ $name }}{{ include "kd.sfx" $ }} selects {{ $l }}, which NFD sets only with a NodeFeatureRule, and none is rendered (nodeFeatureRules.create, docs/HELM.md): label the nodes or add a rule.
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.verification $v.verification.pod }}
verification.pod is ignored: there is no verification Job.
{{- end -}}
{{- if $v.env.hostOS }}
env.hostOS is ignored: it has no effect on the agent.
{{- end -}}
{{- if and $v.runtimeClasses.createDefault $v.env.multiInstallSuffix }}
runtimeClasses.createDefault is ignored with env.multiInstallSuffix: the "{{ $v.runtimeClasses.defaultName }}" RuntimeClass belongs to the default install.
{{- end -}}
{{- if and (ne $v.k8sDistribution "k8s") (eq $v.containerRuntime "containerd") }}
containerRuntime is ignored: {{ $v.k8sDistribution }} always runs containerd.
{{- end -}}
{{- end -}}

{{/*
STARTUP_TAINTS value: "key" or "key:effect", comma separated.
*/}}
{{- define "kd.startupTaints" -}}
{{- $out := list -}}
{{- range $t := .Values.startupTaints -}}
{{- if kindIs "map" $t -}}
{{- $out = append $out (ternary (printf "%s:%s" $t.key $t.effect) $t.key (not (empty $t.effect))) -}}
{{- else -}}
{{- $out = append $out (toString $t) -}}
{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
Host directories the agent needs, each mounted at /host/<same path>. One line per mount:
name|hostPath|type|readOnly. See docs/HELM.md "Host mounts" for why each one is there.
*/}}
{{- define "kd.hostMounts" -}}
{{- $v := .Values -}}
{{- $d := $v.k8sDistribution -}}
{{- $systemd := eq (toString $v.runtimeRestart) "systemd" -}}
{{- $etc := and (eq $d "k8s") (eq $v.containerRuntime "auto") -}}
{{- if eq $d "k3s" }}
containerd-conf|/var/lib/rancher/k3s/agent/etc/containerd|Directory|false
{{- else if eq $d "rke2" }}
containerd-conf|/var/lib/rancher/rke2/agent/etc/containerd|Directory|false
{{- else if eq $d "k0s" }}
containerd-conf|/etc/k0s|Directory|false
{{- else if eq $d "microk8s" }}
containerd-conf|/var/snap/microk8s/current/args|Directory|false
{{- else if $etc }}
host-etc|/etc|Directory|false
{{- else if eq $v.containerRuntime "containerd" }}
containerd-conf|/etc/containerd|DirectoryOrCreate|false
{{- else }}
crio-conf|/etc/crio|Directory|false
{{- end }}
{{- if $v.env.installationPrefix }}
install-dir|{{ $v.env.installationPrefix }}|DirectoryOrCreate|false
{{- else }}
install-dir|/opt|DirectoryOrCreate|false
{{- end }}
agent-state|/var/lib/kata-deploy|DirectoryOrCreate|false
host-lock|/run/kata-deploy|DirectoryOrCreate|false
host-lib|/lib|Directory|true
{{- if $systemd }}
run-systemd|/run/systemd|Directory|true
{{- if not $etc }}
etc-systemd|/etc/systemd/system|Directory|true
{{- end }}
{{- end }}
{{- end -}}

{{/*
overhead and scheduling of a RuntimeClass, from shims.<shim>.runtimeClass: overhead (memory, cpu)
unless disabled (globally, for the shim, or with overhead false), plus the shim's TEE key when
nfd.rules (kd.teeKey: one sev-snp.amd.com/esids or tdx.intel.com/keys per sandbox, whatever the
overhead settings); then the kata-runtime node label, the per-install (owner) label
kata-deploy.katacontainers.io/<suffix or "default">, as upstream's (the agent sets it where this
install serves the node), the shim's own label (the agent sets it on nodes where it installed the
shim: a shim the node's payload lacks keeps its pods off that node), and the shim's nodeSelector
without those keys, or, when that is empty and nfd.selectors, the label NFD sets for its TEE
(kd.teeLabel).
Call with (dict "root" $ "shim" NAME "overhead" BOOL "nfd" (dict "rules" BOOL "selectors" BOOL)),
nfd computed once per render (kd.nfdRules / kd.nfdSelectors look the cluster up).
*/}}
{{- define "kd.rcTail" -}}
{{- $root := .root -}}
{{- $rc := (get $root.Values.shims .shim).runtimeClass | default dict -}}
{{- $nfd := .nfd | default dict -}}
{{- $res := dict -}}
{{- if and .overhead $root.Values.runtimeClasses.overheadEnabled (ne (toString $rc.overheadEnabled) "false") $rc.overhead -}}
{{- $_ := set $res "memory" (toString $rc.overhead.memory) -}}
{{- $_ = set $res "cpu" (toString $rc.overhead.cpu) -}}
{{- end -}}
{{- $key := include "kd.teeKey" .shim -}}
{{- if and $nfd.rules $key -}}
{{- $_ := set $res $key "1" -}}
{{- end -}}
{{- if $res }}
overhead:
  podFixed:
    {{- range $k := list "memory" "cpu" "sev-snp.amd.com/esids" "tdx.intel.com/keys" }}
    {{- if hasKey $res $k }}
    {{ $k }}: {{ get $res $k | quote }}
    {{- end }}
    {{- end }}
{{- end }}
scheduling:
  nodeSelector:
    katacontainers.io/kata-runtime: "true"
    kata-deploy.katacontainers.io/{{ include "kd.instance" $root }}: "true"
    {{ include "kd.shimLabel" (dict "root" $root "shim" .shim) }}: "true"
    {{- /* The keys above are the ownership gate: a shim's own nodeSelector may not restate them
           (a duplicate key would point the class at nodes this install does not hold). */}}
    {{- $own := list "katacontainers.io/kata-runtime" (printf "kata-deploy.katacontainers.io/%s" (include "kd.instance" $root)) (include "kd.shimLabel" (dict "root" $root "shim" .shim)) }}
    {{- $user := omit ($rc.nodeSelector | default dict) "katacontainers.io/kata-runtime" (index $own 1) (index $own 2) }}
    {{- with $user }}
    {{- toYaml . | nindent 4 }}
    {{- else }}
    {{- $tee := include "kd.teeLabel" .shim }}
    {{- if and $nfd.selectors $tee }}
    {{ $tee }}: "true"
    {{- end }}
    {{- end }}
{{- end -}}

{{/*
The node label the agent sets when it installed a shim (KD_AGENT_SHIM_LABEL_PREFIX in
node-agent/settings.h): handler.kata-deploy.katacontainers.io/kata-<shim>[-<suffix>].
Call with (dict "root" $ "shim" NAME).
*/}}
{{- define "kd.shimLabel" -}}
handler.kata-deploy.katacontainers.io/kata-{{ .shim }}{{ include "kd.sfx" .root }}
{{- end -}}
