//! Reading what users hand us: files or stdin (`-`), in the encodings Windows tools write
//! (UTF-8 with or without a BOM, UTF-16 with a BOM as PowerShell's `Out-File` and `>` write,
//! CRLF line ends), as JSON or multi-document YAML, with `List`s opened up.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

/// Why input could not be read.
#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: not valid {encoding} text: {detail}")]
    Encoding {
        name: String,
        encoding: &'static str,
        detail: String,
    },
    #[error("{name}: not valid JSON: {detail}")]
    Json { name: String, detail: String },
    #[error("{name}: not valid YAML or JSON: {detail}")]
    Yaml { name: String, detail: String },
}

/// Where input comes from: a file, or stdin for `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` is stdin; anything else a path.
    pub fn new(path: &Path) -> Self {
        if path.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(path.to_path_buf())
        }
    }

    /// How messages name this source.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_string(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// Reads the whole source and decodes it to text.
    pub fn read_text(&self) -> Result<String, InputError> {
        let io = |source| InputError::Io {
            name: self.name(),
            source,
        };
        let bytes = match self {
            Source::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(io)?;
                buf
            }
            Source::File(path) => std::fs::read(path).map_err(io)?,
        };
        decode_text(&bytes).map_err(|(encoding, detail)| InputError::Encoding {
            name: self.name(),
            encoding,
            detail,
        })
    }
}

/// Decodes text by its byte-order mark: UTF-8 (BOM dropped), UTF-16LE or UTF-16BE. Without a
/// mark, text whose every other byte is zero is taken for UTF-16 too, since some Windows
/// tools omit the mark; anything else must be UTF-8.
pub fn decode_text(bytes: &[u8]) -> Result<String, (&'static str, String)> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes, "UTF-16LE");
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes, "UTF-16BE");
    }
    let looks_utf16 = |zero_at: usize| {
        bytes.len() >= 4
            && bytes.chunks_exact(2).remainder().is_empty()
            && bytes
                .chunks_exact(2)
                .all(|pair| pair[zero_at] == 0 && pair[1 - zero_at] != 0)
    };
    if looks_utf16(1) {
        return utf16(bytes, u16::from_le_bytes, "UTF-16LE");
    }
    if looks_utf16(0) {
        return utf16(bytes, u16::from_be_bytes, "UTF-16BE");
    }
    utf8(bytes)
}

fn utf8(bytes: &[u8]) -> Result<String, (&'static str, String)> {
    String::from_utf8(bytes.to_vec()).map_err(|e| ("UTF-8", e.to_string()))
}

fn utf16(
    bytes: &[u8],
    unit: fn([u8; 2]) -> u16,
    encoding: &'static str,
) -> Result<String, (&'static str, String)> {
    if !bytes.chunks_exact(2).remainder().is_empty() {
        return Err((encoding, "odd number of bytes".to_string()));
    }
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|e| (encoding, e.to_string()))
}

/// Parses one JSON value (the whole text).
pub fn parse_json(name: &str, text: &str) -> Result<Value, InputError> {
    serde_json::from_str(text).map_err(|e| InputError::Json {
        name: name.to_string(),
        detail: e.to_string(),
    })
}

/// Parses the documents of a text: one JSON value, or YAML documents separated by `---`.
/// Empty documents are dropped; a `List` (or any object with `items` and no kind) gives its
/// items.
pub fn parse_documents(name: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let trimmed = text.trim_start();
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) if trimmed.starts_with(['{', '[']) => vec![v],
        _ => serde_saphyr::from_multiple(text).map_err(|e| InputError::Yaml {
            name: name.to_string(),
            detail: e.to_string(),
        })?,
    };
    let mut out = Vec::new();
    for doc in docs {
        open_lists(doc, &mut out);
    }
    Ok(out)
}

fn open_lists(doc: Value, out: &mut Vec<Value>) {
    if doc.is_null() {
        return;
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let is_list = kind == "List" || (kind.is_empty() && doc.get("items").is_some());
    match (is_list, doc) {
        (true, Value::Object(mut map)) => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    open_lists(item, out);
                }
            }
        }
        (_, doc) => out.push(doc),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        out.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    #[test]
    fn decodes_windows_encodings() {
        let text = "{\r\n  \"a\": \"é\"\r\n}\r\n";
        assert_eq!(decode_text(text.as_bytes()).unwrap(), text);
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(text.as_bytes());
        assert_eq!(decode_text(&bom).unwrap(), text);
        assert_eq!(decode_text(&utf16le(text, true)).unwrap(), text);
        assert_eq!(decode_text(&utf16le(text, false)).unwrap(), text);
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(&be).unwrap(), text);
        assert_eq!(decode_text(b"\xFF\xFE\x00").unwrap_err().0, "UTF-16LE");
        assert_eq!(decode_text(b"\xC3(").unwrap_err().0, "UTF-8");
    }

    #[test]
    fn documents_json_yaml_and_lists() {
        let docs = parse_documents("t", "{\"kind\": \"Pod\"}").unwrap();
        assert_eq!(docs, [json!({"kind": "Pod"})]);
        let docs = parse_documents(
            "t",
            "kind: A\n---\n---\nkind: List\nitems:\n- kind: B\n- kind: List\n  items: [{kind: C}]\n",
        )
        .unwrap();
        assert_eq!(
            docs,
            [
                json!({"kind": "A"}),
                json!({"kind": "B"}),
                json!({"kind": "C"})
            ]
        );
        assert!(parse_documents("t", "a: [").is_err());
    }
}
