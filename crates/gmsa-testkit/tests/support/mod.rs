//! Plain HTTP helpers for talking to the fake API server the way any client would.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// Every wait in these tests is bounded by this unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    /// The body as JSON; `Null` when it is empty or not JSON.
    pub body: Value,
    pub text: String,
}

impl Http {
    pub fn new(base: String) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
        }
    }

    async fn start(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> http::Response<Incoming> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(bytes))
            .expect("request");
        tokio::time::timeout(WAIT, self.client.request(request))
            .await
            .expect("response within the wait")
            .expect("HTTP exchange")
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let response = self.start(method, path, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .expect("body within the wait")
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Opens a watch; the response head must arrive within the wait.
    pub async fn watch(&self, path: &str) -> Events {
        let response = self.start(Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "watch {path}");
        Events {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }
}

/// A watch response read one newline-delimited event at a time.
pub struct Events {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event, or `None` when the server ended the stream. Panics after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no watch event within {within:?}"))
    }

    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT).await
    }

    async fn next_event(&mut self) -> Option<Value> {
        self.next_or_break()
            .await
            .map(|r| r.unwrap_or_else(|e| panic!("watch body broke: {e}")))
    }

    async fn next_or_break(&mut self) -> Option<Result<Value, hyper::Error>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let event = serde_json::from_slice(&line).expect("each line is one JSON event");
                return Some(Ok(event));
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Reads until the stream ends or breaks; true if it broke. Panics after `within`.
    pub async fn ends_or_breaks(&mut self, within: Duration) -> bool {
        let read = async {
            loop {
                match self.next_or_break().await {
                    None => return false,
                    Some(Err(_)) => return true,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("watch neither ended nor broke within {within:?}"))
    }

    /// Events until the stream ends; panics if it does not end within `within`.
    pub async fn until_end(&mut self, within: Duration) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(event) => events.push(event),
                None => return events,
            }
        }
    }
}

pub fn credspec(name: &str, account: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": { "name": name },
        "credspec": {
            "ActiveDirectoryConfig": {
                "GroupManagedServiceAccounts": [
                    { "Name": account, "Scope": "CONTOSO" },
                    { "Name": account, "Scope": "contoso.com" }
                ]
            },
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com",
                "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                "MachineAccountName": account,
                "NetBiosName": "CONTOSO",
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
            }
        }
    })
}

/// The grant the reference documentation sets up: `use` of one spec by `default/default`.
pub fn webapp1_grant() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": { "name": "webapp1-role" },
            "rules": [{
                "apiGroups": ["windows.k8s.io"],
                "resources": ["gmsacredentialspecs"],
                "verbs": ["use"],
                "resourceNames": ["gmsa-webapp1"]
            }]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": "allow-default-svc-account-read-on-gmsa-WebApp1", "namespace": "default" },
            "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": "default" }],
            "roleRef": { "kind": "ClusterRole", "name": "webapp1-role", "apiGroup": "rbac.authorization.k8s.io" }
        }),
    ]
}

pub fn rv_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .parse()
        .expect("resourceVersion is a number")
}
