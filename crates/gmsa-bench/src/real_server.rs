//! What the benchmarks on a real kube-apiserver share.

use gmsa_testkit::real_cluster::WEBHOOK_USER;
use serde_json::{json, Value};

/// The webhook's ClusterRole as install renders it, bound to the test cluster's webhook user.
pub fn webhook_user_grant() -> [Value; 2] {
    let settings = gmsa_deploy::Settings::default();
    let role =
        serde_json::to_value(gmsa_deploy::webhook_cluster_role(&settings)).unwrap_or_default();
    let name = role["metadata"]["name"].clone();
    let rbac = "rbac.authorization.k8s.io";
    [
        json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": role["rules"]}),
        json!({"apiVersion": format!("{rbac}/v1"), "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": name},
               "subjects": [{"apiGroup": rbac, "kind": "User", "name": WEBHOOK_USER}]}),
    ]
}
