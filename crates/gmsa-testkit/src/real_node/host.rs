//! What the node tier changes on the host, and how it is put back: the guard that keeps the
//! pod and service ranges from leaving the machine (set first, removed last), the bridge,
//! sysctls, the packet filter, host paths a kubelet creates regardless of flags, mounts,
//! leftover processes and cgroups.
//!
//! The snapshot is written to [`STATE_DIR`] before anything changes, so a test process killed
//! outright is cleaned up after by the next [`HostGuard::install`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::real_cluster::ClusterError;

/// Where the host snapshot lives while a node tier runs: one node cluster per machine.
pub const STATE_DIR: &str = "/run/gmsa-node-tier";

/// The pod network; the bridge holds its first address, which is also the node's IP.
pub const POD_CIDR: &str = "10.88.0.0/16";
/// The node's IP: the bridge's address, where the API server and the kubelet listen.
pub const NODE_IP: &str = "10.88.0.1";
/// The Service network; its first address is the `kubernetes` Service.
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
/// The `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The CNI bridge.
pub const BRIDGE: &str = "gmsa0";

/// Sysctls a kubelet, the bridge plugin or kube-proxy may set; restored on teardown.
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// Host paths created whatever the flags (kubelet, containerd, CNI, kubectl): removed on
/// teardown when they did not exist before.
const HOST_PATHS: &[&str] = &[
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/run/mount",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/root/.kube",
    "/usr/libexec/kubernetes",
];

/// The host as it was, and the guard that is up while the node runs.
#[derive(Debug)]
pub struct HostGuard {
    uplinks: Vec<String>,
    cluster_dir: PathBuf,
    active: bool,
}

impl HostGuard {
    /// Takes the machine (waiting for another node cluster to finish), snapshots the host,
    /// then routes the pod and service ranges nowhere but here (an unreachable route each, a
    /// REJECT for each on every uplink, a DROP of forwarding out of the pod network) and
    /// creates the bridge with the node IP. A failure part-way puts back what was done.
    pub fn install(cluster_dir: &Path) -> Result<Self, ClusterError> {
        let state = Path::new(STATE_DIR);
        acquire(state)?;
        Self::install_taken(state, cluster_dir).inspect_err(|_| restore_from(state, cluster_dir))
    }

    fn install_taken(state: &Path, cluster_dir: &Path) -> Result<Self, ClusterError> {
        write(
            &state.join("cluster-dir"),
            &cluster_dir.display().to_string(),
        )?;
        write(
            &state.join("ruleset.nft"),
            &run_out("nft", &["list", "ruleset"])?,
        )?;
        let mut sysctls = String::new();
        for name in SYSCTLS {
            if let Ok(value) = fs::read_to_string(Path::new("/proc/sys").join(name)) {
                sysctls.push_str(&format!("{name}={}\n", value.trim()));
            }
        }
        write(&state.join("sysctls"), &sysctls)?;
        let absent: Vec<&str> = HOST_PATHS
            .iter()
            .copied()
            .filter(|p| !Path::new(p).exists())
            .collect();
        write(&state.join("absent-paths"), &absent.join("\n"))?;

        let uplinks = uplinks()?;
        let guard = Self {
            uplinks: uplinks.clone(),
            cluster_dir: cluster_dir.to_path_buf(),
            active: true,
        };
        write(&state.join("uplinks"), &uplinks.join("\n"))?;
        // The guard, before anything can send: the routes, then the filter rules.
        for cidr in [POD_CIDR, SERVICE_CIDR] {
            run(
                "ip",
                &["route", "replace", "unreachable", cidr, "metric", "4000"],
            )?;
            for uplink in &uplinks {
                run(
                    "iptables",
                    &["-I", "OUTPUT", "-o", uplink, "-d", cidr, "-j", "REJECT"],
                )?;
            }
        }
        run(
            "iptables",
            &[
                "-I", "FORWARD", "-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "DROP",
            ],
        )?;
        let _ = run("ip", &["link", "del", BRIDGE]);
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/16"), "dev", BRIDGE],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        Ok(guard)
    }

    /// The interfaces the host's default routes leave by.
    pub fn uplinks(&self) -> &[String] {
        &self.uplinks
    }

    /// Puts the host back as the snapshot found it; the guard goes last.
    pub fn restore(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        restore_from(Path::new(STATE_DIR), &self.cluster_dir);
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Waits (up to `timeout`) until no node cluster holds this machine, for a test that compares
/// the host before and after its own cluster: a snapshot taken while another cluster runs
/// would hold that cluster's bridge and rules. Returns whether the machine is free.
pub fn wait_until_free(timeout: std::time::Duration) -> bool {
    let began = std::time::Instant::now();
    while Path::new(STATE_DIR).exists() {
        if began.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    true
}

/// How long a node cluster waits for another one on this machine to finish.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

/// Takes the machine for one node cluster: creating [`STATE_DIR`] is the lock (one node per
/// machine: one bridge, one pod range, host paths every kubelet shares). Waits while another
/// live process (or another thread of this one) holds it; restores the host after a holder
/// that died without tearing down, then takes it.
fn acquire(state: &Path) -> Result<(), ClusterError> {
    let began = std::time::Instant::now();
    let mut told = false;
    loop {
        match fs::create_dir(state) {
            Ok(()) => {
                let me = format!("{} {:?}", std::process::id(), std::thread::current().id());
                return write(&state.join("owner.pid"), &me);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(format!("creating {STATE_DIR}"))(e)),
        }
        let owner = fs::read_to_string(state.join("owner.pid")).unwrap_or_default();
        let pid = owner
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        match pid {
            // Being written right now by the one that created the directory.
            None if began.elapsed() < std::time::Duration::from_secs(5) => {}
            Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                if !told {
                    eprintln!("node tier: waiting for the node cluster of process {pid} to finish");
                    told = true;
                }
            }
            _ => {
                let dir = fs::read_to_string(state.join("cluster-dir")).unwrap_or_default();
                eprintln!(
                    "node tier: restoring the host after an abandoned run ({})",
                    dir.trim()
                );
                restore_from(state, Path::new(dir.trim()));
                let _ = fs::remove_dir_all(state);
                continue;
            }
        }
        if began.elapsed() > ACQUIRE_TIMEOUT {
            return Err(ClusterError::Missing {
                what: format!("another node cluster holds {STATE_DIR} ({})", owner.trim()),
                hint: "one node cluster runs on a machine at a time; stop the other test run"
                    .into(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Every step of teardown that does not need the processes' handles, in order: leftover
/// processes, mounts, the bridge, cgroups, host paths, sysctls; then the packet filter
/// (with the guard rules) and the unreachable routes, last.
fn restore_from(state: &Path, cluster_dir: &Path) {
    kill_leftovers(cluster_dir);
    unmount_under(&[
        cluster_dir,
        Path::new("/var/lib/kubelet"),
        Path::new("/run/containerd"),
        Path::new("/run/netns"),
    ]);
    let _ = run("ip", &["link", "del", BRIDGE]);
    remove_kubepods_cgroups();
    if let Ok(absent) = fs::read_to_string(state.join("absent-paths")) {
        for path in absent.lines().filter(|l| !l.is_empty()) {
            let _ = fs::remove_dir_all(path);
        }
    }
    if let Ok(sysctls) = fs::read_to_string(state.join("sysctls")) {
        for line in sysctls.lines() {
            if let Some((name, value)) = line.split_once('=') {
                let path = Path::new("/proc/sys").join(name);
                if fs::read_to_string(&path).is_ok_and(|now| now.trim() != value) {
                    let _ = fs::write(&path, value);
                }
            }
        }
    }
    if let Ok(ruleset) = fs::read_to_string(state.join("ruleset.nft")) {
        let file = state.join("ruleset.restore.nft");
        if fs::write(&file, format!("flush ruleset\n{ruleset}")).is_ok() {
            if let Err(e) = run("nft", &["-f", &file.display().to_string()]) {
                eprintln!("node tier: restoring the packet filter failed: {e}");
            }
        }
    }
    for cidr in [POD_CIDR, SERVICE_CIDR] {
        let _ = run(
            "ip",
            &["route", "del", "unreachable", cidr, "metric", "4000"],
        );
    }
    let _ = fs::remove_dir_all(state);
}

/// Kills every process left in the pods' cgroups and every containerd shim or node process
/// started from the cluster's directory (shims outlive containerd).
pub(super) fn kill_leftovers(cluster_dir: &Path) {
    let dir = cluster_dir.display().to_string();
    for _ in 0..3 {
        let mut pids = pods_cgroup_pids();
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if !dir.is_empty() && cmdline.contains(&dir) && pid != std::process::id() as i32 {
                    pids.push(pid);
                }
            }
        }
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Processes in any `kubepods` cgroup (the pids controller sees every one).
fn pods_cgroup_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for root in ["/sys/fs/cgroup/pids/kubepods", "/sys/fs/cgroup/kubepods"] {
        visit_dirs(Path::new(root), &mut |dir| {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        });
    }
    pids
}

/// Removes the `kubepods` cgroup trees in every controller, deepest first.
fn remove_kubepods_cgroups() {
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = controllers
        .flatten()
        .map(|e| e.path().join("kubepods"))
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup/kubepods"));
    for root in roots {
        let mut dirs = Vec::new();
        visit_dirs(&root, &mut |dir| dirs.push(dir.to_path_buf()));
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// Calls `f` on `root` and every directory below it (no symlinks followed).
fn visit_dirs(root: &Path, f: &mut dyn FnMut(&Path)) {
    if !root.is_dir() {
        return;
    }
    f(root);
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                visit_dirs(&entry.path(), f);
            }
        }
    }
}

/// Unmounts (lazily) every mount point under any of `roots`, deepest first.
fn unmount_under(roots: &[&Path]) {
    for _ in 0..3 {
        let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<String> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|p| p.replace("\\040", " "))
            .filter(|p| {
                roots
                    .iter()
                    .any(|r| !r.as_os_str().is_empty() && Path::new(p).starts_with(r))
            })
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
    }
}

/// The interfaces of the host's default routes (IPv4 and IPv6).
fn uplinks() -> Result<Vec<String>, ClusterError> {
    let mut found = Vec::new();
    for family in ["-4", "-6"] {
        let routes = run_out("ip", &[family, "route", "show", "default"])?;
        for line in routes.lines() {
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                if word == "dev" {
                    if let Some(dev) = words.next() {
                        if !found.iter().any(|f| f == dev) {
                            found.push(dev.to_string());
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Why the node tier cannot run on this host, if it cannot: it needs root, a kernel with
/// bridges and network namespaces, and the `ip`, `nft` and `iptables` commands.
pub fn unsupported_reason() -> Option<String> {
    let uid = run_out("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        return Some("the node tier runs a kubelet and containerd: it needs root".into());
    }
    for tool in ["ip", "nft", "iptables", "umount"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Some(format!(
                "`{tool}` is missing: hack/install-test-deps.sh installs it"
            ));
        }
    }
    let probe = "gmsaprobe0";
    if run("ip", &["link", "add", probe, "type", "bridge"]).is_err() {
        return Some("this kernel cannot create a bridge interface".into());
    }
    let _ = run("ip", &["link", "del", probe]);
    if !Path::new("/proc/self/ns/net").exists() {
        return Some("this kernel has no network namespaces".into());
    }
    None
}

pub(super) fn run(program: &str, args: &[&str]) -> Result<(), ClusterError> {
    run_out(program, args).map(drop)
}

pub(super) fn run_out(program: &str, args: &[&str]) -> Result<String, ClusterError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(io(format!("running {program}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ClusterError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn write(path: &Path, contents: &str) -> Result<(), ClusterError> {
    fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

pub(super) fn io(context: String) -> impl FnOnce(std::io::Error) -> ClusterError {
    move |source| ClusterError::Io { context, source }
}
