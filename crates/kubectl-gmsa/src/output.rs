//! Writing results: YAML documents, to stdout or to a file that is never overwritten by
//! accident.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

/// Why output could not be written.
#[derive(Debug, Error)]
pub enum OutputError {
    #[error("{0} already exists: pass --force to overwrite it, or choose another file with -o")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("cannot encode YAML: {0}")]
    Yaml(String),
}

/// YAML of several documents, separated by `---`.
pub fn yaml_documents<T: Serialize>(docs: &[T]) -> Result<String, OutputError> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_saphyr::to_string(doc).map_err(|e| OutputError::Yaml(e.to_string()))?;
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Writes `text` to `path`, or to stdout when there is no path. An existing file is replaced
/// only with `force`.
pub fn write(path: Option<&Path>, force: bool, text: &str) -> Result<(), OutputError> {
    let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(OutputError::Stdout);
    };
    let io = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            OutputError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(io)
}
