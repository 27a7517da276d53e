//! What the handlers and the test-side handle share: the store, the watch channel, and the
//! test controls (counters, latency, injected failures) every request passes through.

use super::*;

/// Why a write was refused before it reached the store.
#[derive(Debug)]
pub(crate) enum Rejection {
    MissingName,
    Malformed(String),
}

/// State shared by the handlers and the test-side handle.
pub(crate) struct Shared {
    pub options: FakeOptions,
    pub store: Mutex<Store>,
    /// Every change, in resourceVersion order; sent while the store is locked.
    pub changes: broadcast::Sender<Arc<Change>>,
    /// The store's current resourceVersion, for requests waiting to see a version.
    pub versions: signal::Sender<u64>,
    /// Bumped to end every open watch.
    pub cuts: signal::Sender<u64>,
    pub shutdown: signal::Sender<bool>,
    pub controls: Mutex<Controls>,
    pub open_watches: Mutex<BTreeMap<&'static str, usize>>,
    /// While set, connections are dropped (see `reachability`).
    pub unreachable: Arc<AtomicBool>,
}

/// Test controls: counters, latency and failure injection.
#[derive(Debug, Default)]
pub(crate) struct Controls {
    pub(crate) counts: BTreeMap<String, u64>,
    pub(crate) latency: Duration,
    pub(crate) failures: Vec<FailureRule>,
    pub(crate) down: bool,
}

#[derive(Debug)]
pub(crate) struct FailureRule {
    pub(crate) resource: Option<String>,
    /// `get`, `list`, `watch`, …; any when `None`.
    pub(crate) verb: Option<String>,
    pub(crate) remaining: u32,
    pub(crate) code: u16,
}

/// What happens to a request before it is served.
pub(crate) struct Admission {
    pub latency: Duration,
    pub fail_with: Option<u16>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(options: FakeOptions) -> Self {
        let store = Store::default();
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        let (versions, _) = signal::channel(store.resource_version());
        Self {
            options,
            store: Mutex::new(store),
            changes,
            versions,
            cuts: signal::channel(0).0,
            shutdown: signal::channel(false).0,
            controls: Mutex::new(Controls::default()),
            open_watches: Mutex::new(BTreeMap::new()),
            unreachable: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts a request and decides its latency and whether it fails.
    pub fn admit(&self, verb: &str, resource: &str) -> Admission {
        let mut controls = lock(&self.controls);
        *controls
            .counts
            .entry(format!("{verb} {resource}"))
            .or_default() += 1;
        let latency = controls.latency;
        if controls.down {
            return Admission {
                latency,
                fail_with: Some(503),
            };
        }
        let rule = controls.failures.iter_mut().find(|r| {
            r.remaining > 0
                && r.resource.as_deref().is_none_or(|x| x == resource)
                && r.verb.as_deref().is_none_or(|v| v == verb)
        });
        let fail_with = rule.map(|r| {
            r.remaining -= 1;
            r.code
        });
        controls.failures.retain(|r| r.remaining > 0);
        Admission { latency, fail_with }
    }

    /// Checks an object for a write and works out where it lives. `namespace` is the request's
    /// namespace, used when the object names none.
    pub fn prepare(
        &self,
        rt: &ResourceType,
        mut object: Map<String, Value>,
        namespace: Option<&str>,
    ) -> Result<(Key, Map<String, Value>), Rejection> {
        let meta_text = |object: &Map<String, Value>, field: &str| {
            object
                .get("metadata")
                .and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut name = meta_text(&object, "name");
        if name.is_empty() {
            let prefix = meta_text(&object, "generateName");
            if prefix.is_empty() {
                return Err(Rejection::MissingName);
            }
            name = format!("{prefix}{}", random_suffix());
            if let Some(Value::Object(m)) = object.get_mut("metadata") {
                m.insert("name".into(), json!(name));
            }
        }
        let namespace = if rt.namespaced {
            Some(meta_text(&object, "namespace"))
                .filter(|ns| !ns.is_empty())
                .or(namespace.map(String::from))
                .unwrap_or_else(|| "default".into())
        } else {
            String::new()
        };
        check_shape(rt, &object).map_err(Rejection::Malformed)?;
        Ok((
            Key {
                resource: rt.plural,
                namespace,
                name,
            },
            object,
        ))
    }

    /// Writes and tells watchers.
    pub fn commit(
        &self,
        rt: &ResourceType,
        key: Key,
        object: Map<String, Value>,
        mode: WriteMode,
    ) -> Result<Written, WriteError> {
        let mut store = lock(&self.store);
        let written = store.write(rt, key, object, mode, &now(), new_uid)?;
        if let Some(change) = &written.change {
            self.publish(&store, change.clone());
        }
        Ok(written)
    }

    /// Deletes and tells watchers; the last state of the object, if it existed.
    pub fn remove(&self, rt: &ResourceType, key: &Key) -> Option<Arc<Value>> {
        let mut store = lock(&self.store);
        let change = store.delete(rt, key)?;
        let last = change.prev.clone();
        self.publish(&store, change);
        last
    }

    pub(crate) fn publish(&self, store: &Store, change: Change) {
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(Arc::new(change));
        self.versions.send_replace(store.resource_version());
    }

    pub fn cut_watches(&self) {
        self.cuts.send_modify(|generation| *generation += 1);
    }
}

/// RBAC objects are decoded by the authorizer on every review; refuse what it could not read,
/// as the real server refuses what does not decode into the typed object.
pub(crate) fn check_shape(rt: &ResourceType, object: &Map<String, Value>) -> Result<(), String> {
    use gmsa_core::rbac::{Binding, Role};
    let value = Value::Object(object.clone());
    let result = match rt.kind {
        "ClusterRole" | "Role" => serde_json::from_value::<Role>(value).map(drop),
        "ClusterRoleBinding" | "RoleBinding" => serde_json::from_value::<Binding>(value).map(drop),
        _ => Ok(()),
    };
    result.map_err(|e| e.to_string())
}

pub(crate) fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A random (version 4) UUID, as the server gives every object.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The five characters `generateName` gets, from the alphabet the real server uses.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}
