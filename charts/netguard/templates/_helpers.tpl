{{/*
The full name of every object: the release name, with "-netguard" appended
unless it already contains "netguard". Truncated to 52 characters so that
suffixed names ("-selfsigned-ca", "-dns") stay within 63.
*/}}
{{- define "netguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains "netguard" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-netguard" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is always "netguard": netguard
recognises its own pods by it and the pod webhook's objectSelector leaves
them out, so it is not overridable.
*/}}
{{- define "netguard.selectorLabels" -}}
app.kubernetes.io/name: netguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "netguard.labels" -}}
{{ include "netguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "netguard.serviceAccountName" -}}
{{- default (include "netguard.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The webhook and sidecar image: repository@digest or repository:tag. */}}
{{- define "netguard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret with the serving certificate (cert-manager mode). */}}
{{- define "netguard.tlsSecretName" -}}
{{- printf "%s-tls" (include "netguard.fullname" .) -}}
{{- end -}}

{{/* Name of the Secret with netguard's own CA (self-managed TLS). */}}
{{- define "netguard.caSecretName" -}}
{{- printf "%s-ca" (include "netguard.fullname" .) -}}
{{- end -}}

{{/* The DNS names the API server may use to reach the webhook Service. */}}
{{- define "netguard.serviceDNSNames" -}}
{{- $svc := include "netguard.fullname" . -}}
- {{ $svc }}
- {{ printf "%s.%s" $svc .Release.Namespace }}
- {{ printf "%s.%s.svc" $svc .Release.Namespace }}
- {{ printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.dns.search.clusterDomain }}
{{- end -}}

{{/*
Namespaces the webhooks never see: kube-system (mutating it could deadlock
cluster bootstrap), the release namespace (netguard must not depend on
itself to start) and namespaces.exclude.
*/}}
{{- define "netguard.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace -}}
{{- range .Values.namespaces.exclude -}}
{{- $ns = append $ns . -}}
{{- end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/* namespaceSelector of a webhook; the argument is (list $ mode), mode opt-in or cluster-wide. */}}
{{- define "netguard.namespaceSelector" -}}
{{- $ := index . 0 -}}
namespaceSelector:
  matchExpressions:
  {{- if eq (index . 1) "cluster-wide" }}
    - key: netguard.io/inject
      operator: NotIn
      values: ["disabled"]
  {{- else }}
    - key: netguard.io/inject
      operator: In
      values: ["enabled"]
  {{- end }}
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "netguard.excludedNamespaces" $ }}
{{- end -}}

{{/* Which namespaces the Service guard and the conflict detector act on. */}}
{{- define "netguard.serviceNamespaceMode" -}}
{{- default .Values.namespaces.mode .Values.serviceGuard.namespaceMode -}}
{{- end -}}

{{/* clientConfig of a webhook; the argument is (list $ path). */}}
{{- define "netguard.clientConfig" -}}
{{- $ := index . 0 -}}
clientConfig:
  service:
    name: {{ include "netguard.fullname" $ }}
    namespace: {{ $.Release.Namespace }}
    path: {{ index . 1 }}
    port: 443
{{- end -}}

{{/*
metadata.annotations of the webhook configurations: with cert-manager,
cainjector copies the serving Certificate's CA into every caBundle.
*/}}
{{- define "netguard.caInjection" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "netguard.fullname" .) }}
{{- end }}
{{- end -}}

{{/*
config.yaml: `config` with the dedicated sections merged over it. Only
settings given a value are written; netguard has defaults for the rest.
*/}}
{{- define "netguard.config" -}}
{{- $v := .Values -}}
{{- $search := dict "clusterDomain" $v.dns.search.clusterDomain "clusterDNSService" $v.dns.search.clusterDNSService -}}
{{- with $v.dns.search.clusterDNS }}{{ $_ := set $search "clusterDNS" . }}{{ end -}}
{{- $resolver := dict "default" $v.dns.resolver.default -}}
{{- with $v.dns.resolver.glibcImages }}{{ $_ := set $resolver "glibcImages" . }}{{ end -}}
{{- with $v.dns.resolver.muslImages }}{{ $_ := set $resolver "muslImages" . }}{{ end -}}
{{- $dnsProxy := dict "enabled" $v.dnsProxy.enabled "mode" $v.dnsProxy.mode "nativeSidecar" $v.dnsProxy.nativeSidecar "forMusl" (default false $v.dnsProxy.forMusl) "image" (default (include "netguard.image" .) $v.dnsProxy.image) -}}
{{- with $v.dnsProxy.resources }}{{ $_ := set $dnsProxy "resources" . }}{{ end -}}
{{- $namespaces := dict "mode" $v.namespaces.mode -}}
{{- with $v.namespaces.exclude }}{{ $_ := set $namespaces "exclude" . }}{{ end -}}
{{- $typed := dict
  "namespaces" $namespaces
  "dns" (dict "ndots" $v.dns.ndots "resolver" $resolver "search" $search)
  "dnsProxy" $dnsProxy
  "serviceGuard" (dict "enabled" $v.serviceGuard.enabled "mode" $v.serviceGuard.mode "namespaceMode" (include "netguard.serviceNamespaceMode" .) "coverage" $v.serviceGuard.coverage)
  "conflicts" (dict "enabled" $v.conflicts.enabled "mode" $v.conflicts.mode)
  "reports" (dict "enabled" $v.reports.enabled "interval" $v.reports.interval) -}}
{{- $config := deepCopy (default dict $v.config) -}}
{{- $_ := include "netguard.mergeInto" (list $config $typed) -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
mergeInto sets every key of the second map into the first, recursing into
maps present in both. Unlike sprig's merge it also writes false, 0 and "".
*/}}
{{- define "netguard.mergeInto" -}}
{{- $dst := index . 0 -}}
{{- range $k, $v := index . 1 -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- $_ := include "netguard.mergeInto" (list (get $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* labels of an alert; the argument is (list $ severity). */}}
{{- define "netguard.ruleLabels" -}}
severity: {{ index . 1 }}
{{- with (index . 0).Values.metrics.prometheusRule.additionalRuleLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The runbook of an alert: its section of docs/alerts.md. */}}
{{- define "netguard.runbook" -}}
{{- printf "https://github.com/netguard-io/netguard/blob/main/docs/alerts.md#%s" (lower .) -}}
{{- end -}}
