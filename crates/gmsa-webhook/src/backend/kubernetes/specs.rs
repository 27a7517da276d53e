//! The credential-spec watch cache. It keeps the ready-made `Arc<CredentialSpec>` (contents
//! encoded once, when the object arrives), so an admission that hits the cache only clones a
//! pointer.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use gmsa_core::CredentialSpec;
use gmsa_kube::watch::{self, Change};
use kube::api::{Api, DynamicObject};
use kube::Client;

use super::client::credential_spec_from_object;
use super::readiness::{Readiness, Source};

/// Credential specs by name, as the watch last saw them.
#[derive(Default)]
pub(super) struct SpecCache {
    specs: RwLock<HashMap<String, Arc<CredentialSpec>>>,
}

impl SpecCache {
    /// The cached spec, if the watch has seen it.
    pub(super) fn get(&self, name: &str) -> Option<Arc<CredentialSpec>> {
        self.specs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// How many specs are cached.
    pub(super) fn len(&self) -> usize {
        self.specs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn insert(&self, spec: Arc<CredentialSpec>) {
        self.specs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), spec);
    }

    fn remove(&self, name: &str) {
        self.specs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn replace(&self, specs: HashMap<String, Arc<CredentialSpec>>) {
        *self.specs.write().unwrap_or_else(PoisonError::into_inner) = specs;
    }

    /// Keeps the cache in step with the cluster until the task is aborted. Errors are logged
    /// and retried with backoff; a cut watch resumes, and an expired one re-lists by itself.
    pub(super) async fn run_watch(self: Arc<Self>, client: Client, readiness: Arc<Readiness>) {
        let api: Api<DynamicObject> = Api::all_with(client, &gmsa_kube::credential_spec_resource());
        let mut changes = pin!(watch::changes(api));
        while let Some(change) = changes.next().await {
            readiness.watched(Source::CredentialSpecs, change.health());
            match change {
                Change::Listing => {}
                Change::Listed(objects) => {
                    // Swapped in whole, so lookups never see half a list.
                    self.replace(
                        objects
                            .into_iter()
                            .filter_map(parse)
                            .map(|spec| (spec.name.clone(), spec))
                            .collect(),
                    );
                    tracing::debug!(count = self.len(), "credential specs listed");
                    readiness.mark(Source::CredentialSpecs);
                }
                Change::Applied(object) => {
                    if let Some(spec) = parse(object) {
                        tracing::debug!(name = %spec.name, "credential spec changed");
                        self.insert(spec);
                    }
                }
                Change::Deleted(object) => {
                    if let Some(name) = object.metadata.name.as_deref() {
                        tracing::debug!(name, "credential spec deleted");
                        self.remove(name);
                    }
                }
                Change::Failed(e) => {
                    tracing::warn!(error = %e, "credential-spec watch failed; retrying with backoff");
                }
            }
        }
        tracing::error!("credential-spec watch ended; the cache no longer follows the cluster");
    }
}

fn parse(object: DynamicObject) -> Option<Arc<CredentialSpec>> {
    let name = object.metadata.name.clone().unwrap_or_default();
    match credential_spec_from_object(object) {
        Ok(spec) => Some(Arc::new(spec)),
        Err(e) => {
            tracing::warn!(name, error = %e, "ignoring a GMSACredentialSpec the cache cannot use");
            None
        }
    }
}
