//! Credential specs for the plugin tests: one valid spec per CCG plugin, as `credspec new
//! --plugin` writes it, and one mistake per check, each with the words its message must carry.
//! The same table drives the checks in `credspec validate`, `/validate-credspec` and `doctor`,
//! so every place that checks specs is tested on every mistake.

use serde_json::{json, Value};

/// The gMSA, domain and plugin inputs the fixtures use.
pub const AWS_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:gmsa-plugin-input-AbCdEf";
pub const AZURE_OBJECT_ID: &str = "6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e";
pub const AZURE_SECRET_URI: &str = "https://contoso-gmsa.vault.azure.net/secrets/gmsa-user";
pub const RANCHER_NAMESPACE: &str = "cattle-windows-gmsa-system";
pub const RANCHER_SECRET: &str = "contoso-gmsa-user";

/// The Kubernetes documentation's WebApp1 in contoso.com, domain-joined (no plugin).
pub fn webapp1(name: &str) -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": name},
        "credspec": {
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [
                {"Name": "WebApp1", "Scope": "contoso.com"},
                {"Name": "WebApp1", "Scope": "CONTOSO"}
            ]},
            "CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {
                "DnsName": "contoso.com",
                "DnsTreeName": "contoso.com",
                "Guid": "244818ae-87ac-4fcd-92ec-e79e5252348a",
                "MachineAccountName": "WebApp1",
                "NetBiosName": "CONTOSO",
                "Sid": "S-1-5-21-2126449477-2524075714-3094792973"
            }
        }
    })
}

/// WebApp1 with a CCG plugin's `HostAccountConfig`.
pub fn with_plugin(name: &str, guid: &str, input: Value) -> Value {
    let mut spec = webapp1(name);
    spec["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"] = json!({
        "PluginGUID": guid,
        "PluginInput": input,
        "PortableCcgVersion": "1"
    });
    spec
}

/// The valid spec of each plugin: (plugin flag value, resource).
pub fn plugin_specs() -> Vec<(&'static str, Value)> {
    vec![
        (
            "aws",
            with_plugin(
                "gmsa-webapp1-aws",
                "{859E1386-BDB4-49E8-85C7-3070B13920E1}",
                json!(format!(r#"{{"credentialArn":"{AWS_ARN}"}}"#)),
            ),
        ),
        (
            "azure",
            with_plugin(
                "gmsa-webapp1-azure",
                "{CCC2A336-D7F3-4818-A213-272B7924213E}",
                json!(format!(
                    "ObjectId={AZURE_OBJECT_ID};SecretUri={AZURE_SECRET_URI}"
                )),
            ),
        ),
        (
            "rancher",
            with_plugin(
                "gmsa-webapp1-rancher",
                "{E4781092-F116-4B79-B55E-28EB6A224E26}",
                json!(format!("{RANCHER_NAMESPACE}:{RANCHER_SECRET}")),
            ),
        ),
    ]
}

/// A spec with one mistake, and how it must be reported.
pub struct Mistake {
    /// Short identifier, also the spec's name suffix.
    pub id: &'static str,
    pub spec: Value,
    /// Whether it refuses (`true`) or only warns.
    pub refused: bool,
    /// Words the message must contain: the field, what was found, the fix.
    pub words: &'static [&'static str],
}

/// One mistake per check the plugin work added, plus the domain's syntax checks.
pub fn mistakes() -> Vec<Mistake> {
    let aws = "{859E1386-BDB4-49E8-85C7-3070B13920E1}";
    let mut missing_netbios = webapp1("mistake-missing-netbios-scope");
    missing_netbios["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] =
        json!([{"Name": "WebApp1", "Scope": "contoso.com"}]);
    let mut other_domain = webapp1("mistake-other-domain");
    other_domain["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([
        {"Name": "WebApp1", "Scope": "contoso.com"},
        {"Name": "WebApp1", "Scope": "CONTOSO"},
        {"Name": "LogReader", "Scope": "fabrikam.com"}
    ]);
    let mut all_other_domain = webapp1("mistake-all-accounts-other-domain");
    all_other_domain["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([{"Name": "WebApp1", "Scope": "fabrikam.com"}, {"Name": "WebApp1", "Scope": "FABRIKAM"}]);
    let mut bad_guid = webapp1("mistake-domain-guid");
    bad_guid["credspec"]["DomainJoinConfig"]["Guid"] = json!("244818ae-87ac-4fcd-92ec");
    let mut bad_sid = webapp1("mistake-domain-sid");
    bad_sid["credspec"]["DomainJoinConfig"]["Sid"] =
        json!("S-1-5-21-2126449477-2524075714-3094792973-1105");
    vec![
        Mistake {
            id: "aws-object-input",
            spec: with_plugin(
                "mistake-aws-object-input",
                aws,
                json!({ "CredentialArn": AWS_ARN }),
            ),
            refused: true,
            words: &[
                "HostAccountConfig.PluginInput",
                "is a JSON object",
                r#"{\"credentialArn\":"#,
            ],
        },
        Mistake {
            id: "aws-bad-arn",
            spec: with_plugin(
                "mistake-aws-bad-arn",
                aws,
                json!(r#"{"credentialArn":"arn:aws:s3:::gmsa/credspec.json"}"#),
            ),
            refused: true,
            words: &[
                "HostAccountConfig.PluginInput",
                "is an ARN of s3",
                "Secrets Manager",
            ],
        },
        Mistake {
            id: "azure-bad-uri",
            spec: with_plugin(
                "mistake-azure-bad-uri",
                "{CCC2A336-D7F3-4818-A213-272B7924213E}",
                json!(format!(
                    "ObjectId={AZURE_OBJECT_ID};SecretUri=contoso-gmsa/gmsa-user"
                )),
            ),
            refused: true,
            words: &[
                "HostAccountConfig.PluginInput",
                "is not an https:// URI",
                "https://VAULT.vault.azure.net/secrets/NAME",
            ],
        },
        Mistake {
            id: "rancher-no-namespace",
            spec: with_plugin(
                "mistake-rancher-no-namespace",
                "{E4781092-F116-4B79-B55E-28EB6A224E26}",
                json!(RANCHER_SECRET),
            ),
            refused: true,
            words: &[
                "HostAccountConfig.PluginInput",
                "is not NAMESPACE:SECRET",
                "account provider",
            ],
        },
        Mistake {
            id: "unknown-plugin",
            spec: with_plugin(
                "mistake-unknown-plugin",
                "{8019A64C-3F4E-4DE3-AD2B-9A544290E2C3}",
                json!("anything"),
            ),
            refused: false,
            words: &[
                "HostAccountConfig.PluginGUID",
                "is not a CCG plugin kubectl-gmsa knows",
                "installed on every Windows node",
            ],
        },
        Mistake {
            id: "missing-netbios-scope",
            spec: missing_netbios,
            refused: false,
            words: &[
                "GroupManagedServiceAccounts",
                r#"not to the domain's NetBIOS name "CONTOSO""#,
                "Scope: CONTOSO",
            ],
        },
        Mistake {
            id: "other-domain",
            spec: other_domain,
            refused: false,
            words: &[
                "GroupManagedServiceAccounts[2].Scope",
                r#""fabrikam.com" is another domain"#,
                "trust",
            ],
        },
        Mistake {
            id: "all-accounts-other-domain",
            spec: all_other_domain,
            refused: true,
            words: &[
                "DomainJoinConfig.MachineAccountName",
                "is not among the GroupManagedServiceAccounts scoped to this domain",
                "add it",
            ],
        },
        Mistake {
            id: "domain-guid",
            spec: bad_guid,
            refused: true,
            words: &[
                "DomainJoinConfig.Guid",
                "is not a GUID",
                "write 32 hexadecimal digits",
            ],
        },
        Mistake {
            id: "domain-sid",
            spec: bad_sid,
            refused: true,
            words: &[
                "DomainJoinConfig.Sid",
                "is the SID of an account",
                "use the domain's SID",
            ],
        },
    ]
}
