//! Names the rendered objects use, defined once: the CLI, the Helm chart's tests and the
//! doctor all refer to these.

/// Namespace the webhook is installed into by default.
pub const DEFAULT_NAMESPACE: &str = "gmsa-system";
/// Name of the Deployment, Service, ServiceAccount and ClusterRole; the webhook configurations
/// add a suffix ([`webhook_configuration`]).
pub const DEFAULT_NAME: &str = "gmsa-webhook";
/// Replicas by default: two, so a drained node or a rollout never leaves pods unadmitted.
pub const DEFAULT_REPLICAS: i32 = 2;

/// The `app.kubernetes.io/component` of the Deployment's pods in webhook mode: the Service
/// and the PodDisruptionBudget select these only.
pub const WEBHOOK_ROLE: &str = "webhook";
/// The `app.kubernetes.io/component` of the keeper's pods (policy mode).
pub const KEEPER_ROLE: &str = "keeper";

/// The `app.kubernetes.io/name` of everything rendered.
pub const APP_NAME: &str = "gmsa-webhook";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";

/// Label of namespaces the webhooks skip (`gmsa-webhook: disabled`); the webhook's own
/// namespace carries it.
pub const DISABLE_LABEL: &str = "gmsa-webhook";
pub const DISABLE_VALUE: &str = "disabled";
pub use gmsa_core::names::NAMESPACE_NAME_LABEL;
/// Label that makes a ClusterRole's rules part of the built-in `view` role.
pub const AGGREGATE_TO_VIEW_LABEL: &str = "rbac.authorization.k8s.io/aggregate-to-view";
/// cert-manager's CA injector reads this annotation on webhook configurations.
pub const CERT_MANAGER_INJECT_ANNOTATION: &str = "cert-manager.io/inject-ca-from";
/// The annotation a CRD in a `*.k8s.io` group needs.
pub const API_APPROVED_ANNOTATION: &str = "api-approved.kubernetes.io";
pub const API_APPROVED_VALUE: &str = "https://github.com/kubernetes/enhancements/pull/1158";

/// Webhook names, as the API server reports them in denials.
pub const MUTATING_WEBHOOK: &str = "pod-mutation.gmsa.windows.k8s.io";
pub const VALIDATING_WEBHOOK: &str = "pod-validation.gmsa.windows.k8s.io";
pub const CREDSPEC_WEBHOOK: &str = "credspec-validation.gmsa.windows.k8s.io";
/// Name of the CEL match condition that sends only pods mentioning GMSA.
pub const MATCH_CONDITION_NAME: &str = "mentions-gmsa";
/// Seconds the API server waits for an answer.
pub const WEBHOOK_TIMEOUT_SECONDS: i32 = 5;

/// The port the container listens on (unprivileged: the container drops every capability).
pub const CONTAINER_PORT: i32 = 8443;
/// The Service port the API server calls.
pub const SERVICE_PORT: i32 = 443;
pub const PORT_NAME: &str = "https";
pub const CONTAINER_NAME: &str = "webhook";
/// The container of the keeper's Deployment (policy mode).
pub const KEEPER_CONTAINER_NAME: &str = "keeper";
/// Where the serving certificate's Secret is mounted.
pub const TLS_MOUNT_PATH: &str = "/etc/gmsa-webhook/tls";
pub const TLS_VOLUME: &str = "tls";
/// Keys of a `kubernetes.io/tls` Secret, plus the CA that cert-manager also writes; the
/// self-signed Secret's other keys and its annotation.
pub use gmsa_tls::self_signed::{
    CA_CERT_KEY, NEXT_CA_KEY, NEXT_CERT_KEY, NEXT_KEY_KEY, PREVIOUS_CA_KEY,
    PREVIOUS_CA_UNTIL_ANNOTATION, TLS_CERT_KEY, TLS_KEY_KEY,
};
/// The user and group of the distroless `nonroot` image.
pub const NON_ROOT_UID: i64 = 65532;

/// The registry key the node setup sets (documented for SMB access by host name).
pub const HNS_STATE_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\hns\State";
pub const COMPARTMENT_NAMESPACE_VALUE: &str = "EnableCompartmentNamespace";

/// Name of both webhook configurations. It differs from `name` on purpose: the reference
/// webhook names its configurations after its Deployment (`gmsa-webhook` by default), and an
/// apply onto those would merge our webhooks into its configurations, so the API server would
/// call both and retiring one would delete the other.
pub fn webhook_configuration(name: &str) -> String {
    format!("{name}-admission")
}

/// Name of the Role (and RoleBinding) that lets the replicas renew the self-signed Secret.
pub fn certificates_role(name: &str) -> String {
    format!("{name}-certificates")
}

/// Name of the Secret holding the serving certificate.
pub fn tls_secret(name: &str) -> String {
    format!("{name}-tls")
}

/// Name of cert-manager's self-signed Issuer: it signs only the CA.
pub fn issuer(name: &str) -> String {
    format!("{name}-selfsigned")
}

/// Name of cert-manager's CA Certificate and of its Secret: the CA the webhook configurations
/// trust, which outlives every serving certificate it signs.
pub fn ca_certificate(name: &str) -> String {
    format!("{name}-ca")
}

/// Name of cert-manager's CA Issuer, which signs the serving certificate with that CA.
pub fn ca_issuer(name: &str) -> String {
    format!("{name}-ca")
}

/// Name of the ConfigMap holding the client CA (`install --client-ca`).
pub fn client_ca(name: &str) -> String {
    format!("{name}-client-ca")
}

/// Where the client CA's ConfigMap is mounted, and the key it is under.
pub const CLIENT_CA_MOUNT_PATH: &str = "/etc/gmsa-webhook/client-ca";
pub const CLIENT_CA_VOLUME: &str = "client-ca";
/// The plain-HTTP probe port (`--probe-port`) used with a client CA.
pub const PROBE_PORT: i32 = 8081;
pub const PROBE_PORT_NAME: &str = "probes";

/// Name of the aggregated view ClusterRole.
pub fn view_role(name: &str) -> String {
    format!("{name}-view")
}

/// Name of the node-setup DaemonSet.
pub fn node_setup(name: &str) -> String {
    format!("{name}-node-setup")
}

/// The DNS names the API server uses for the Service.
pub fn service_dns_names(name: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ]
}
