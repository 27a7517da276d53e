//! The Container Credential Guard plugins that hosts which are not domain-joined run, and the
//! `PluginInput` each one reads. Each vendor documents its own format and none checks it; a
//! wrong input only shows on a Windows node when a container fails to start. What is known
//! here, and where it comes from:
//!
//! - AWS (EKS and ECS Windows AMIs), `{859E1386-BDB4-49E8-85C7-3070B13920E1}`: the Amazon ECS
//!   developer guide, "Using gMSAs for EC2 Windows containers" (domainless gMSA), and the AWS
//!   containers blog "Domainless Windows Authentication for Amazon EKS Windows pods". The input
//!   is a JSON document *encoded as a string*, `{"credentialArn": "ARN"}`, where ARN names a
//!   Secrets Manager secret (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`) or an SSM
//!   parameter (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`) holding `username`, `password` and
//!   `domainName`. ECS samples also show `PluginInput` as a JSON object (`CredentialArn`): the
//!   ECS agent rewrites it into the string; on a Kubernetes node nothing does (the reference's
//!   CRD declares `PluginInput` a string and refuses the object; ours keeps `credspec` as any
//!   object, so the object would be stored and inlined), so only the string form works. Whether the plugin matches the key's case could not be
//!   verified (the plugin's source is not public): `credentialArn` is what is written, another
//!   case is a warning.
//! - Azure Key Vault (AKS, `CCGAKVPlugin`), `{CCC2A336-D7F3-4818-A213-272B7924213E}`: the AKS
//!   documentation "Enable Group Managed Service Accounts (GMSA) for your Windows Server nodes"
//!   writes `ObjectId=MANAGED_IDENTITY_OBJECT_ID;SecretUri=https://VAULT.vault.azure.net/secrets/NAME`,
//!   the identity's object ID being a GUID; the secret holds `DOMAIN\user:password`. Whether the
//!   plugin matches the keys' case could not be verified: another case is a warning.
//! - Rancher (`rancher/Rancher-Plugin-gMSA`, the CCGRKC plugin), `{e4781092-f116-4b79-b55e-28eb6a224e26}`:
//!   the `rancher-gmsa-account-provider` chart's README and the project's troubleshooting notes
//!   write `NAMESPACE:SECRET`, the namespace of an account provider and a Secret there holding
//!   `domainName`, `username` and `password`. The same notes say CCG does not invoke a plugin
//!   whose GUID is not wrapped in braces.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::syntax::{self, SyntaxError};

/// A CCG plugin whose `PluginInput` format is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// AWS's plugin on the EKS and ECS Windows AMIs (Secrets Manager or SSM Parameter Store).
    Aws,
    /// Microsoft's Azure Key Vault plugin on AKS.
    Azure,
    /// Rancher's plugin, reading a Kubernetes Secret through its account provider.
    Rancher,
}

/// The AWS plugin's GUID, as AWS writes it.
pub const AWS_GUID: &str = "859E1386-BDB4-49E8-85C7-3070B13920E1";
/// The Azure Key Vault plugin's GUID, as the AKS documentation writes it.
pub const AZURE_GUID: &str = "CCC2A336-D7F3-4818-A213-272B7924213E";
/// The Rancher plugin's GUID, as its README writes it.
pub const RANCHER_GUID: &str = "e4781092-f116-4b79-b55e-28eb6a224e26";

/// Key Vault DNS suffixes of the Azure clouds (public, China, US Government, Germany).
const KEY_VAULT_SUFFIXES: [&str; 4] = [
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
];

impl Plugin {
    /// Every known plugin.
    pub const ALL: [Plugin; 3] = [Plugin::Aws, Plugin::Azure, Plugin::Rancher];

    /// The plugin's COM class GUID, without braces.
    pub fn guid(self) -> &'static str {
        match self {
            Plugin::Aws => AWS_GUID,
            Plugin::Azure => AZURE_GUID,
            Plugin::Rancher => RANCHER_GUID,
        }
    }

    /// The plugin whose GUID this is (any case, with or without braces).
    pub fn from_guid(guid: &str) -> Option<Plugin> {
        let wanted = syntax::guid(guid).ok()?;
        Plugin::ALL
            .into_iter()
            .find(|p| p.guid().eq_ignore_ascii_case(&wanted))
    }

    /// The input's format, for messages.
    pub fn format(self) -> &'static str {
        match self {
            Plugin::Aws => {
                r#"a JSON document as a string, {"credentialArn":"ARN"}, the ARN of a Secrets Manager secret or SSM parameter"#
            }
            Plugin::Azure => "ObjectId=GUID;SecretUri=https://VAULT.vault.azure.net/secrets/NAME",
            Plugin::Rancher => {
                "NAMESPACE:SECRET, the account provider's namespace and the Secret's name"
            }
        }
    }

    /// Checks a `PluginInput` string. `Ok(Some(warning))` when the plugin may read it but it is
    /// not written as documented.
    pub fn check_input(self, input: &str) -> Result<Option<String>, InputError> {
        match self {
            Plugin::Aws => check_aws(input),
            Plugin::Azure => check_azure(input),
            Plugin::Rancher => check_rancher(input).map(|_| None),
        }
    }
}

impl fmt::Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Plugin::Aws => "AWS",
            Plugin::Azure => "Azure Key Vault",
            Plugin::Rancher => "Rancher",
        })
    }
}

/// Why a `PluginInput` (or a value for one) is not what its plugin reads. Each message says
/// what was found and what to write.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputError {
    #[error("{0:?} is not an ARN: the AWS plugin needs the ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) or of an SSM parameter (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)")]
    NotAnArn(String),
    #[error("{arn:?} is an ARN of {service}, not of a Secrets Manager secret or an SSM parameter, where the AWS plugin reads the portable identity")]
    ArnService { arn: String, service: String },
    #[error("{arn:?} is not a well-formed ARN: {why}")]
    ArnSyntax { arn: String, why: &'static str },
    #[error("{0:?} is a bare ARN: the AWS plugin reads a JSON document; write {1}")]
    BareArn(String, String),
    #[error("{0:?} is not JSON: the AWS plugin reads {1}")]
    NotJson(String, &'static str),
    #[error(r#"{0} has no credentialArn: the AWS plugin reads {{"credentialArn":"ARN"}}"#)]
    NoCredentialArn(String),
    #[error("credentialArn in {0} must be a string, the ARN")]
    CredentialArnType(String),
    #[error("{0:?} has no {1}: the Azure Key Vault plugin reads ObjectId=GUID;SecretUri=https://VAULT.vault.azure.net/secrets/NAME")]
    AzureKeyMissing(String, &'static str),
    #[error("ObjectId {0}; it is the object ID of the managed identity that may read the Key Vault secret (az identity show --query principalId)")]
    ObjectId(SyntaxError),
    #[error("SecretUri {uri:?} {why}: write https://VAULT.vault.azure.net/secrets/NAME")]
    SecretUri { uri: String, why: &'static str },
    #[error("{0:?} is not NAMESPACE:SECRET: the Rancher plugin reads the namespace of its account provider and the name of the Secret there, such as cattle-windows-gmsa-system:contoso-gmsa-user")]
    RancherFormat(String),
    #[error("the namespace in {input:?}: {error}")]
    RancherNamespace { input: String, error: SyntaxError },
    #[error("the Secret's name in {input:?}: {error}")]
    RancherSecret { input: String, error: SyntaxError },
}

/// The AWS plugin's input document.
#[derive(Serialize)]
struct AwsInput<'a> {
    #[serde(rename = "credentialArn")]
    credential_arn: &'a str,
}

/// The AWS plugin's `PluginInput` for a Secrets Manager secret or SSM parameter ARN: the JSON
/// document encoded as a string, as the plugin reads it in Kubernetes.
pub fn aws_input(arn: &str) -> Result<String, InputError> {
    check_arn(arn)?;
    Ok(aws_input_unchecked(arn))
}

fn aws_input_unchecked(arn: &str) -> String {
    // Serializing a struct of one string cannot fail.
    serde_json::to_string(&AwsInput {
        credential_arn: arn,
    })
    .unwrap_or_default()
}

/// The string an AWS `PluginInput` written as a JSON object should have been, when the object
/// names an ARN (`credentialArn` in any case).
pub fn aws_input_from_object(object: &serde_json::Map<String, Value>) -> Option<String> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("credentialArn"))
        .and_then(|(_, v)| v.as_str())
        .map(aws_input_unchecked)
}

/// The Azure Key Vault plugin's `PluginInput`: the managed identity's object ID (a GUID) and
/// the secret's URI.
pub fn azure_input(object_id: &str, secret_uri: &str) -> Result<String, InputError> {
    let object_id = syntax::guid(object_id).map_err(InputError::ObjectId)?;
    check_secret_uri(secret_uri)?;
    Ok(format!("ObjectId={object_id};SecretUri={secret_uri}"))
}

/// The Rancher plugin's `PluginInput`: the account provider's namespace and the Secret's name.
pub fn rancher_input(namespace: &str, secret: &str) -> Result<String, InputError> {
    let input = format!("{namespace}:{secret}");
    check_rancher(&input)?;
    Ok(input)
}

fn check_aws(input: &str) -> Result<Option<String>, InputError> {
    let trimmed = input.trim();
    if trimmed.starts_with("arn:") {
        return Err(InputError::BareArn(
            input.to_string(),
            aws_input_unchecked(trimmed),
        ));
    }
    let document: serde_json::Map<String, Value> = serde_json::from_str(input)
        .map_err(|_| InputError::NotJson(input.to_string(), Plugin::Aws.format()))?;
    let Some((key, value)) = document
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("credentialArn"))
    else {
        return Err(InputError::NoCredentialArn(input.to_string()));
    };
    let Value::String(arn) = value else {
        return Err(InputError::CredentialArnType(input.to_string()));
    };
    check_arn(arn)?;
    Ok((key != "credentialArn").then(|| {
        format!(
            "the key {key:?} is written credentialArn in AWS's documentation; write {}",
            aws_input_unchecked(arn)
        )
    }))
}

/// An ARN of a Secrets Manager secret or an SSM parameter.
fn check_arn(arn: &str) -> Result<(), InputError> {
    let syntax_error = |why| InputError::ArnSyntax {
        arn: arn.to_string(),
        why,
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() < 6 || parts[0] != "arn" {
        return Err(InputError::NotAnArn(arn.to_string()));
    }
    let (partition, service, region, account, resource) =
        (parts[1], parts[2], parts[3], parts[4], parts[5]);
    if partition != "aws" && !partition.starts_with("aws-") {
        return Err(syntax_error("the partition is aws (or aws-cn, aws-us-gov)"));
    }
    let name = match service {
        "secretsmanager" => resource.strip_prefix("secret:"),
        "ssm" => resource.strip_prefix("parameter/"),
        other => {
            return Err(InputError::ArnService {
                arn: arn.to_string(),
                service: if other.is_empty() {
                    "no service".to_string()
                } else {
                    other.to_string()
                },
            })
        }
    };
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err(syntax_error(
            "the region is missing or malformed, such as us-east-1",
        ));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(syntax_error("the account ID is 12 digits"));
    }
    match name {
        Some(n) if !n.is_empty() && !n.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(syntax_error(if service == "ssm" {
            "an SSM parameter ARN ends in parameter/NAME"
        } else {
            "a Secrets Manager ARN ends in secret:NAME"
        })),
    }
}

fn check_azure(input: &str) -> Result<Option<String>, InputError> {
    let mut object_id = None;
    let mut secret_uri = None;
    let mut notes = Vec::new();
    for part in input.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let slot = if key.eq_ignore_ascii_case("ObjectId") {
            &mut object_id
        } else if key.eq_ignore_ascii_case("SecretUri") {
            &mut secret_uri
        } else {
            notes.push(format!("{key:?} is not a key the Azure Key Vault plugin is documented to read (ObjectId, SecretUri)"));
            continue;
        };
        if key != "ObjectId" && key != "SecretUri" {
            notes.push(format!(
                "{key:?} is written {} in the AKS documentation",
                if key.eq_ignore_ascii_case("ObjectId") {
                    "ObjectId"
                } else {
                    "SecretUri"
                }
            ));
        }
        *slot = Some(value);
    }
    let object_id =
        object_id.ok_or_else(|| InputError::AzureKeyMissing(input.to_string(), "ObjectId"))?;
    let secret_uri =
        secret_uri.ok_or_else(|| InputError::AzureKeyMissing(input.to_string(), "SecretUri"))?;
    syntax::guid(object_id).map_err(InputError::ObjectId)?;
    if let Some(note) = check_secret_uri(secret_uri)? {
        notes.push(note);
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// A Key Vault secret URI; `Ok(Some(note))` when its host is not a Key Vault of a known cloud.
fn check_secret_uri(uri: &str) -> Result<Option<String>, InputError> {
    let error = |why| InputError::SecretUri {
        uri: uri.to_string(),
        why,
    };
    let rest = uri
        .strip_prefix("https://")
        .ok_or_else(|| error("is not an https:// URI"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| error("names no secret"))?;
    let name = path
        .strip_prefix("secrets/")
        .ok_or_else(|| error("is not a secret's URI (its path starts with /secrets/)"))?;
    let name = name.split('/').next().unwrap_or_default();
    let name_ok = !name.is_empty()
        && name.len() <= 127
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok {
        return Err(error(
            "has no valid secret name (1 to 127 letters, digits and '-')",
        ));
    }
    let host = host.to_ascii_lowercase();
    let vault = KEY_VAULT_SUFFIXES
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix));
    Ok(match vault {
        Some(v) if !v.is_empty() && !v.contains('.') => None,
        Some(_) => return Err(error("has no vault name before the Key Vault domain")),
        None => Some(format!(
            "SecretUri's host {host:?} is not a Key Vault of a known Azure cloud (VAULT.vault.azure.net)"
        )),
    })
}

fn check_rancher(input: &str) -> Result<(), InputError> {
    let (namespace, secret) = input
        .split_once(':')
        .ok_or_else(|| InputError::RancherFormat(input.to_string()))?;
    syntax::namespace(namespace).map_err(|error| InputError::RancherNamespace {
        input: input.to_string(),
        error,
    })?;
    syntax::object_name(secret).map_err(|error| InputError::RancherSecret {
        input: input.to_string(),
        error,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:gmsa-plugin-input-AbCdEf";
    const SSM: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/gmsa-plugin-input";
    const URI: &str = "https://contoso-gmsa.vault.azure.net/secrets/gmsa-user";

    #[test]
    fn guids_are_found_in_any_case_with_or_without_braces() {
        assert_eq!(
            Plugin::from_guid("{859e1386-bdb4-49e8-85c7-3070b13920e1}"),
            Some(Plugin::Aws)
        );
        assert_eq!(Plugin::from_guid(AZURE_GUID), Some(Plugin::Azure));
        assert_eq!(
            Plugin::from_guid("{E4781092-F116-4B79-B55E-28EB6A224E26}"),
            Some(Plugin::Rancher)
        );
        assert_eq!(
            Plugin::from_guid("8019A64C-3F4E-4DE3-AD2B-9A544290E2C3"),
            None
        );
    }

    #[test]
    fn aws_input_is_a_json_string_the_checks_accept() {
        for arn in [
            ARN,
            SSM,
            "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/a/b",
        ] {
            let input = aws_input(arn).unwrap();
            assert_eq!(input, format!(r#"{{"credentialArn":"{arn}"}}"#));
            assert_eq!(Plugin::Aws.check_input(&input), Ok(None));
        }
        // AWS's own sample spacing reads the same.
        let spaced = format!(r#"{{"credentialArn": "{ARN}"}}"#);
        assert_eq!(Plugin::Aws.check_input(&spaced), Ok(None));
    }

    #[test]
    fn aws_mistakes() {
        let err = |input: &str| Plugin::Aws.check_input(input).unwrap_err().to_string();
        assert!(
            err(ARN).starts_with(&format!("{ARN:?} is a bare ARN")),
            "{}",
            err(ARN)
        );
        assert!(err(ARN).ends_with(&aws_input(ARN).unwrap()));
        assert!(err("{credentialArn: x}").contains("is not JSON"));
        assert!(err(r#"{"secretArn":"x"}"#).contains("has no credentialArn"));
        assert!(err(r#"{"credentialArn":7}"#).contains("must be a string, the ARN"));
        let s3 = r#"{"credentialArn":"arn:aws:s3:::bucket/credspec"}"#;
        assert!(err(s3).contains("is an ARN of s3"), "{}", err(s3));
        let account = r#"{"credentialArn":"arn:aws:ssm:us-east-1:1234:parameter/x"}"#;
        assert!(err(account).contains("the account ID is 12 digits"));
        let no_name =
            r#"{"credentialArn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:"}"#;
        assert!(err(no_name).contains("ends in secret:NAME"));
        assert!(aws_input("gmsa-plugin-input").is_err());
        let upper = format!(r#"{{"CredentialArn":"{ARN}"}}"#);
        let warning = Plugin::Aws.check_input(&upper).unwrap().unwrap();
        assert!(warning.contains("\"CredentialArn\""), "{warning}");
    }

    #[test]
    fn aws_object_becomes_the_string() {
        let object = serde_json::json!({"CredentialArn": SSM});
        assert_eq!(
            aws_input_from_object(object.as_object().unwrap()),
            Some(aws_input(SSM).unwrap())
        );
    }

    #[test]
    fn azure_input_and_mistakes() {
        let id = "6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e";
        let input = azure_input(id, URI).unwrap();
        assert_eq!(input, format!("ObjectId={id};SecretUri={URI}"));
        assert_eq!(Plugin::Azure.check_input(&input), Ok(None));
        let err = |input: &str| Plugin::Azure.check_input(input).unwrap_err().to_string();
        assert!(err(&format!("SecretUri={URI}")).contains("has no ObjectId"));
        assert!(err(&format!("ObjectId={id}")).contains("has no SecretUri"));
        assert!(err(&format!("ObjectId=kubelet;SecretUri={URI}"))
            .starts_with("ObjectId \"kubelet\" is not a GUID"));
        let http = format!("ObjectId={id};SecretUri=http://v.vault.azure.net/secrets/s");
        assert!(err(&http).contains("is not an https:// URI"));
        let keys = format!("ObjectId={id};SecretUri=https://v.vault.azure.net/keys/k");
        assert!(err(&keys).contains("is not a secret's URI"));
        let lower = format!("objectid={id};secreturi={URI}");
        assert!(Plugin::Azure.check_input(&lower).unwrap().is_some());
        let elsewhere = format!("ObjectId={id};SecretUri=https://vault.example.com/secrets/s");
        let note = Plugin::Azure.check_input(&elsewhere).unwrap().unwrap();
        assert!(
            note.contains("not a Key Vault of a known Azure cloud"),
            "{note}"
        );
        assert!(azure_input("x", URI).is_err());
    }

    #[test]
    fn rancher_input_and_mistakes() {
        let input = rancher_input("cattle-windows-gmsa-system", "contoso-gmsa-user").unwrap();
        assert_eq!(input, "cattle-windows-gmsa-system:contoso-gmsa-user");
        assert_eq!(Plugin::Rancher.check_input(&input), Ok(None));
        let err = |input: &str| Plugin::Rancher.check_input(input).unwrap_err().to_string();
        assert!(err("contoso-gmsa-user").contains("is not NAMESPACE:SECRET"));
        assert!(err("Cattle:user").starts_with("the namespace in \"Cattle:user\""));
        assert!(err("cattle:User_1").starts_with("the Secret's name in"));
    }
}
