//! One object read for a check, by kind and name; the error is already a finding's detail.

use kube::Client;
use serde_json::Value;

use crate::apply::api;

/// The object as JSON, `None` when it does not exist.
pub(super) async fn get(
    client: &Client,
    info: &gmsa_deploy::KindInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, String> {
    match api(client, info, ns).get_opt(name).await {
        Ok(found) => Ok(found.and_then(|o| serde_json::to_value(o).ok())),
        Err(e) => Err(format!("cannot read {}: {e}", info.object_name(name))),
    }
}
