//! The node's configuration files: containerd, the CNI network, the kubelet, and the
//! resolver pods get. Each setting here is one that was found to matter on these machines
//! (see the module documentation of [`super`]).

use std::path::Path;

use super::host::{BRIDGE, NODE_IP, POD_CIDR};

/// The pause image's name: containerd's `sandbox_image` and the name it is imported under.
pub const PAUSE_IMAGE: &str = "gmsa.test/pause:1";
/// The workload image: busybox, for pods that only need to run. Both names have a domain of
/// their own (`.test` is reserved), so no registry anywhere is named.
pub const BUSYBOX_IMAGE: &str = "gmsa.test/busybox:1";

/// containerd's configuration (version 2): everything under `dir`, the CRI plugin on the
/// extracted runc, OOM score adjustments restricted (root here lacks CAP_SYS_RESOURCE),
/// network namespaces under the state directory, only the overlay snapshotter.
pub fn containerd(dir: &Path, runtime: &Path) -> String {
    let d = dir.display();
    let runc = runtime.join("usr/sbin/runc");
    let cni_bin = runtime.join("usr/lib/cni");
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{d}/containerd/containerd.sock"

[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d}/cni/net.d"
"#,
        runc = runc.display(),
        cni_bin = cni_bin.display(),
    )
}

/// The pod network: one bridge (the one the host guard made), gateway on the node IP, no
/// masquerading (nothing leaves the machine), host-local addresses from the pod range.
pub fn cni_network(dir: &Path) -> String {
    format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "gmsa-pods",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{data}",
        "ranges": [[{{ "subnet": "{POD_CIDR}", "rangeStart": "10.88.1.1", "gateway": "{NODE_IP}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}]
      }}
    }}
  ]
}}
"#,
        data = dir.join("cni/ipam").display(),
    )
}

/// The kubelet's configuration: cgroupfs on cgroup v1 (allowed explicitly), webhook
/// authentication and authorization with x509 clients of `client_ca`, private directories,
/// small eviction thresholds (small disks), a resolver that answers nothing (no DNS query
/// leaves the machine).
pub fn kubelet(dir: &Path, client_ca: &Path, healthz_port: u16, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {client_ca}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
rotateCertificates: false
serverTLSBootstrap: false
resolvConf: {d}/resolv.conf
podLogsDir: {d}/kubelet/pod-logs
volumePluginDir: {d}/kubelet/volume-plugins
staticPodPath: ""
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
imageServiceEndpoint: unix://{d}/containerd/containerd.sock
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 4s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
evictionPressureTransitionPeriod: 5s
serializeImagePulls: false
maxPods: 110
"#,
        client_ca = client_ca.display(),
    )
}

/// What pods get as `/etc/resolv.conf`: a resolver on their own loopback, which answers
/// nothing. An empty file would make containerd copy the host's resolver instead.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\n";
