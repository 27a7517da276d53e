//! Names fixed by Kubernetes, by the reference webhook or by our own contract. One place each.

/// API group of the credential-spec resource.
pub const GROUP: &str = "windows.k8s.io";
/// The version we read and serve.
pub const VERSION: &str = "v1";
/// The older version that clusters may still store objects in.
pub const VERSION_ALPHA: &str = "v1alpha1";
/// Kind of the credential-spec resource.
pub const KIND: &str = "GMSACredentialSpec";
/// Plural resource name, used by RBAC rules and API paths.
pub const RESOURCE: &str = "gmsacredentialspecs";
/// The RBAC verb that lets a service account put a credential spec in its pods.
pub const USE_VERB: &str = "use";
/// The key under which a `GMSACredentialSpec` keeps its contents.
pub const CREDSPEC_KEY: &str = "credspec";

/// Policy mode's own API: one `GMSANamespaceContents` object per namespace holds the encoded
/// contents of the credential specs its service accounts may `use`, which the admission
/// policies read as their parameter (`gmsa_core::contents`).
pub mod contents {
    /// Not `windows.k8s.io`: that group is the reference's API.
    pub const GROUP: &str = "policy.gmsa.dev";
    pub const VERSION: &str = "v1alpha1";
    pub const KIND: &str = "GMSANamespaceContents";
    pub const RESOURCE: &str = "gmsanamespacecontents";
    /// The field holding the entries: spec name to encoded contents.
    pub const FIELD: &str = "contents";
    /// Held on every credential spec while some namespace's object may hold its contents, so a
    /// deleted spec stays (terminating, still usable) until the keeper has withdrawn them, and
    /// a spec created again under its name never meets the old contents.
    pub const FINALIZER: &str = "policy.gmsa.dev/withdraw-contents";

    /// The validating policy (and binding) of the install named `install` that refuses GMSA
    /// places in every namespace the keeper has not listed in its selector.
    pub fn elsewhere_policy(install: &str) -> String {
        format!("{install}-elsewhere")
    }
}

/// The label the API server puts on every namespace (1.21+), its name as value.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Webhook paths, as the reference serves them plus our additions.
pub mod paths {
    pub const MUTATE: &str = "/mutate";
    pub const VALIDATE: &str = "/validate";
    pub const HEALTH: &str = "/health";
    pub const READYZ: &str = "/readyz";
    pub const INFO: &str = "/info";
    pub const METRICS: &str = "/metrics";
    /// Checks `GMSACredentialSpec` objects on CREATE and UPDATE (ours).
    pub const VALIDATE_CREDSPEC: &str = "/validate-credspec";
}

/// Groups every service account belongs to, besides its namespace's group.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The service account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The subresource through which ephemeral containers are added to a running pod.
pub const EPHEMERAL_CONTAINERS_SUBRESOURCE: &str = "ephemeralcontainers";

/// The Kubernetes user name of a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups the API server gives a service account's token.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        SERVICE_ACCOUNTS_GROUP.to_string(),
        format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        AUTHENTICATED_GROUP.to_string(),
    ]
}
