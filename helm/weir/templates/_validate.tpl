{{/*
Checks across values that the JSON schema cannot express. Included once, by
statefulset.yaml; each failure names the values to change.
*/}}
{{- define "weir.validate" -}}
{{- $auth := .Values.auth }}
{{- $tls := .Values.tls }}
{{- $sm := .Values.metrics.serviceMonitor }}
{{- $cluster := .Values.cluster }}
{{- $replicas := int (include "weir.replicas" .) }}

{{- /* Replicas and clustering (the schema says the same, tersely). */}}
{{- if not $cluster.enabled }}
{{- if ne $replicas 1 }}
{{- fail (printf "replicaCount is %d but cluster.enabled is false: without clustering replicaCount must be 1 (a second pod would be a second, independent broker with its own store). For a replicated cluster of 3 or 5 pods set cluster.enabled=true (helm/weir/values-cluster.yaml)" $replicas) }}
{{- end }}
{{- else }}
{{- if or (lt $replicas 3) (eq (mod $replicas 2) 0) (gt $replicas 9) }}
{{- fail (printf "replicaCount is %d but cluster.enabled needs an odd number of pods from 3 to 9 (3 or 5 recommended): Raft needs a majority up, so 1 has no replica, 2 stops when either node is down, and an even count tolerates no more failures than the odd one below it" $replicas) }}
{{- end }}
{{- if eq (int $cluster.port) (int (include "weir.containerPort" .)) }}
{{- fail (printf "cluster.port must differ from the client port %s" (include "weir.containerPort" .)) }}
{{- end }}
{{- if not .Values.persistence.enabled }}
{{- fail "cluster.enabled needs persistence.enabled: a member whose emptyDir is gone (pod deleted or rescheduled) would rejoin empty under its old node id and could vote twice in one Raft term, which may lose acknowledged writes" }}
{{- end }}
{{- if .Values.persistence.existingClaim }}
{{- fail "persistence.existingClaim cannot be used with cluster.enabled: every member needs its own volume (leave it empty for the volumeClaimTemplate)" }}
{{- end }}
{{- $hb := 300 }}
{{- if not (kindIs "invalid" $cluster.heartbeatMs) }}{{ $hb = int64 $cluster.heartbeatMs }}{{ end }}
{{- $et := 1500 }}
{{- if not (kindIs "invalid" $cluster.electionTimeoutMs) }}{{ $et = int64 $cluster.electionTimeoutMs }}{{ end }}
{{- if lt (int64 $et) (mul 3 (int64 $hb)) }}
{{- fail (printf "cluster.electionTimeoutMs (%d) must be at least 3 x cluster.heartbeatMs (%d)" (int64 $et) (int64 $hb)) }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if .enabled }}
{{- $tolerable := div (sub $replicas 1) 2 }}
{{- if and (not (kindIs "invalid" .maxUnavailable)) (not (kindIs "string" .maxUnavailable)) (gt (int .maxUnavailable) $tolerable) }}
{{- fail (printf "podDisruptionBudget.maxUnavailable (%d) would let a majority of the %d members go: at most %d (1 recommended)" (int .maxUnavailable) $replicas $tolerable) }}
{{- end }}
{{- if and (not (kindIs "invalid" .minAvailable)) (not (kindIs "string" .minAvailable)) (lt (int .minAvailable) (sub $replicas $tolerable)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) would let a majority of the %d members go: at least %d" (int .minAvailable) $replicas (sub $replicas $tolerable)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Protected mode: the pod listens on 0.0.0.0. */}}
{{- if not (include "weir.authEnabled" .) }}
{{- if not $auth.allowAnonymous }}
{{- fail `
auth: the broker listens on 0.0.0.0 and would accept anyone; configure authentication:
  auth.existingSecret=<Secret with a tokens file>  (recommended; key: auth.existingSecretKey, default tokens.toml)
  auth.tokens=[{principal, sha256, grants}]       (the chart renders the tokens file into a Secret)
  auth.jwt.jwksSecret/jwksConfigMap + audience + issuer  (JWT bearer tokens)
Create a token with: weir auth new-token --principal <name>   (prints the token and its tokens-file entry)
For a throwaway test installation without authentication set auth.allowAnonymous=true.` }}
{{- end }}
{{- else if $auth.allowAnonymous }}
{{- fail "auth.allowAnonymous: true only applies when no authentication is configured, but auth.existingSecret, auth.tokens or auth.jwt is set: remove allowAnonymous" }}
{{- end }}
{{- if and $auth.existingSecret $auth.tokens }}
{{- fail "auth: set either auth.existingSecret or auth.tokens, not both" }}
{{- end }}
{{- if and (or $auth.protectMetrics $auth.protectDocs) (not (include "weir.authEnabled" .)) }}
{{- fail "auth.protectMetrics/protectDocs need authentication (auth.existingSecret, auth.tokens or auth.jwt)" }}
{{- end }}
{{- range $i, $t := $auth.tokens }}
{{- if and (not $t.sha256) (not $tls.clientAuth) }}
{{- fail (printf "auth.tokens[%d] (principal %q) has no sha256: only client-certificate principals (tls.clientAuth: true) may omit it" $i $t.principal) }}
{{- end }}
{{- end }}

{{- /* JWT */}}
{{- with $auth.jwt }}
{{- if and .jwksSecret .jwksConfigMap }}
{{- fail "auth.jwt: set jwksSecret or jwksConfigMap, not both" }}
{{- end }}
{{- if include "weir.jwtEnabled" $ }}
{{- if or (not .audience) (not .issuer) }}
{{- fail "auth.jwt: audience and issuer are required with a JWKS (without them tokens issued for other services would be accepted)" }}
{{- end }}
{{- else if or .audience .issuer .grantsClaim }}
{{- fail "auth.jwt: audience/issuer/grantsClaim are set but there is no JWKS (auth.jwt.jwksSecret or auth.jwt.jwksConfigMap)" }}
{{- end }}
{{- end }}

{{- /* TLS */}}
{{- if $tls.enabled }}
{{- if not $tls.secretName }}
{{- fail "tls.enabled: set tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key, e.g. from a cert-manager Certificate)" }}
{{- end }}
{{- else if or $tls.secretName $tls.clientAuth }}
{{- fail "tls.secretName/tls.clientAuth are set but tls.enabled is false" }}
{{- end }}
{{- if and $tls.requireClientCert (not $tls.clientAuth) }}
{{- fail "tls.requireClientCert needs tls.clientAuth: true" }}
{{- end }}
{{- if and $tls.clientCa.secretName $tls.clientCa.configMapName }}
{{- fail "tls.clientCa: set secretName or configMapName, not both" }}
{{- end }}
{{- if and (include "weir.clientCaSeparate" .) (not $tls.clientAuth) }}
{{- fail "tls.clientCa is set but tls.clientAuth is false" }}
{{- end }}

{{- /* ServiceMonitor */}}
{{- if $sm.enabled }}
{{- if and $auth.protectMetrics (not $sm.bearerTokenSecret.name) (not (and $tls.clientAuth $sm.tlsConfig.cert)) }}
{{- fail "auth.protectMetrics: the ServiceMonitor needs credentials, or Prometheus gets 401: metrics.serviceMonitor.bearerTokenSecret.name (a Secret in the ServiceMonitor's namespace with a token granted `metrics`), or with tls.clientAuth a client certificate in metrics.serviceMonitor.tlsConfig whose CN has the `metrics` grant" }}
{{- end }}
{{- if $tls.enabled }}
{{- if and (not $sm.tlsConfig) (ne (default $.Release.Namespace $sm.namespace) $.Release.Namespace) }}
{{- fail "metrics.serviceMonitor.namespace differs from the release namespace, so the ServiceMonitor cannot use the CA of tls.secretName: set metrics.serviceMonitor.tlsConfig" }}
{{- end }}
{{- if and $tls.requireClientCert (not (and $sm.tlsConfig.cert $sm.tlsConfig.keySecret)) }}
{{- fail "tls.requireClientCert: Prometheus needs a client certificate: set metrics.serviceMonitor.tlsConfig.cert and keySecret" }}
{{- end }}
{{- else if $sm.tlsConfig }}
{{- fail "metrics.serviceMonitor.tlsConfig is set but tls.enabled is false" }}
{{- end }}
{{- end }}

{{- /* Limits */}}
{{- $maxRequest := 33554432 }}
{{- if not (kindIs "invalid" .Values.config.maxRequestBytes) }}{{ $maxRequest = int64 .Values.config.maxRequestBytes }}{{ end }}
{{- $inflight := 268435456 }}
{{- if not (kindIs "invalid" .Values.limits.maxInflightRequestBytes) }}{{ $inflight = int64 .Values.limits.maxInflightRequestBytes }}{{ end }}
{{- if lt (int64 $inflight) (int64 $maxRequest) }}
{{- fail (printf "limits.maxInflightRequestBytes (%d) must be at least config.maxRequestBytes (%d)" (int64 $inflight) (int64 $maxRequest)) }}
{{- end }}

{{- /* Security settings only through the values above. */}}
{{- $modelled := include "weir.modelledTomlKeys" . | fromYaml }}
{{- range regexFindAll "(?m)^[ \\t]*[A-Za-z0-9_\"'-]+[ \\t]*=" .Values.config.extraToml -1 }}
{{- $key := regexReplaceAll "[ \\t\"'=]" . "" }}
{{- if hasKey $modelled $key }}
{{- fail (printf "config.extraToml sets %s: use %s instead" $key (get $modelled $key)) }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if regexMatch "^WEIR_(AUTH_|TLS_|ALLOW_ANONYMOUS$|LISTEN$|DATA_DIR$|CONFIG$)" .name }}
{{- fail (printf "extraEnv %s: set it through the chart's auth/tls values (and the chart's checks), not the environment" .name) }}
{{- end }}
{{- if regexMatch "^WEIR_(NODE_ID|PEERS|CLUSTER_[A-Z_]+)$" .name }}
{{- fail (printf "extraEnv %s: the chart sets the cluster options from cluster.* and replicaCount" .name) }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
{{- if regexMatch "^--(auth-|tls-|allow-anonymous|listen|data-dir|config)" . }}
{{- fail (printf "extraArgs %s: set it through the chart's auth/tls values (and the chart's checks), not a flag" .) }}
{{- end }}
{{- if regexMatch "^--(node-id|peers|cluster-)" . }}
{{- fail (printf "extraArgs %s: the chart sets the cluster options from cluster.* and replicaCount" .) }}
{{- end }}
{{- end }}
{{- end }}
