//! Just enough DER reading to get at the X.509 fields this crate needs.
//!
//! rustls and webpki parse certificates but do not expose validity, names or
//! key identifiers, and rcgen only reads certificates with its `x509-parser`
//! feature, which would drag a second ASN.1 stack into the tree. The fields we
//! need sit at fixed positions in `TBSCertificate`, so a small reader is enough.

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{DistinguishedName, DnType, DnValue};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Why a certificate could not be read; shown to the user inside a `TlsError`.
pub(crate) type DerError = &'static str;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const ISSUER_UID: u8 = 0x81;
const SUBJECT_UID: u8 = 0x82;
const EXTENSIONS: u8 = 0xa3;
/// id-ce-subjectKeyIdentifier (2.5.29.14), DER content bytes.
const SUBJECT_KEY_ID_OID: &[u8] = &[0x55, 0x1d, 0x0e];

/// The parts of a certificate used for expiry checks, key matching and signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo<'a> {
    /// Serial number content bytes (big-endian, may carry a leading zero).
    pub serial: &'a [u8],
    /// The whole encoded issuer `Name`, as compared byte-for-byte during path building.
    pub issuer: &'a [u8],
    /// The whole encoded subject `Name`.
    pub subject: &'a [u8],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The whole encoded `SubjectPublicKeyInfo`.
    pub spki: &'a [u8],
    /// The subject key identifier extension's key id, if present.
    pub subject_key_id: Option<&'a [u8]>,
}

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn next(&mut self) -> Result<Tlv<'a>, DerError> {
        let input = self.input;
        let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not supported");
        }
        let (&first, mut rest) = rest.split_first().ok_or("truncated DER length")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("unsupported DER length");
            }
            let (len_bytes, after) = rest.split_at(n);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return Err("truncated DER value");
        }
        let header = input.len() - rest.len();
        let (content, remaining) = rest.split_at(len);
        self.input = remaining;
        Ok(Tlv {
            tag,
            content,
            raw: &input[..header + len],
        })
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let tlv = self.next().map_err(|_| what)?;
        if tlv.tag == tag {
            Ok(tlv)
        } else {
            Err(what)
        }
    }
}

/// Reads the fields of one DER-encoded X.509 certificate.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<CertInfo<'_>, DerError> {
    let cert = Reader::new(der).expect(SEQUENCE, "not a DER certificate")?;
    let tbs = Reader::new(cert.content).expect(SEQUENCE, "missing TBSCertificate")?;
    let mut tbs = Reader::new(tbs.content);

    let mut first = tbs.next()?;
    if first.tag == VERSION {
        first = tbs.next()?;
    }
    if first.tag != INTEGER {
        return Err("missing serial number");
    }
    let serial = first.content;
    tbs.expect(SEQUENCE, "missing signature algorithm")?;
    let issuer = tbs.expect(SEQUENCE, "missing issuer name")?.raw;
    let validity = tbs.expect(SEQUENCE, "missing validity")?;
    let mut validity = Reader::new(validity.content);
    let not_before = parse_time(validity.next()?)?;
    let not_after = parse_time(validity.next()?)?;
    let subject = tbs.expect(SEQUENCE, "missing subject name")?.raw;
    let spki = tbs.expect(SEQUENCE, "missing subject public key")?.raw;

    let mut subject_key_id = None;
    while !tbs.is_empty() {
        let field = tbs.next()?;
        match field.tag {
            ISSUER_UID | SUBJECT_UID => {}
            EXTENSIONS => subject_key_id = find_subject_key_id(field.content)?,
            _ => return Err("unexpected field in TBSCertificate"),
        }
    }

    Ok(CertInfo {
        serial,
        issuer,
        subject,
        not_before,
        not_after,
        spki,
        subject_key_id,
    })
}

fn find_subject_key_id(explicit: &[u8]) -> Result<Option<&[u8]>, DerError> {
    let list = Reader::new(explicit).expect(SEQUENCE, "malformed extensions")?;
    let mut list = Reader::new(list.content);
    while !list.is_empty() {
        let ext = list.expect(SEQUENCE, "malformed extension")?;
        let mut ext = Reader::new(ext.content);
        let oid = ext.expect(OID, "malformed extension id")?;
        let mut value = ext.next()?;
        if value.tag == BOOLEAN {
            value = ext.next()?;
        }
        if value.tag != OCTET_STRING {
            return Err("malformed extension value");
        }
        if oid.content == SUBJECT_KEY_ID_OID {
            let key_id = Reader::new(value.content)
                .expect(OCTET_STRING, "malformed subject key identifier")?;
            return Ok(Some(key_id.content));
        }
    }
    Ok(None)
}

fn parse_time(tlv: Tlv<'_>) -> Result<OffsetDateTime, DerError> {
    const BAD: DerError = "malformed validity time";
    let text = tlv.content;
    let (year, rest) = match (tlv.tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = i32::from(two_digits(&text[0..2]).ok_or(BAD)?);
            // RFC 5280 4.1.2.5.1: two-digit years 50..99 are 19xx, 00..49 are 20xx.
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            (year, &text[2..])
        }
        (GENERALIZED_TIME, 15) => {
            let hi = i32::from(two_digits(&text[0..2]).ok_or(BAD)?);
            let lo = i32::from(two_digits(&text[2..4]).ok_or(BAD)?);
            (hi * 100 + lo, &text[4..])
        }
        _ => return Err(BAD),
    };
    if rest[10] != b'Z' {
        return Err(BAD);
    }
    let field = |i: usize| two_digits(&rest[i..i + 2]).ok_or(BAD);
    let month = Month::try_from(field(0)?).map_err(|_| BAD)?;
    let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| BAD)?;
    let time = Time::from_hms(field(4)?, field(6)?, field(8)?).map_err(|_| BAD)?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

fn two_digits(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// Turns an encoded `Name` back into rcgen's form so certificates can be
/// issued under a CA that was loaded from disk.
///
/// Multi-valued RDNs and repeated attribute types cannot be represented by
/// rcgen; they are refused here rather than silently re-encoded differently.
pub(crate) fn parse_name(raw: &[u8]) -> Result<DistinguishedName, DerError> {
    let name = Reader::new(raw).expect(SEQUENCE, "malformed name")?;
    let mut rdns = Reader::new(name.content);
    let mut dn = DistinguishedName::new();
    while !rdns.is_empty() {
        let rdn = rdns.expect(SET, "malformed name component")?;
        let mut attrs = Reader::new(rdn.content);
        let attr = attrs.expect(SEQUENCE, "malformed name attribute")?;
        if !attrs.is_empty() {
            return Err("multi-valued name components are not supported");
        }
        let mut attr = Reader::new(attr.content);
        let oid = attr.expect(OID, "malformed name attribute type")?;
        let ty = DnType::from_oid(&decode_oid(oid.content)?);
        let value = attr.next()?;
        let value = match value.tag {
            0x0c => DnValue::Utf8String(utf8(value.content)?),
            0x13 => DnValue::PrintableString(
                PrintableString::try_from(utf8(value.content)?)
                    .map_err(|_| "bad PrintableString")?,
            ),
            0x16 => DnValue::Ia5String(
                Ia5String::try_from(utf8(value.content)?).map_err(|_| "bad IA5String")?,
            ),
            0x14 => DnValue::TeletexString(
                TeletexString::try_from(utf8(value.content)?).map_err(|_| "bad TeletexString")?,
            ),
            0x1e => DnValue::BmpString(
                BmpString::from_utf16be(value.content.to_vec()).map_err(|_| "bad BMPString")?,
            ),
            0x1c => DnValue::UniversalString(
                UniversalString::from_utf32be(value.content.to_vec())
                    .map_err(|_| "bad UniversalString")?,
            ),
            _ => return Err("unsupported string type in name"),
        };
        if dn.get(&ty).is_some() {
            return Err("repeated attribute types in a name are not supported");
        }
        dn.push(ty, value);
    }
    Ok(dn)
}

fn utf8(bytes: &[u8]) -> Result<String, DerError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "name attribute is not valid text")
}

fn decode_oid(content: &[u8]) -> Result<Vec<u64>, DerError> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for (i, byte) in content.iter().enumerate() {
        if value > (u64::MAX >> 7) {
            return Err("object identifier too large");
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == content.len() {
            return Err("truncated object identifier");
        }
    }
    if arcs.is_empty() {
        return Err("empty object identifier");
    }
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, IsCa, KeyPair};

    fn utc(y: i32, mo: Month, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
        let date = Date::from_calendar_date(y, mo, d).expect("date");
        PrimitiveDateTime::new(date, Time::from_hms(h, mi, s).expect("time")).assume_utc()
    }

    fn self_signed(params: &CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_validity_in_both_time_encodings() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 on.
        let mut params = CertificateParams::new(vec!["a.example".into()]).expect("params");
        params.not_before = utc(1999, Month::December, 31, 23, 59, 58);
        params.not_after = utc(2150, Month::February, 3, 4, 5, 6);
        let der = self_signed(&params);
        let info = parse_certificate(&der).expect("parse");
        assert_eq!(info.not_before, utc(1999, Month::December, 31, 23, 59, 58));
        assert_eq!(info.not_after, utc(2150, Month::February, 3, 4, 5, 6));
        assert_eq!(info.issuer, info.subject);
    }

    #[test]
    fn round_trips_a_name_and_finds_the_key_id() {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("DE".try_into().expect("printable")),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Ö");
        params
            .distinguished_name
            .push(DnType::CommonName, "example CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("cert").der().to_vec();
        let info = parse_certificate(&der).expect("parse");
        assert_eq!(
            parse_name(info.subject).expect("name"),
            params.distinguished_name
        );
        assert_eq!(
            info.subject_key_id,
            Some(params.key_identifier(&key).as_slice())
        );
        assert!(!info.serial.is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff]).is_err());
        assert!(parse_certificate(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
    }

    #[test]
    fn decodes_object_identifiers() {
        assert_eq!(decode_oid(&[0x55, 0x04, 0x03]), Ok(vec![2, 5, 4, 3]));
        assert_eq!(
            decode_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]),
            Ok(vec![1, 2, 840, 113549, 1, 1, 11])
        );
        assert!(decode_oid(&[0x86]).is_err());
    }
}
