//! Active Directory's binary identifiers (`objectGUID`, `objectSid`) in the text forms a
//! credential spec carries.

/// Formats a 16-byte `objectGUID` as a lowercase GUID string.
///
/// AD stores GUIDs in the Windows `GUID` struct layout: the first three fields are
/// little-endian, the last eight bytes are in order. So the bytes
/// `3c 2d 1e 0f 5a 4b 78 69 87 96 ...` read as `0f1e2d3c-4b5a-6978-8796-...`.
pub fn guid_from_bytes(bytes: &[u8]) -> Result<String, String> {
    let bytes: &[u8; 16] = bytes
        .try_into()
        .map_err(|_| format!("expected 16 bytes, got {}", bytes.len()))?;
    let data1 = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let data2 = u16::from_le_bytes([bytes[4], bytes[5]]);
    let data3 = u16::from_le_bytes([bytes[6], bytes[7]]);
    let node: String = bytes[10..].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{data1:08x}-{data2:04x}-{data3:04x}-{:02x}{:02x}-{node}",
        bytes[8], bytes[9]
    ))
}

/// Formats a binary `objectSid` (MS-DTYP 2.4.2.2) as `S-1-5-21-...`.
///
/// Layout: revision (1 byte, always 1), sub-authority count (1 byte), identifier authority
/// (6 bytes, big-endian), then that many 32-bit little-endian sub-authorities.
pub fn sid_from_bytes(bytes: &[u8]) -> Result<String, String> {
    const MAX_SUB_AUTHORITIES: usize = 15;
    let [revision, count, rest @ ..] = bytes else {
        return Err(format!("too short ({} bytes)", bytes.len()));
    };
    if *revision != 1 {
        return Err(format!("unknown SID revision {revision}"));
    }
    let count = usize::from(*count);
    if count > MAX_SUB_AUTHORITIES {
        return Err(format!(
            "{count} sub-authorities (at most {MAX_SUB_AUTHORITIES})"
        ));
    }
    if rest.len() != 6 + 4 * count {
        return Err(format!(
            "{} bytes for {count} sub-authorities (expected {})",
            bytes.len(),
            8 + 4 * count
        ));
    }
    let authority = rest[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    // MS-DTYP: authorities that do not fit 32 bits are written in hexadecimal.
    let mut sid = if authority >> 32 == 0 {
        format!("S-1-{authority}")
    } else {
        format!("S-1-0x{authority:012X}")
    };
    for sub in rest[6..].chunks_exact(4) {
        let value = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
        sid.push('-');
        sid.push_str(&value.to_string());
    }
    Ok(sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_uses_the_mixed_endian_layout() {
        // What Samba returned for --domain-guid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.
        let bytes = [
            0x3c, 0x2d, 0x1e, 0x0f, 0x5a, 0x4b, 0x78, 0x69, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
            0xe1, 0xf0,
        ];
        assert_eq!(
            guid_from_bytes(&bytes).unwrap(),
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
    }

    #[test]
    fn guid_needs_sixteen_bytes() {
        assert!(guid_from_bytes(&[0; 15]).is_err());
        assert!(guid_from_bytes(&[0; 17]).is_err());
        assert_eq!(
            guid_from_bytes(&[0; 16]).unwrap(),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn domain_sid_round_trips_known_bytes() {
        // S-1-5-21-1111111111-2222222222-3333333333 as Samba returned it.
        let bytes = [
            0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x15, 0x00, 0x00, 0x00, 0xc7, 0x35,
            0x3a, 0x42, 0x8e, 0x6b, 0x74, 0x84, 0x55, 0xa1, 0xae, 0xc6,
        ];
        assert_eq!(
            sid_from_bytes(&bytes).unwrap(),
            "S-1-5-21-1111111111-2222222222-3333333333"
        );
    }

    #[test]
    fn well_known_and_odd_sids() {
        // S-1-5-32-544 (BUILTIN\Administrators).
        let admins = [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0];
        assert_eq!(sid_from_bytes(&admins).unwrap(), "S-1-5-32-544");
        // S-1-1-0 (Everyone).
        assert_eq!(
            sid_from_bytes(&[1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
            "S-1-1-0"
        );
        // An authority beyond 32 bits is written in hex.
        assert_eq!(
            sid_from_bytes(&[1, 0, 0x01, 0, 0, 0, 0, 0]).unwrap(),
            "S-1-0x010000000000"
        );
    }

    #[test]
    fn malformed_sids_are_rejected() {
        assert!(sid_from_bytes(&[]).is_err());
        assert!(sid_from_bytes(&[2, 0, 0, 0, 0, 0, 0, 5]).is_err());
        assert!(sid_from_bytes(&[1, 1, 0, 0, 0, 0, 0, 5]).is_err());
        assert!(sid_from_bytes(&[1, 16, 0, 0, 0, 0, 0, 5]).is_err());
    }
}
