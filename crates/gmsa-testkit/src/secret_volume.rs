//! A Kubernetes Secret volume on disk, written the way the kubelet's atomic writer does it, so
//! certificate-reload tests exercise the real rotation: `tls.crt -> ..data/tls.crt`,
//! `..data -> ..<generation>/`, and a rotation renames a new `..data` symlink over the old one
//! and deletes the old generation.

use std::path::{Path, PathBuf};

/// A `tls.crt`/`tls.key` Secret volume in a directory.
#[derive(Debug)]
pub struct SecretVolume {
    dir: PathBuf,
    generation: Option<String>,
    count: u32,
}

impl SecretVolume {
    /// Lays out the volume in `dir` (which must exist) with a first certificate and key.
    pub fn create(dir: &Path, cert_pem: &str, key_pem: &str) -> std::io::Result<Self> {
        let mut volume = Self {
            dir: dir.to_owned(),
            generation: None,
            count: 0,
        };
        let generation = volume.write_generation(cert_pem, key_pem)?;
        std::os::unix::fs::symlink(&generation, dir.join("..data"))?;
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))?;
        }
        volume.generation = Some(generation);
        Ok(volume)
    }

    fn write_generation(&mut self, cert_pem: &str, key_pem: &str) -> std::io::Result<String> {
        self.count += 1;
        let name = format!(
            "..2026_11_28_10_{:02}_{:02}.{:09}",
            self.count / 60 % 60,
            self.count % 60,
            self.count
        );
        let path = self.dir.join(&name);
        std::fs::create_dir(&path)?;
        std::fs::write(path.join("tls.crt"), cert_pem)?;
        std::fs::write(path.join("tls.key"), key_pem)?;
        Ok(name)
    }

    /// Swaps in a new certificate and key atomically, as a Secret update does.
    pub fn rotate(&mut self, cert_pem: &str, key_pem: &str) -> std::io::Result<()> {
        let generation = self.write_generation(cert_pem, key_pem)?;
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        if let Some(old) = self.generation.replace(generation) {
            std::fs::remove_dir_all(self.dir.join(old))?;
        }
        Ok(())
    }

    /// The certificate path a server is configured with.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    /// The key path a server is configured with.
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}
