//! Supervision of the processes a test starts (etcd, kube-apiserver, the webhook under test):
//! logs to files, readiness waits that notice an early exit, and no process outliving the test.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::https::https_get;
use super::{io_err, ClusterError};

/// A loopback port that was free a moment ago (the OS picked it; we released it).
pub fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("binding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("reading a free port"))?
        .port();
    Ok(port)
}

/// A child process whose output goes to a log file; killed (and reaped) on drop.
pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl ManagedProcess {
    /// Starts `command` with stdout and stderr appended to `log_path`, stdin closed. When
    /// `setpriv` exists the process also gets `SIGKILL` if its parent thread dies.
    pub fn spawn(name: &str, command: Command, log_path: PathBuf) -> Result<Self, ClusterError> {
        // Appended: a process started again (a restart) keeps its earlier log above.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating a log handle"))?;
        let mut command = with_parent_death_signal(command);
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command.spawn().map_err(io_err(format!(
            "starting {name} ({:?})",
            command.get_program()
        )))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log_path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// `Err(Exited)` with the log tail when the process has already ended.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ClusterError::Exited {
                what: self.name.clone(),
                status,
                log_tail: self.log_tail(40),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(ClusterError::Io {
                context: format!("checking on {}", self.name),
                source: e,
            }),
        }
    }

    /// Kills the process and waits for it; harmless when it already ended.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Waits until `addr` accepts TCP connections, while checking that this process is
    /// still alive; bounded by `timeout`.
    pub fn wait_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: format!("{} at {addr}", self.name),
                    timeout,
                    last,
                    log_tail: self.log_tail(40),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `url` (HTTPS, trusting `ca_pem`) until it answers 200, while checking that this
    /// process is still alive; bounded by `timeout`.
    pub fn wait_https_ok(
        &mut self,
        url: &str,
        ca_pem: &str,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match https_get(url, ca_pem, bearer) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {}", tail(&body, 5)),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: format!("{} at {url}", self.name),
                    timeout,
                    last,
                    log_tail: self.log_tail(40),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wraps `command` in `setpriv --pdeathsig KILL` when setpriv is installed (util-linux).
fn with_parent_death_signal(command: Command) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if !Path::new(SETPRIV).is_file() {
        return command;
    }
    let mut wrapped = Command::new(SETPRIV);
    wrapped
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
