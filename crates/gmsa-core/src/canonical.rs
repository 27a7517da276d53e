//! JSON encoding byte-identical to Go's `encoding/json.Marshal` of generic values.
//!
//! The reference webhook inlines `json.Marshal(credspec)`; kubelets and existing pods compare
//! those bytes, so ours must be the same: compact, object keys sorted bytewise, and HTML-safe
//! escapes (`<` `>` `&` U+2028 U+2029).

use serde_json::Value;

/// Encodes `value` as Go's `json.Marshal` of the same `interface{}` would.
pub fn to_go_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_go_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order when another crate in the
            // tree enables `preserve_order`.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                write_value(out, &map[key]);
            }
            out.push('}');
        }
    }
}

/// Go decodes JSON numbers in unstructured objects as int64 when they fit, else float64, and
/// prints float64 in the shortest form, with an exponent below 1e-6 and from 1e21 on.
fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust writes `1e21` and `1.5e-7`; Go writes `1e+21` and `1.5e-07`, then trims the
        // exponent's leading zero back to `1.5e-7`.
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => {
                out.push_str(mantissa);
                out.push_str("e+");
                out.push_str(exp);
            }
            _ => out.push_str(&s),
        }
    } else {
        out.push_str(&f.to_string());
    }
}

/// Bytes that end a run of characters copied as they are: those Go escapes, and the first
/// byte of U+2028 and U+2029 (which is also the first byte of other characters).
const STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xe2] = true;
    table
};

/// Writes `s` as a JSON string with Go's escaping rules (HTML-safe).
pub fn write_go_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs that need no escape are copied whole: this sits on the admission hot path (every
    // patch carries a credential spec's contents, a JSON text full of quotes, as a string).
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !STOP[usize::from(bytes[i])] {
            i += 1;
            continue;
        }
        // A stop byte is ASCII or the lead byte 0xE2, so `i` is a character boundary.
        let c = s[i..].chars().next().unwrap_or_default();
        if c == '\u{2028}' || c == '\u{2029}' || c.is_ascii() {
            out.push_str(&s[run..i]);
            write_escaped(out, c);
            run = i + c.len_utf8();
        }
        i += c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// One character [`write_go_string`] must escape.
fn write_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '<' => out.push_str("\\u003c"),
        '>' => out.push_str("\\u003e"),
        '&' => out.push_str("\\u0026"),
        '\u{2028}' => out.push_str("\\u2028"),
        '\u{2029}' => out.push_str("\\u2029"),
        c if (c as u32) < 0x20 => {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
        c => out.push(c),
    }
}

/// Quotes `s` as Go's `%q` (`strconv.Quote`) does, for messages that must equal the
/// reference's: unlike JSON, `<` `>` `&` and printable non-ASCII stay as they are, and other
/// characters are escaped as `\a`..`\v`, `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
///
/// Go escapes every rune that is not a letter, mark, number, punctuation, symbol or ASCII space;
/// without Unicode tables we escape the control, space and format characters and private-use
/// and non-character code points, which covers all but unassigned code points.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if go_prints(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Whether Go's `strconv.IsPrint` holds for `c` (see [`go_quote`] for the approximation).
fn go_prints(c: char) -> bool {
    let u = c as u32;
    let format_or_private = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f
        | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f
        | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff)
        || (u & 0xfffe) == 0xfffe
        || (0xfdd0..=0xfdef).contains(&u);
    c == ' ' || !(c.is_control() || c.is_whitespace() || format_or_private)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_level_and_is_compact() {
        let v = json!({"b": {"z": 1, "a": [ {"y": true, "x": null} ]}, "a": "s"});
        assert_eq!(
            to_go_json(&v),
            r#"{"a":"s","b":{"a":[{"x":null,"y":true}],"z":1}}"#
        );
    }

    #[test]
    fn escapes_like_go() {
        let v = json!("<a>&b\u{2028}\u{2029}\"\\\n\r\t\u{1}\u{8}\u{c}é");
        assert_eq!(
            to_go_json(&v),
            r#""\u003ca\u003e\u0026b\u2028\u2029\"\\\n\r\t\u0001\b\fé""#
        );
    }

    #[test]
    fn copies_plain_runs_and_escapes_between_them() {
        let mut out = String::new();
        write_go_string(&mut out, "€ … \u{2027}x\u{2028}y\u{2029}\u{202a}<é&>\u{1f}");
        assert_eq!(
            out,
            "\"€ … \u{2027}x\\u2028y\\u2029\u{202a}\\u003cé\\u0026\\u003e\\u001f\""
        );
        let mut empty = String::new();
        write_go_string(&mut empty, "");
        assert_eq!(empty, r#""""#);
    }

    #[test]
    fn quotes_like_go_percent_q() {
        let cases = [
            ("plain", r#""plain""#),
            ("<a>&b", r#""<a>&b""#),
            ("q\"b\\", r#""q\"b\\""#),
            (
                "\u{7}\u{8}\u{c}\n\r\t\u{b}\u{1}\u{1b}\u{7f}",
                r#""\a\b\f\n\r\t\v\x01\x1b\x7f""#,
            ),
            ("é ü 日本", r#""é ü 日本""#),
            (
                "\u{a0}\u{2028}\u{200b}\u{feff}",
                r#""\u00a0\u2028\u200b\ufeff""#,
            ),
            ("\u{f0000}", r#""\U000f0000""#),
            ("😀", r#""😀""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "input {input:?}");
        }
    }

    #[test]
    fn numbers_like_go() {
        let cases = [
            ("1", "1"),
            ("-42", "-42"),
            ("1.5", "1.5"),
            ("100000000000000000000", "100000000000000000000"),
            ("1e21", "1e+21"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("2.0", "2"),
        ];
        for (input, want) in cases {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(to_go_json(&v), want, "input {input}");
        }
    }

    #[test]
    fn matches_the_captured_api_server_encoding() {
        // The API server (Go) wrote this field of a watch event; the same bytes must come out.
        let go = r#"{"PluginGUID":"{CCC2A336-D7F3-4818-A213-272B7924213E}","PluginInput":"ObjectId=\u003cid\u003e;SecretUri=https://vault.example/secrets/gmsa\u0026v=2","PortableCcgVersion":"1"}"#;
        let v: Value = serde_json::from_str(go).unwrap();
        assert_eq!(to_go_json(&v), go);
    }
}
