//! The domain facts a credential spec needs, and the pure rules that pick them out of what
//! the directory returns (rootDSE, the domain object, the crossRefs under `CN=Partitions`).

/// `supportedCapabilities` value every Active Directory domain controller advertises
/// (`LDAP_CAP_ACTIVE_DIRECTORY_OID`); AD LDS and other LDAP servers lack it.
pub const ACTIVE_DIRECTORY_CAPABILITY: &str = "1.2.840.113556.1.4.800";

/// The facts a credential spec's `DomainJoinConfig` carries; the credential-spec builder's
/// own type, so what is read here goes straight into `build_credential_spec`.
pub use gmsa_core::credspec::DomainFacts;

/// The naming contexts a domain controller's rootDSE names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDse {
    /// The DC's own domain (`DC=contoso,DC=com`).
    pub default_naming_context: String,
    /// The forest root domain.
    pub root_domain_naming_context: String,
    /// `CN=Configuration,<forest root>`.
    pub configuration_naming_context: String,
}

impl RootDse {
    /// Reads the rootDSE attributes; an error says why the server is not an AD DC.
    ///
    /// `get` returns an attribute's values (empty when absent).
    pub fn from_attributes<'a>(get: impl Fn(&str) -> &'a [String]) -> Result<Self, String> {
        if !get("supportedCapabilities")
            .iter()
            .any(|c| c == ACTIVE_DIRECTORY_CAPABILITY)
        {
            return Err(format!(
                "its rootDSE does not list the Active Directory capability {ACTIVE_DIRECTORY_CAPABILITY}"
            ));
        }
        let one = |name: &str| {
            get(name)
                .first()
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("its rootDSE has no {name}"))
        };
        Ok(Self {
            default_naming_context: one("defaultNamingContext")?,
            root_domain_naming_context: one("rootDomainNamingContext")?,
            configuration_naming_context: one("configurationNamingContext")?,
        })
    }

    /// Where the forest keeps its crossRef objects.
    pub fn partitions_dn(&self) -> String {
        format!("CN=Partitions,{}", self.configuration_naming_context)
    }
}

/// One `crossRef` object from `CN=Partitions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrossRef {
    /// The crossRef's own DN.
    pub dn: String,
    /// The naming context it describes.
    pub nc_name: String,
    /// DNS name of that naming context, when it is a domain.
    pub dns_root: Option<String>,
    /// NetBIOS name, on domain crossRefs only.
    pub netbios_name: Option<String>,
}

/// The domain's and the forest root's names, from the crossRefs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainNames {
    pub dns_name: String,
    pub netbios_name: String,
    pub forest_dns_name: String,
}

/// Picks the crossRefs of the DC's domain and of the forest root, and reads their names.
pub fn domain_names(root: &RootDse, cross_refs: &[CrossRef]) -> Result<DomainNames, String> {
    let find = |nc: &str| {
        cross_refs
            .iter()
            .find(|c| same_dn(&c.nc_name, nc))
            .ok_or_else(|| format!("no crossRef in {} has nCName {nc}", root.partitions_dn()))
    };
    let domain = find(&root.default_naming_context)?;
    let forest = find(&root.root_domain_naming_context)?;
    let dns_root = |c: &CrossRef| {
        c.dns_root
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{} has no dnsRoot", c.dn))
    };
    Ok(DomainNames {
        dns_name: dns_root(domain)?,
        netbios_name: domain
            .netbios_name
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{} has no nETBIOSName", domain.dn))?,
        forest_dns_name: dns_root(forest)?,
    })
}

/// DN equality as directories apply it to these names: case-insensitive, ignoring spaces
/// around separators.
pub fn same_dn(a: &str, b: &str) -> bool {
    normalize_dn(a) == normalize_dn(b)
}

fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(|part| part.trim().to_lowercase())
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The object class of group managed service accounts.
pub const GMSA_CLASS: &str = "msDS-GroupManagedServiceAccount";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn root_dse(pairs: &[(&str, &[&str])]) -> Result<RootDse, String> {
        let map: HashMap<String, Vec<String>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        RootDse::from_attributes(|name| map.get(name).map(Vec::as_slice).unwrap_or(&[]))
    }

    const DC: &[(&str, &[&str])] = &[
        ("defaultNamingContext", &["DC=emea,DC=contoso,DC=com"]),
        ("rootDomainNamingContext", &["DC=contoso,DC=com"]),
        (
            "configurationNamingContext",
            &["CN=Configuration,DC=contoso,DC=com"],
        ),
        (
            "supportedCapabilities",
            &["1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670"],
        ),
    ];

    #[test]
    fn reads_a_domain_controllers_root_dse() {
        let root = root_dse(DC).unwrap();
        assert_eq!(root.default_naming_context, "DC=emea,DC=contoso,DC=com");
        assert_eq!(
            root.partitions_dn(),
            "CN=Partitions,CN=Configuration,DC=contoso,DC=com"
        );
    }

    #[test]
    fn servers_that_are_not_domain_controllers_are_named_as_such() {
        // An OpenLDAP rootDSE: no AD capability, no defaultNamingContext.
        let err = root_dse(&[("namingContexts", &["dc=example,dc=org"])]).unwrap_err();
        assert!(err.contains("capability"), "{err}");
        // AD LDS (ADAM) advertises 1.2.840.113556.1.4.1851 instead of ...800.
        let err = root_dse(&[
            ("supportedCapabilities", &["1.2.840.113556.1.4.1851"]),
            ("configurationNamingContext", &["CN=Configuration,CN={X}"]),
        ])
        .unwrap_err();
        assert!(err.contains("capability"), "{err}");
        // Capability present but a naming context missing.
        let err = root_dse(&DC[1..]).unwrap_err();
        assert!(err.contains("defaultNamingContext"), "{err}");
    }

    fn cross_ref(nc: &str, dns: Option<&str>, netbios: Option<&str>) -> CrossRef {
        CrossRef {
            dn: format!("CN={nc},CN=Partitions,CN=Configuration,DC=contoso,DC=com"),
            nc_name: nc.to_string(),
            dns_root: dns.map(str::to_string),
            netbios_name: netbios.map(str::to_string),
        }
    }

    #[test]
    fn picks_the_domain_and_the_forest_root_among_all_partitions() {
        let root = root_dse(DC).unwrap();
        let refs = [
            cross_ref(
                "CN=Configuration,DC=contoso,DC=com",
                Some("contoso.com"),
                None,
            ),
            cross_ref(
                "DC=DomainDnsZones,DC=contoso,DC=com",
                Some("DomainDnsZones.contoso.com"),
                None,
            ),
            cross_ref("DC=contoso,DC=com", Some("contoso.com"), Some("CONTOSO")),
            cross_ref(
                "dc=EMEA, dc=Contoso, dc=com",
                Some("emea.contoso.com"),
                Some("EMEA"),
            ),
        ];
        assert_eq!(
            domain_names(&root, &refs).unwrap(),
            DomainNames {
                dns_name: "emea.contoso.com".into(),
                netbios_name: "EMEA".into(),
                forest_dns_name: "contoso.com".into(),
            }
        );
    }

    #[test]
    fn missing_cross_refs_or_names_are_errors() {
        let root = root_dse(DC).unwrap();
        let only_forest = [cross_ref(
            "DC=contoso,DC=com",
            Some("contoso.com"),
            Some("CONTOSO"),
        )];
        let err = domain_names(&root, &only_forest).unwrap_err();
        assert!(err.contains("DC=emea,DC=contoso,DC=com"), "{err}");
        let no_netbios = [
            cross_ref("DC=contoso,DC=com", Some("contoso.com"), Some("CONTOSO")),
            cross_ref("DC=emea,DC=contoso,DC=com", Some("emea.contoso.com"), None),
        ];
        let err = domain_names(&root, &no_netbios).unwrap_err();
        assert!(err.contains("nETBIOSName"), "{err}");
    }

    #[test]
    fn dn_comparison_ignores_case_and_spacing() {
        assert!(same_dn("DC=contoso,DC=com", "dc=Contoso, dc=COM"));
        assert!(!same_dn("DC=contoso,DC=com", "DC=contoso,DC=org"));
    }
}
