{{/* Labels of every object: name, instance and the given component. */}}
{{- define "gmsa.labels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Values.name }}
app.kubernetes.io/name: gmsa-webhook
{{- end }}

{{/* Labels that select the Deployment's pods, either role (its selector cannot change). */}}
{{- define "gmsa.selectorLabels" -}}
app.kubernetes.io/instance: {{ .Values.name }}
app.kubernetes.io/name: gmsa-webhook
{{- end }}

{{/* "true" when the webhook configurations carry CEL matchConditions. */}}
{{- define "gmsa.matchConditions" -}}
{{- $setting := toString .Values.matchConditions -}}
{{- if eq $setting "auto" -}}
{{- semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version -}}
{{- else if eq $setting "true" -}}
{{- if not (semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version) -}}
{{- fail "matchConditions need Kubernetes 1.28 or later: set matchConditions=false" -}}
{{- end -}}
true
{{- else -}}
false
{{- end -}}
{{- end }}

{{/* "true" in policy mode (admission=policies): admission policies in the API server and the
keeper instead of the webhook; refused before Kubernetes 1.36, as install refuses it. */}}
{{- define "gmsa.policies" -}}
{{- $mode := toString (.Values.admission | default "webhook") -}}
{{- if eq $mode "policies" -}}
{{- if not (semverCompare ">=1.36-0" .Capabilities.KubeVersion.Version) -}}
{{- fail "admission=policies needs MutatingAdmissionPolicy v1 (Kubernetes 1.36 or later): upgrade the control plane or keep admission=webhook" -}}
{{- end -}}
{{- if .Values.randomHostname -}}
{{- fail "randomHostname needs the webhook: CEL has no randomness, so admission policies cannot pick a hostname" -}}
{{- end -}}
true
{{- else if eq $mode "webhook" -}}
false
{{- else -}}
{{- fail "admission must be webhook or policies" -}}
{{- end -}}
{{- end }}

{{/* The pod webhooks' CEL condition; identical to gmsa_deploy::match_condition_expression (tests/helm_chart.rs). */}}
{{- define "gmsa.celExpression" -}}
(object != null && (has(object.spec) && ((has(object.spec.securityContext) && has(object.spec.securityContext.windowsOptions) && (has(object.spec.securityContext.windowsOptions.gmsaCredentialSpecName) || has(object.spec.securityContext.windowsOptions.gmsaCredentialSpec))) || (has(object.spec.containers) && object.spec.containers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec))))) || (has(object.spec.initContainers) && object.spec.initContainers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec))))) || (has(object.spec.ephemeralContainers) && object.spec.ephemeralContainers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec)))))))) || (oldObject != null && (has(oldObject.spec) && ((has(oldObject.spec.securityContext) && has(oldObject.spec.securityContext.windowsOptions) && (has(oldObject.spec.securityContext.windowsOptions.gmsaCredentialSpecName) || has(oldObject.spec.securityContext.windowsOptions.gmsaCredentialSpec))) || (has(oldObject.spec.containers) && oldObject.spec.containers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec))))) || (has(oldObject.spec.initContainers) && oldObject.spec.initContainers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec))))) || (has(oldObject.spec.ephemeralContainers) && oldObject.spec.ephemeralContainers.exists(c, (has(c.securityContext) && has(c.securityContext.windowsOptions) && (has(c.securityContext.windowsOptions.gmsaCredentialSpecName) || has(c.securityContext.windowsOptions.gmsaCredentialSpec))))))))
{{- end }}

{{/* The Secret the Deployment mounts. */}}
{{- define "gmsa.servingSecret" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.secretName is required with certificates.mode=secret" .Values.certificates.secretName -}}
{{- else -}}
{{- printf "%s-tls" .Values.name -}}
{{- end -}}
{{- end }}
