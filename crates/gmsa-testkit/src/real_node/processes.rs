//! The node's processes: containerd, the controllers, kube-proxy and the kubelet, each with the
//! command line it is started (and started again) with.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, ClusterError, ManagedProcess, NODE_IP, NODE_NAME, POD_CIDR};

/// Where containerd's registry requests go: a closed port on loopback (discard).
const NO_PULL_PROXY: &str = "http://127.0.0.1:9";

/// A process of the node with its command line, to stop and start again.
#[derive(Debug)]
pub(super) struct NodeProcess {
    pub(super) name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub(super) running: Option<ManagedProcess>,
}

impl NodeProcess {
    pub(super) fn start(&mut self, dir: &Path) -> Result<(), ClusterError> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let process =
            ManagedProcess::spawn(self.name, command, dir.join(format!("{}.log", self.name)))?;
        self.running = Some(process);
        Ok(())
    }

    pub(super) fn stop(&mut self) {
        if let Some(mut process) = self.running.take() {
            process.stop();
        }
    }

    pub(super) fn check(&mut self) -> Result<(), ClusterError> {
        match self.running.as_mut() {
            Some(process) => process.check_running(),
            None => Ok(()),
        }
    }
}

/// What the command lines name.
pub(super) struct Paths<'a> {
    /// The node's directory.
    pub dir: &'a Path,
    /// The Kubernetes node binaries.
    pub bin: &'a Path,
    /// containerd, runc and the CNI plugins, unpacked from Debian's packages.
    pub runtime: &'a Path,
    pub kubelet_config: &'a Path,
    pub apiserver_ca: &'a Path,
    pub service_account_key: &'a Path,
}

/// containerd, kube-controller-manager, kube-scheduler, kube-proxy and the kubelet, in start
/// order.
pub(super) fn node_processes(paths: &Paths) -> Result<Vec<NodeProcess>, ClusterError> {
    let path = format!(
        "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        paths.runtime.join("usr/bin").display(),
        paths.runtime.join("usr/sbin").display()
    );
    let kubeconfig_of = |file: &str| {
        format!(
            "--kubeconfig={}",
            paths.dir.join(format!("{file}.kubeconfig")).display()
        )
    };
    let process = |name: &'static str, program: PathBuf, args: Vec<String>| NodeProcess {
        name,
        program,
        args,
        env: vec![("PATH".into(), path.clone())],
        running: None,
    };
    let mut containerd = process(
        "containerd",
        paths.runtime.join("usr/bin/containerd"),
        vec![format!(
            "--config={}",
            paths.dir.join("containerd/config.toml").display()
        )],
    );
    // containerd never pulls: every image is imported. A missing one must fail at once
    // and on the machine, so registry requests go to a proxy on a closed loopback port
    // (no name is even resolved: the proxy would do that).
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        containerd.env.push((var.into(), NO_PULL_PROXY.into()));
    }
    for var in ["NO_PROXY", "no_proxy"] {
        containerd.env.push((var.into(), String::new()));
    }
    Ok(vec![
        containerd,
        process(
            "kube-controller-manager",
            paths.bin.join("kube-controller-manager"),
            vec![
                kubeconfig_of("kube-controller-manager"),
                "--use-service-account-credentials=true".into(),
                format!(
                    "--service-account-private-key-file={}",
                    paths.service_account_key.display()
                ),
                format!("--root-ca-file={}", paths.apiserver_ca.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                format!(
                    "--flex-volume-plugin-dir={}",
                    paths.dir.join("flex").display()
                ),
                "--controllers=*,-csrsigning,-csrapproving,-nodeipam".into(),
                "--node-monitor-grace-period=20s".into(),
                "--v=1".into(),
            ],
        ),
        process(
            "kube-scheduler",
            paths.bin.join("kube-scheduler"),
            vec![
                kubeconfig_of("kube-scheduler"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--v=1".into(),
            ],
        ),
        process(
            "kube-proxy",
            paths.bin.join("kube-proxy"),
            vec![
                kubeconfig_of("kube-proxy"),
                "--proxy-mode=iptables".into(),
                format!("--cluster-cidr={POD_CIDR}"),
                format!("--hostname-override={NODE_NAME}"),
                format!("--bind-address={NODE_IP}"),
                format!("--healthz-bind-address=127.0.0.1:{}", free_port()?),
                format!("--metrics-bind-address=127.0.0.1:{}", free_port()?),
                "--conntrack-max-per-core=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                "--iptables-localhost-nodeports=false".into(),
                format!("--nodeport-addresses={NODE_IP}/32"),
                "--oom-score-adj=0".into(),
                "--v=1".into(),
            ],
        ),
        process(
            "kubelet",
            paths.bin.join("kubelet"),
            vec![
                format!("--config={}", paths.kubelet_config.display()),
                kubeconfig_of("kubelet"),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={NODE_IP}"),
                format!("--root-dir={}", paths.dir.join("kubelet/root").display()),
                format!("--cert-dir={}", paths.dir.join("kubelet/pki").display()),
                "--v=1".into(),
            ],
        ),
    ])
}
