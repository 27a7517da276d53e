//! Reads every pod and pod controller in the cluster and keeps those that reference a
//! credential spec ([`references`](super::references) decides which).

use kube::api::ListParams;
use kube::Client;

use super::references::{find, fold, Reference, WorkloadKind};
use crate::apply::{api, is_not_found};

/// The references, folded into their controllers, and what could not be read (a kind the
/// user may not list). A kind the server does not serve (CronJob `batch/v1` before 1.21)
/// falls back to its older API version.
pub async fn read(client: &Client) -> (Vec<Reference>, Vec<String>) {
    let mut found = Vec::new();
    let mut unread = Vec::new();
    for kind in WorkloadKind::ALL {
        for info in kind.infos() {
            match api(client, info, None).list(&ListParams::default()).await {
                Ok(list) => {
                    found.extend(list.items.iter().filter_map(|item| {
                        serde_json::to_value(item).ok().and_then(|o| find(kind, &o))
                    }));
                    break;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    let plural = info.object_name("").trim_end_matches('/').to_string();
                    unread.push(format!("cannot list {plural}: {e}"));
                    break;
                }
            }
        }
    }
    (fold(found), unread)
}
