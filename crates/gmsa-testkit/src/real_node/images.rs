//! Images for the node: the pause and busybox images written from the build script's
//! programs, ours imported from its archive, all through `ctr` into containerd's Kubernetes
//! namespace (nothing is ever pulled).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{hack_dir, host, ClusterError, NodeCluster, BUSYBOX_IMAGE, PAUSE_IMAGE};

impl NodeCluster {
    /// The pause and busybox images, written from the build script's programs.
    pub(super) fn import_base_images(&self, bin: &Path) -> Result<(), ClusterError> {
        for (name, program, entrypoint) in [
            (PAUSE_IMAGE, "pause", "/pause"),
            (BUSYBOX_IMAGE, "busybox", "/bin/busybox"),
        ] {
            let root = self.dir.join(format!("images/{program}-root"));
            let target = root.join(entrypoint.trim_start_matches('/'));
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(host::io("creating an image root".into()))?;
            }
            fs::copy(bin.join("images").join(program), &target)
                .map_err(host::io(format!("copying {program} into its image")))?;
            let archive = self.dir.join(format!("images/{program}.oci.tar"));
            let script = hack_dir().join("oci-image.py");
            let output = Command::new("python3")
                .arg(&script)
                .args(["--root", &root.display().to_string()])
                .args(["--name", name])
                .args(["--entrypoint", entrypoint])
                .args(["--out", &archive.display().to_string()])
                .output()
                .map_err(host::io(format!("running {}", script.display())))?;
            if !output.status.success() {
                return Err(ClusterError::Command {
                    command: format!("{} for {name}", script.display()),
                    status: output.status,
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                });
            }
            self.import_image(&archive)?;
        }
        Ok(())
    }

    /// Imports an OCI archive into containerd's Kubernetes namespace.
    pub fn import_image(&self, archive: &Path) -> Result<(), ClusterError> {
        self.ctr_run(&["images", "import", &archive.display().to_string()])
            .map(drop)
    }

    /// Gives an imported image another name (an "upgrade" to a new tag of the same bits).
    pub fn tag_image(&self, from: &str, to: &str) -> Result<(), ClusterError> {
        self.ctr_run(&["images", "tag", "--force", from, to])
            .map(drop)
    }

    pub(super) fn ctr_run(&self, args: &[&str]) -> Result<String, ClusterError> {
        let socket = self.containerd_socket.display().to_string();
        let mut all = vec!["--address", &socket, "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        host::run_out(&self.ctr.display().to_string(), &all)
    }
}
