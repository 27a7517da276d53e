//! A real single-node Kubernetes cluster on this machine, for testing what we ship the way
//! users run it: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
//! (with runc and the bridge CNI plugin), kube-proxy and a kubelet, as plain processes, in
//! the style of Kubernetes' `hack/local-up-cluster.sh`. Images are imported from OCI archives
//! (no registry, no Docker). Pods reach the API server through the `kubernetes` Service, as in
//! any cluster.
//!
//! No packet for the pod or service ranges leaves the machine: [`HostGuard`] routes both
//! nowhere else and rejects them on every uplink before anything starts, pods get a resolver
//! that answers nothing, nothing is masqueraded and forwarding out of the pod network is
//! dropped; the guard goes last on teardown. Teardown leaves the host as it was found
//! (processes, mounts, cgroups, interfaces, packet filter, sysctls, host paths).
//!
//! Binaries: `hack/build-kube-node.sh` (kubelet, controller-manager, scheduler, kube-proxy,
//! and containerd, runc and the CNI plugins from Debian), the API server and etcd of
//! [`ServerVersion::Current`]. One node cluster per machine at a time; create and drop it on
//! one thread (a `#[test]` function does).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::real_cluster::{
    cache_dir, env_path, free_port, kubeconfig, random_token, ApiServerOptions, ClientCa,
    ClusterError, ManagedProcess, RealCluster, ServerVersion,
};

mod config;
mod host;
mod images;
mod load;
mod processes;

use processes::NodeProcess;

pub use load::{PodLoad, Tally};

pub use config::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use host::{
    unsupported_reason, wait_until_free, HostGuard, KUBERNETES_SERVICE_IP, NODE_IP, POD_CIDR,
    SERVICE_CIDR, STATE_DIR,
};

/// The node's name.
pub const NODE_NAME: &str = "gmsa-node";
/// Environment variable naming the directory `hack/build-kube-node.sh` printed.
pub const NODE_DIR_ENV: &str = "GMSA_KUBE_NODE_DIR";
/// Environment variable naming our image's OCI archive (`hack/build-image.sh` prints it).
pub const IMAGE_ARCHIVE_ENV: &str = "GMSA_IMAGE_ARCHIVE";

/// How long the node gets to report Ready, and the `default` ServiceAccount to appear.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository's `hack/` directory (scripts the kit runs: the image writer).
fn hack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack")
}

/// The node binaries' directory: `$GMSA_KUBE_NODE_DIR`, else the build script's cache path.
pub fn node_dir() -> PathBuf {
    env_path(NODE_DIR_ENV).unwrap_or_else(|| {
        cache_dir().join(format!(
            "kube-node-{}",
            ServerVersion::Current.git_version()
        ))
    })
}

/// Our image's OCI archive, from `$GMSA_IMAGE_ARCHIVE`.
pub fn image_archive() -> Result<PathBuf, ClusterError> {
    env_path(IMAGE_ARCHIVE_ENV)
        .filter(|p| p.is_file())
        .ok_or_else(|| ClusterError::Missing {
            what: format!("{IMAGE_ARCHIVE_ENV} does not name an image archive"),
            hint: "run hack/build-image.sh (it prints the archive's path) and set it; \
                   hack/test.sh does both"
                .into(),
        })
}

/// A running single-node cluster; torn down, host restored, on drop.
#[derive(Debug)]
pub struct NodeCluster {
    /// In start order: containerd, controller-manager, scheduler, kube-proxy, kubelet.
    processes: Vec<NodeProcess>,
    cluster: Option<RealCluster>,
    ctr: PathBuf,
    containerd_socket: PathBuf,
    dir: PathBuf,
    startup: Duration,
    // Last: the directory goes after the guard is restored, which needs its path.
    guard: HostGuard,
    tempdir: Option<tempfile::TempDir>,
}

impl NodeCluster {
    /// Builds nothing: starts the whole cluster from the cached binaries, imports the pause
    /// and busybox images, waits for the node to be Ready and the `default` ServiceAccount.
    /// Call [`unsupported_reason`] first to skip where the host cannot run a node.
    pub fn start() -> Result<Self, ClusterError> {
        let began = Instant::now();
        let bin = node_dir();
        for name in [
            "kubelet",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
        ] {
            if !bin.join(name).is_file() {
                return Err(ClusterError::Missing {
                    what: format!("{} not found", bin.join(name).display()),
                    hint: format!(
                        "run hack/build-kube-node.sh (it builds and caches the node binaries) \
                         or set {NODE_DIR_ENV}"
                    ),
                });
            }
        }
        let runtime = bin.join("runtime");

        let tempdir = tempfile::Builder::new()
            .prefix("gmsa-node-")
            .tempdir()
            .map_err(host::io("creating the node's directory".into()))?;
        let dir = tempdir.path().to_path_buf();
        // The guard before anything can send a packet.
        let guard = HostGuard::install(&dir)?;
        let mut node = Self {
            processes: Vec::new(),
            cluster: None,
            ctr: runtime.join("usr/bin/ctr"),
            containerd_socket: dir.join("containerd/containerd.sock"),
            dir: dir.clone(),
            startup: Duration::ZERO,
            guard,
            tempdir: Some(tempdir),
        };
        node.bring_up(&bin, &runtime)?;
        node.startup = began.elapsed();
        Ok(node)
    }

    fn bring_up(&mut self, bin: &Path, runtime: &Path) -> Result<(), ClusterError> {
        let dir = self.dir.clone();
        for sub in [
            "containerd",
            "cni/net.d",
            "cni/ipam",
            "kubelet/root",
            "kubelet/pki",
            "kubelet/pod-logs",
            "kubelet/volume-plugins",
            "flex",
            "images",
        ] {
            fs::create_dir_all(dir.join(sub)).map_err(host::io(format!("creating {sub}")))?;
        }
        let kubelet_ca = ClientCa::generate(&dir, "kubelet")?;
        let (apiserver_client_cert, apiserver_client_key) = kubelet_ca.client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        )?;

        let node_user = format!("system:node:{NODE_NAME}");
        let identities = [
            (
                "kube-controller-manager",
                "system:kube-controller-manager",
                "",
            ),
            ("kube-scheduler", "system:kube-scheduler", ""),
            ("kube-proxy", "system:kube-proxy", ""),
            ("kubelet", node_user.as_str(), "system:nodes"),
        ];
        let mut tokens = Vec::new();
        let mut options = ApiServerOptions {
            address: NODE_IP.parse().map_err(|_| ClusterError::Missing {
                what: "the node IP".into(),
                hint: NODE_IP.into(),
            })?,
            extra_names: vec![
                KUBERNETES_SERVICE_IP.into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            extra_tokens: Vec::new(),
            extra_args: vec![
                "--enable-aggregator-routing=true".into(),
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!(
                    "--kubelet-client-certificate={}",
                    apiserver_client_cert.display()
                ),
                format!("--kubelet-client-key={}", apiserver_client_key.display()),
                "--allow-privileged=true".into(),
            ],
            service_cidr: SERVICE_CIDR.into(),
            authorization_mode: "Node,RBAC".into(),
            create_default_service_account: false,
        };
        for (file, user, group) in &identities {
            let token = random_token()?;
            let groups = if group.is_empty() {
                vec!["system:authenticated".to_string()]
            } else {
                vec![group.to_string()]
            };
            options
                .extra_tokens
                .push((token.clone(), user.to_string(), groups));
            tokens.push((*file, user.to_string(), token));
        }

        let cluster = RealCluster::start_with(ServerVersion::Current, &options)?;
        for (file, user, token) in &tokens {
            fs::write(
                dir.join(format!("{file}.kubeconfig")),
                kubeconfig(cluster.url(), cluster.ca_pem(), user, token),
            )
            .map_err(host::io(format!("writing {file}.kubeconfig")))?;
        }
        let apiserver_ca = cluster.ca_path().to_path_buf();
        let sa_key = cluster.service_account_key().to_path_buf();
        self.cluster = Some(cluster);

        fs::write(
            dir.join("containerd/config.toml"),
            config::containerd(&dir, runtime),
        )
        .map_err(host::io("writing containerd's configuration".into()))?;
        fs::write(
            dir.join("cni/net.d/10-gmsa-pods.conflist"),
            config::cni_network(&dir),
        )
        .map_err(host::io("writing the CNI configuration".into()))?;
        fs::write(dir.join("resolv.conf"), config::RESOLV_CONF)
            .map_err(host::io("writing resolv.conf".into()))?;
        let kubelet_config = dir.join("kubelet/config.yaml");
        fs::write(
            &kubelet_config,
            config::kubelet(&dir, &kubelet_ca.ca_path, free_port()?, free_port()?),
        )
        .map_err(host::io("writing the kubelet configuration".into()))?;

        self.processes = processes::node_processes(&processes::Paths {
            dir: &dir,
            bin,
            runtime,
            kubelet_config: &kubelet_config,
            apiserver_ca: &apiserver_ca,
            service_account_key: &sa_key,
        })?;
        self.start_node()?;
        self.import_base_images(bin)?;
        self.wait_ready()
    }

    /// Starts containerd (waiting for its socket), the controllers, kube-proxy and the
    /// kubelet; the control plane must be up.
    fn start_node(&mut self) -> Result<(), ClusterError> {
        let dir = self.dir.clone();
        for index in 0..self.processes.len() {
            self.processes[index].start(&dir)?;
            if self.processes[index].name == "containerd" {
                self.wait_containerd()?;
            }
        }
        Ok(())
    }

    fn wait_containerd(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.processes[0].check()?;
            if self.ctr_run(&["version"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady {
                    what: "containerd".into(),
                    timeout: Duration::from_secs(30),
                    last: String::new(),
                    log_tail: self.log_tail("containerd", 30),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the node to be Ready and the `default` ServiceAccount to exist.
    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        let jsonpath = r#"-o=jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
        loop {
            for process in &mut self.processes {
                process.check()?;
            }
            let ready = self
                .api()
                .kubectl(&["get", "node", NODE_NAME, jsonpath], None);
            let sa = self
                .api()
                .kubectl(&["get", "serviceaccount", "default", "-o", "name"], None);
            if ready.status.success()
                && String::from_utf8_lossy(&ready.stdout).trim() == "True"
                && sa.status.success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady {
                    what: format!("node {NODE_NAME}"),
                    timeout: NODE_READY_TIMEOUT,
                    last: format!(
                        "Ready={} default SA: {}",
                        String::from_utf8_lossy(&ready.stdout),
                        String::from_utf8_lossy(&sa.stderr)
                    ),
                    log_tail: self.log_tail("kubelet", 30),
                });
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The API server side: kubectl, requests, kubeconfigs, as for [`RealCluster`].
    pub fn api(&self) -> &RealCluster {
        match &self.cluster {
            Some(cluster) => cluster,
            None => unreachable!("the control plane is set before the node starts"),
        }
    }

    /// How long [`NodeCluster::start`] took, up to a Ready node.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The node's directory (configurations, logs, containerd's state).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of one process's log (`kubelet`, `containerd`, ...).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let log = fs::read(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Resident memory of every process of the cluster (control plane, node, shims,
    /// containers), in KiB: what running a node here costs.
    pub fn resident_kib(&self) -> u64 {
        let mut pids: Vec<u32> = self
            .processes
            .iter()
            .filter_map(|p| p.running.as_ref().map(ManagedProcess::pid))
            .collect();
        pids.push(self.api().apiserver_pid());
        pids.push(self.api().etcd_pid());
        let dir = self.dir.display().to_string();
        let mut total = 0;
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let ours = pids.contains(&pid)
                    || String::from_utf8_lossy(&cmdline).contains(&dir)
                    || in_pods_cgroup(pid);
                if ours {
                    total += resident_of(pid);
                }
            }
        }
        total
    }

    /// Stops every process, as a machine stopping would: the kubelet and node services, the
    /// pods' processes and shims, then the API server and etcd. Their state stays.
    pub fn stop_all(&mut self) {
        for process in self.processes.iter_mut().rev() {
            process.stop();
        }
        host::kill_leftovers(&self.dir);
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.stop_control_plane();
        }
    }

    /// Starts etcd and the API server again (after [`NodeCluster::stop_all`]).
    pub fn start_control_plane(&mut self) -> Result<(), ClusterError> {
        match self.cluster.as_mut() {
            Some(cluster) => cluster.start_control_plane(),
            None => Ok(()),
        }
    }

    /// Starts containerd, the controllers, kube-proxy and the kubelet again and waits for
    /// the node to be Ready (after [`NodeCluster::start_control_plane`]).
    pub fn start_node_again(&mut self) -> Result<(), ClusterError> {
        self.start_node()?;
        self.wait_ready()
    }

    /// Fails with the log of the first node process that has exited.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        for process in &mut self.processes {
            process.check()?;
        }
        Ok(())
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            for name in ["kubelet", "containerd", "kube-controller-manager"] {
                eprintln!("--- {name} ---\n{}", self.log_tail(name, 20));
            }
        }
        for process in self.processes.iter_mut().rev() {
            process.stop();
        }
        host::kill_leftovers(&self.dir);
        // The API server and etcd next; the guard and host restore last of all.
        self.cluster = None;
        self.guard.restore();
        if std::env::var("GMSA_KEEP_NODE_DIR").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.tempdir.take() {
                eprintln!("kept the node's directory: {}", dir.keep().display());
            }
        }
    }
}

fn in_pods_cgroup(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains("/kubepods"))
}

/// A process's resident set, KiB (0 when it is gone).
pub(crate) fn resident_of(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
