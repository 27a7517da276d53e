//! Provisioning and starting the DC: its own `smb.conf` inside the test directory, `samba-tool
//! domain provision` with the fixed domain, and the `samba` process.

use super::*;

pub(super) fn smb_conf(dir: &Path, address: Ipv4Addr, tls: &TestTls) -> String {
    let d = dir.display();
    format!(
        "# Written by gmsa-testkit for a throwaway test DC; nothing here touches the host.
[global]
\tnetbios name = {HOST_NAME}
\trealm = {REALM}
\tworkgroup = {NETBIOS_NAME}
\tserver role = active directory domain controller
\tinterfaces = {address}/8
\tbind interfaces only = yes
\tserver services = ldap
\tdns forwarder =
\tprivate dir = {d}/private
\tbinddns dir = {d}/bind-dns
\tlock directory = {d}/lock
\tstate directory = {d}/state
\tcache directory = {d}/cache
\tpid directory = {d}/pid
\tncalrpc dir = {d}/lock/ncalrpc
\twinbindd socket directory = {d}/lock/winbindd
\tntp signd socket directory = {d}/lock/ntp_signd
\tlog file = {d}/log/samba.log
\ttls enabled = yes
\ttls keyfile = {key}
\ttls certfile = {cert}
\ttls cafile = {ca}
\t# Lets tests exercise the client's explicit plain-LDAP mode; real DCs should refuse it.
\tldap server require strong auth = no

[netlogon]
\tpath = {d}/sysvol/{DNS_NAME}/scripts
\tread only = no

[sysvol]
\tpath = {d}/sysvol
\tread only = no
",
        key = tls.key_path.display(),
        cert = tls.cert_path.display(),
        ca = tls.ca_path.display(),
    )
}

pub(super) fn provision(
    samba_tool: &Path,
    config: &Path,
    dir: &Path,
    address: Ipv4Addr,
    admin_password: &str,
) -> Result<(), SambaError> {
    let log_path = dir.join("log/provision.log");
    let log = File::create(&log_path).map_err(io_err("creating provision.log"))?;
    let log_err = log
        .try_clone()
        .map_err(io_err("duplicating a log handle"))?;
    let mut child = Command::new(samba_tool)
        .args(["domain", "provision", "-s"])
        .arg(config)
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={NETBIOS_NAME}"))
        .arg("--server-role=dc")
        .arg("--dns-backend=SAMBA_INTERNAL")
        .arg(format!("--host-name={HOST_NAME}"))
        .arg(format!("--host-ip={address}"))
        .arg(format!("--adminpass={admin_password}"))
        .arg(format!("--domain-sid={DOMAIN_SID}"))
        .arg(format!("--domain-guid={DOMAIN_GUID}"))
        .arg(format!("--targetdir={}", dir.display()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io_err("starting samba-tool domain provision"))?;
    let deadline = Instant::now() + PROVISION_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting for samba-tool"))? {
            break status.to_string();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break format!("killed after {PROVISION_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    };
    if status == "exit status: 0" {
        return Ok(());
    }
    Err(SambaError::Provision {
        status,
        output_tail: tail_of_file(&log_path, 30),
    })
}

/// Starts `samba` in the foreground, single-process, as leader of its own process group,
/// with `SIGKILL` on the death of this thread when `setpriv` exists.
pub(super) fn spawn_samba(
    samba: &Path,
    config: &Path,
    log_path: &Path,
) -> Result<Child, SambaError> {
    const SETPRIV: &str = "/usr/bin/setpriv";
    let mut command = if Path::new(SETPRIV).is_file() {
        let mut command = Command::new(SETPRIV);
        command.args(["--pdeathsig", "KILL", "--"]).arg(samba);
        command
    } else {
        Command::new(samba)
    };
    command
        .arg("-s")
        .arg(config)
        .args([
            "--foreground",
            "--no-process-group",
            "--model=single",
            "--debug-stdout",
            "--debuglevel=1",
        ])
        .arg(format!("--maximum-runtime={MAX_RUNTIME_SECS}"))
        .process_group(0);
    let log = File::create(log_path).map_err(io_err("creating samba.out"))?;
    let log_err = log
        .try_clone()
        .map_err(io_err("duplicating a log handle"))?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io_err(format!("starting {}", samba.display())))
}
