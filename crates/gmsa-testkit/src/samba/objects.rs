//! Directory objects the `doctor --ad` tests need, made the way an administrator would with
//! the ActiveDirectory PowerShell module, by LDAP adds and modifies: computer accounts,
//! groups (nested too), who may retrieve a gMSA's password, KDS root keys, and a duplicate
//! SPN (which Samba refuses over LDAP, so that one is written to the partition's file).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use ldap3::{Mod, Scope, SearchEntry};

use super::{
    client_config, connect_and_bind, find_tool, io_err, on_own_runtime, SambaDc, SambaError,
    DNS_NAME, DOMAIN_DN, LDAP_OPERATION_TIMEOUT,
};

/// LDAP result code of an add whose entry exists already.
const RESULT_ALREADY_EXISTS: u32 = 68;
/// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: u64 = 11_644_473_600;

/// One LDAP write.
enum Write {
    Add(Vec<(String, Vec<Vec<u8>>)>),
    Modify(Vec<Mod<Vec<u8>>>),
}

impl SambaDc {
    /// The DN of the gMSA `name` that [`SambaDc::add_gmsa`] made.
    pub fn gmsa_dn(&self, name: &str) -> String {
        format!("CN={name},CN=Managed Service Accounts,{DOMAIN_DN}")
    }

    /// Adds the computer account `NAME$` (a domain-joined node); returns its DN.
    pub fn add_computer(&self, name: &str) -> Result<String, SambaError> {
        let dn = format!("CN={name},CN=Computers,{DOMAIN_DN}");
        let host = format!("{}.{DNS_NAME}", name.to_lowercase());
        self.add(
            &dn,
            &[
                ("objectClass", "computer"),
                ("sAMAccountName", &format!("{name}$")),
                ("dNSHostName", &host),
                ("userAccountControl", "4096"),
            ],
        )?;
        Ok(dn)
    }

    /// Adds a global security group; returns its DN.
    pub fn add_group(&self, name: &str) -> Result<String, SambaError> {
        let dn = format!("CN={name},CN=Users,{DOMAIN_DN}");
        self.add(&dn, &[("objectClass", "group"), ("sAMAccountName", name)])?;
        Ok(dn)
    }

    /// Adds a user account (no password, so it stays disabled); returns its DN.
    pub fn add_user(&self, name: &str) -> Result<String, SambaError> {
        let dn = format!("CN={name},CN=Users,{DOMAIN_DN}");
        self.add(&dn, &[("objectClass", "user"), ("sAMAccountName", name)])?;
        Ok(dn)
    }

    /// Makes `member_dn` a member of the group `group_dn` (`Add-ADGroupMember`).
    pub fn add_member(&self, group_dn: &str, member_dn: &str) -> Result<(), SambaError> {
        self.modify(
            group_dn,
            vec![Mod::Add(b"member".to_vec(), set([member_dn]))],
        )
    }

    /// The object's SID, as `S-1-5-21-...`.
    pub fn sid_of(&self, dn: &str) -> Result<String, SambaError> {
        let entry = self.read(dn, &["objectSid"])?;
        let bytes = entry
            .bin_attrs
            .get("objectSid")
            .and_then(|v| v.first().cloned())
            .or_else(|| {
                entry
                    .attrs
                    .get("objectSid")
                    .and_then(|v| v.first())
                    .map(|s| s.as_bytes().to_vec())
            })
            .ok_or_else(|| ldap_err(format!("reading the objectSid of {dn}"), "none".into()))?;
        windows_sddl::Sid::from_bytes(&bytes)
            .map(|sid| sid.to_string())
            .ok_or_else(|| {
                ldap_err(
                    format!("decoding the objectSid of {dn}"),
                    "malformed".into(),
                )
            })
    }

    /// Sets who may retrieve the gMSA's password, as
    /// `Set-ADServiceAccount -PrincipalsAllowedToRetrieveManagedPassword` writes it: owner
    /// BUILTIN\Administrators, one allow-all ACE per SID. No SIDs clears the attribute.
    pub fn set_password_readers(&self, gmsa: &str, sids: &[&str]) -> Result<(), SambaError> {
        let attribute = b"msDS-GroupMSAMembership".to_vec();
        let change = if sids.is_empty() {
            Mod::Delete(attribute, HashSet::new())
        } else {
            Mod::Replace(attribute, HashSet::from([descriptor(sids)?]))
        };
        self.modify(&self.gmsa_dn(gmsa), vec![change])
    }

    /// Replaces an attribute's values; none deletes it (a delete, which Samba takes where an
    /// empty replace fails, as on dNSHostName).
    pub fn replace_attribute(
        &self,
        dn: &str,
        attribute: &str,
        values: &[&str],
    ) -> Result<(), SambaError> {
        let name = attribute.as_bytes().to_vec();
        let change = if values.is_empty() {
            Mod::Delete(name, HashSet::new())
        } else {
            Mod::Replace(name, set(values.iter().copied()))
        };
        self.modify(dn, vec![change])
    }

    /// Adds a KDS root key (`Add-KdsRootKey -EffectiveTime`) taking effect at `effective`,
    /// creating its containers on first use (a fresh Samba domain has none). Returns its id.
    pub fn add_kds_root_key(&self, id: &str, effective: SystemTime) -> Result<(), SambaError> {
        let configuration = format!("CN=Configuration,{DOMAIN_DN}");
        let service = format!("CN=Group Key Distribution Service,CN=Services,{configuration}");
        let keys = format!("CN=Master Root Keys,{service}");
        for container in [&service, &keys] {
            match self.add(container, &[("objectClass", "container")]) {
                Err(SambaError::Ldap { reason, .. })
                    if reason.contains(&format!("rc={RESULT_ALREADY_EXISTS}")) => {}
                other => other?,
            }
        }
        let key_data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let dn = format!("CN={id},{keys}");
        let attributes: Vec<(String, Vec<Vec<u8>>)> = [
            ("objectClass", "msKds-ProvRootKey".to_string()),
            ("cn", id.to_string()),
            ("msKds-Version", "1".into()),
            ("msKds-CreateTime", filetime(SystemTime::now()).to_string()),
            ("msKds-UseStartTime", filetime(effective).to_string()),
            ("msKds-PrivateKeyLength", "512".into()),
            ("msKds-PublicKeyLength", "2048".into()),
            ("msKds-SecretAgreementAlgorithmID", "DH".into()),
            ("msKds-KDFAlgorithmID", "SP800_108_CTR_HMAC".into()),
            (
                "msKds-DomainID",
                format!("CN=DC1,OU=Domain Controllers,{DOMAIN_DN}"),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), vec![value.into_bytes()]))
        .chain([("msKds-RootKeyData".to_string(), vec![key_data])])
        .collect();
        self.write(
            &dn,
            Write::Add(attributes),
            format!("adding KDS root key {id}"),
        )
    }

    /// Gives `dn` an SPN that another account already holds. Samba (rightly) refuses that
    /// over LDAP, so it is written straight into the domain partition's file, past the
    /// checks; a duplicate like this is what a replication conflict or an old DC leaves.
    pub fn add_duplicate_spn(&self, dn: &str, spn: &str) -> Result<(), SambaError> {
        let ldbmodify = find_tool("ldbmodify")?;
        let partition: PathBuf = self
            .dir()
            .join("private/sam.ldb.d")
            .join(format!("{}.ldb", DOMAIN_DN.to_uppercase()));
        let ldif_path = self.dir().join("duplicate-spn.ldif");
        let ldif = format!(
            "dn: {dn}\nchangetype: modify\nadd: servicePrincipalName\nservicePrincipalName: {spn}\n"
        );
        std::fs::write(&ldif_path, ldif).map_err(io_err("writing duplicate-spn.ldif"))?;
        let out = Command::new(ldbmodify)
            .arg("-H")
            .arg(&partition)
            .arg(&ldif_path)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("running ldbmodify"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(ldap_err(
            format!("adding the duplicate SPN {spn} to {dn}"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn add(&self, dn: &str, attributes: &[(&str, &str)]) -> Result<(), SambaError> {
        let attributes = attributes
            .iter()
            .map(|(name, value)| (name.to_string(), vec![value.as_bytes().to_vec()]))
            .collect();
        self.write(dn, Write::Add(attributes), format!("adding {dn}"))
    }

    fn modify(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<(), SambaError> {
        self.write(dn, Write::Modify(mods), format!("modifying {dn}"))
    }

    fn write(&self, dn: &str, write: Write, what: String) -> Result<(), SambaError> {
        let (url, config) = (self.ldaps_url(), client_config(self.ca_pem())?);
        let (upn, password) = (self.admin_upn(), self.admin_password().to_string());
        let dn = dn.to_string();
        on_own_runtime(async move {
            let mut ldap = connect_and_bind(&url, config, &upn, &password).await?;
            let ldap_op = ldap.with_timeout(LDAP_OPERATION_TIMEOUT);
            let result = match write {
                Write::Add(attributes) => {
                    let attributes: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attributes
                        .into_iter()
                        .map(|(name, values)| (name.into_bytes(), values.into_iter().collect()))
                        .collect();
                    ldap_op.add(&dn, attributes).await
                }
                Write::Modify(mods) => ldap_op.modify(&dn, mods).await,
            }
            .map_err(|e| e.to_string())?;
            let _ = ldap.unbind().await;
            result.success().map(|_| ()).map_err(|e| e.to_string())
        })
        .map_err(|reason| ldap_err(what, reason))
    }

    fn read(&self, dn: &str, attributes: &[&str]) -> Result<SearchEntry, SambaError> {
        let (url, config) = (self.ldaps_url(), client_config(self.ca_pem())?);
        let (upn, password) = (self.admin_upn(), self.admin_password().to_string());
        let (dn, attributes) = (
            dn.to_string(),
            attributes.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        let what = format!("reading {dn}");
        on_own_runtime(async move {
            let mut ldap = connect_and_bind(&url, config, &upn, &password).await?;
            let (entries, _) = ldap
                .with_timeout(LDAP_OPERATION_TIMEOUT)
                .search(&dn, Scope::Base, "(objectClass=*)", attributes)
                .await
                .and_then(|r| r.success())
                .map_err(|e| e.to_string())?;
            let _ = ldap.unbind().await;
            entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .ok_or_else(|| "no entry".to_string())
        })
        .map_err(|reason| ldap_err(what, reason))
    }
}

fn ldap_err(what: String, reason: String) -> SambaError {
    SambaError::Ldap { what, reason }
}

fn set<'a>(values: impl IntoIterator<Item = &'a str>) -> HashSet<Vec<u8>> {
    values.into_iter().map(|v| v.as_bytes().to_vec()).collect()
}

fn filetime(at: SystemTime) -> u64 {
    let unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (unix + FILETIME_UNIX_OFFSET_SECS) * 10_000_000
}

/// A self-relative security descriptor (MS-DTYP 2.4.6): owner BUILTIN\Administrators, a DACL
/// with one ACCESS_ALLOWED ACE of mask 0xF01FF per SID.
fn descriptor(sids: &[&str]) -> Result<Vec<u8>, SambaError> {
    let sid_bytes = |sid: &str| {
        windows_sddl::Sid::parse(sid)
            .map(|s| s.to_bytes())
            .ok_or_else(|| {
                ldap_err(
                    "building a security descriptor".into(),
                    format!("bad SID {sid}"),
                )
            })
    };
    let owner = sid_bytes("S-1-5-32-544")?;
    let mut aces = Vec::new();
    for sid in sids {
        let sid = sid_bytes(sid)?;
        aces.extend([0u8, 0]);
        aces.extend(
            u16::try_from(8 + sid.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        aces.extend(0x000F_01FFu32.to_le_bytes());
        aces.extend(sid);
    }
    let mut sd = vec![1u8, 0];
    sd.extend(0x8004u16.to_le_bytes()); // self-relative, DACL present
    sd.extend(20u32.to_le_bytes()); // owner right after the header
    sd.extend([0u8; 8]); // no group, no SACL
    sd.extend(
        u32::try_from(20 + owner.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    sd.extend(owner);
    sd.extend([2u8, 0]);
    sd.extend(
        u16::try_from(8 + aces.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    sd.extend(u16::try_from(sids.len()).unwrap_or(u16::MAX).to_le_bytes());
    sd.extend([0u8, 0]);
    sd.extend(aces);
    Ok(sd)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn descriptors_parse_back_with_one_allow_ace_per_sid() {
        let sd = descriptor(&["S-1-5-21-1-2-3-1101", "S-1-5-21-1-2-3-2000"]).unwrap();
        let parsed = windows_sddl::parse(&sd).unwrap();
        let aces = parsed.dacl.unwrap().aces;
        assert_eq!(aces.len(), 2);
        assert!(aces.iter().all(|a| a.is_allow()));
        assert_eq!(aces[1].trustee.to_string(), "S-1-5-21-1-2-3-2000");
        assert_eq!(parsed.owner.unwrap().to_string(), "S-1-5-32-544");
    }
}
