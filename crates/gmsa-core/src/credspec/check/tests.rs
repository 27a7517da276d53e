use super::*;
use serde_json::json;

fn webapp1() -> Value {
    gmsa_testkit::credspecs::webapp1("gmsa-webapp1")
}

fn lines(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// Applies `edit` to the docs' example and returns the problems.
fn problems_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v = webapp1();
    edit(&mut v);
    lines(&validate(&v))
}

#[test]
fn the_documentation_example_is_fine_in_lowercase() {
    assert_eq!(validate(&webapp1()), vec![]);
    assert_eq!(validate_contents(&webapp1()["credspec"]), vec![]);
    let mut alpha = webapp1();
    alpha["apiVersion"] = json!("windows.k8s.io/v1alpha1");
    assert_eq!(validate(&alpha), vec![]);
}

#[test]
fn resource_fields() {
    let got = problems_after(|v| {
        v["metadata"]["name"] = json!("gmsa-WebApp1");
        v["kind"] = json!("Pod");
        v["apiVersion"] = json!("v1");
    });
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[0], r#"apiVersion: "v1" is not windows.k8s.io/v1"#);
    assert_eq!(got[1], r#"kind: "Pod" is not GMSACredentialSpec"#);
    assert!(
        got[2].starts_with(r#"metadata.name: "gmsa-WebApp1" is not a valid Kubernetes name"#),
        "{}",
        got[2]
    );
    assert!(got[2].ends_with(r#"use "gmsa-webapp1""#), "{}", got[2]);
    let got = lines(&validate(&json!({})));
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[3].starts_with("credspec: is missing"));
    assert_eq!(
        lines(&validate(&json!([]))),
        ["a GMSACredentialSpec must be an object, not a list"]
    );
}

#[test]
fn empty_credspec_lists_what_is_missing() {
    let got = problems_after(|v| v["credspec"] = json!({}));
    assert_eq!(
        got,
        [
            "credspec.CmsPlugins: is missing: write CmsPlugins: [ActiveDirectory]",
            "credspec.DomainJoinConfig: is missing: give DnsName, DnsTreeName, Guid, MachineAccountName, NetBiosName and Sid",
            "credspec.ActiveDirectoryConfig: is missing: it lists the gMSAs under GroupManagedServiceAccounts",
        ]
    );
    let got = problems_after(|v| v["credspec"] = json!(""));
    assert_eq!(got.len(), 1);
}

#[test]
fn syntax_of_domain_join_config() {
    let got = problems_after(|v| {
        let dj = &mut v["credspec"]["DomainJoinConfig"];
        dj["Guid"] = json!("244818ae");
        dj["Sid"] = json!("S-1-5-21-1-2-3-1105");
        dj["NetBiosName"] = json!("CONTOSOCONTOSO12");
        dj["DnsTreeName"] = json!(7);
        dj.as_object_mut().unwrap().remove("DnsName");
    });
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(
        got[0],
        "credspec.DomainJoinConfig.DnsName: is missing: give the domain's DNS name, such as contoso.com"
    );
    assert_eq!(
        got[1],
        "credspec.DomainJoinConfig.DnsTreeName: must be a string (the forest's DNS name, such as contoso.com), not a number"
    );
    assert!(got[2].starts_with(r#"credspec.DomainJoinConfig.Guid: "244818ae" is not a GUID"#));
    assert!(got[3].starts_with(
        r#"credspec.DomainJoinConfig.NetBiosName: "CONTOSOCONTOSO12" has 16 characters"#
    ));
    assert!(
        got[4].contains("use the domain's SID S-1-5-21-1-2-3"),
        "{}",
        got[4]
    );
}

#[test]
fn cms_plugins() {
    let got = problems_after(|v| v["credspec"]["CmsPlugins"] = json!(["Other"]));
    assert_eq!(
        got,
        ["credspec.CmsPlugins: does not list ActiveDirectory: add it"]
    );
    let got = problems_after(|v| v["credspec"]["CmsPlugins"] = json!("ActiveDirectory"));
    assert_eq!(got.len(), 1);
}

#[test]
fn accounts_agree_with_the_domain() {
    let mut v = webapp1();
    v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([
        {"Name": "WebApp1", "Scope": "CONTOSO"},
        {"Name": "Other", "Scope": "CONTOS0"},
        {"Name": "Log", "Scope": "dev.contoso.com"},
        {"Name": "", "Scope": "contoso.com"},
        "WebApp1"
    ]);
    let warnings = validate(&v).into_iter().filter(Problem::is_warning).count();
    assert_eq!(warnings, 2, "dev.contoso.com, and no DNS scope for WebApp1");
    let got: Vec<String> = validate(&v)
        .iter()
        .filter(|p| !p.is_warning())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[1].Scope: "CONTOS0" is neither this domain's DNS name nor its NetBIOS name ("contoso.com" or "CONTOSO"); an account of another domain is scoped to that domain's DNS name"#,
            "credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[3].Name: is empty: give the gMSA's account name, such as WebApp1",
            "credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[4]: must be an object with Name and Scope, not a string",
        ]
    );
    let got = problems_after(|v| {
        v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([{"Name": "Other", "Scope": "contoso.com"}, {"Name": "WebApp1", "Scope": "fabrikam.com"}]);
    });
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].contains(r#""fabrikam.com" is another domain"#));
    assert_eq!(
        got[1..],
        [
            r#"credspec.DomainJoinConfig.MachineAccountName: "WebApp1" is not among the GroupManagedServiceAccounts scoped to this domain ("contoso.com" or "CONTOSO"): add it, as New-CredentialSpec does"#
        ]
    );
    // Case does not matter in names and scopes.
    let got = problems_after(|v| {
        v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([{"Name": "webapp1", "Scope": "Contoso.COM"}, {"Name": "WEBAPP1", "Scope": "contoso"}]);
    });
    assert_eq!(got, Vec::<String>::new());
    let got = problems_after(|v| {
        v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = json!([]);
    });
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("is empty"));
}

fn host(h: Value) -> Vec<Problem> {
    let mut v = webapp1();
    v["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"] = h;
    validate(&v)
}

const AZURE_INPUT: &str = "ObjectId=6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e;SecretUri=https://contoso.vault.azure.net/secrets/gmsa";

#[test]
fn host_account_config_is_all_or_nothing() {
    assert_eq!(
        host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}", "PluginInput": AZURE_INPUT})
        ),
        vec![]
    );
    assert_eq!(
        lines(&host(json!({"PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}"}))),
        ["credspec.ActiveDirectoryConfig.HostAccountConfig: has PluginGUID but not PortableCcgVersion and PluginInput: a CCG plugin needs all of PortableCcgVersion, PluginGUID and PluginInput, a domain-joined host none"]
    );
    assert_eq!(host(json!({})).len(), 1);
    let got = host(json!({"PortableCcgVersion": "v1", "PluginGUID": "x", "PluginInput": ""}));
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(host(json!(null)).is_empty());
}

/// The AWS samples write PluginInput as an object; only the string is stored and read.
#[test]
fn aws_plugin_input_must_be_the_encoded_string() {
    let arn = "arn:aws:ssm:us-west-2:123456789012:parameter/gmsa-plugin-input";
    let spec = |input: Value| {
        host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "{859E1386-BDB4-49E8-85C7-3070B13920E1}", "PluginInput": input}),
        )
    };
    let got = spec(json!({ "CredentialArn": arn }));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].severity, Severity::Error);
    assert_eq!(
        got[0].to_string(),
        format!(
            r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginInput: is a JSON object: the AWS plugin reads its JSON document encoded as a string (on ECS the agent rewrites an object; on Kubernetes nothing does); write it as the string "{{\"credentialArn\":\"{arn}\"}}""#
        )
    );
    assert_eq!(
        spec(json!(format!(r#"{{"credentialArn":"{arn}"}}"#))),
        vec![]
    );
    let got = lines(&spec(json!(arn)));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("is a bare ARN"), "{}", got[0]);
    let got = lines(&spec(json!(
        r#"{"credentialArn":"arn:aws:iam::123456789012:role/x"}"#
    )));
    assert!(got[0].contains("is an ARN of iam"), "{}", got[0]);
    assert!(got[0].ends_with("(AWS plugin)"), "{}", got[0]);
}

#[test]
fn azure_and_rancher_inputs_are_checked() {
    let azure = |input: &str| {
        host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}", "PluginInput": input}),
        )
    };
    let got = lines(&azure("ObjectId=$MANAGED_ID;SecretUri=$SECRET_URI"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginInput: ObjectId "$MANAGED_ID" is not a GUID"#), "{}", got[0]);
    let rancher = |input: &str| {
        host(
            json!({"PortableCcgVersion": "1", "PluginGUID": "{e4781092-f116-4b79-b55e-28eb6a224e26}", "PluginInput": input}),
        )
    };
    assert_eq!(rancher("cattle-windows-gmsa-system:contoso-user"), vec![]);
    let got = lines(&rancher("contoso-user"));
    assert!(got[0].contains("is not NAMESPACE:SECRET"), "{}", got[0]);
}

#[test]
fn plugin_guid_needs_braces_and_unknown_plugins_are_a_warning() {
    let got = host(
        json!({"PortableCcgVersion": "1", "PluginGUID": "e4781092-f116-4b79-b55e-28eb6a224e26", "PluginInput": "ns:secret"}),
    );
    assert_eq!(
        lines(&got),
        [
            r#"credspec.ActiveDirectoryConfig.HostAccountConfig.PluginGUID: "e4781092-f116-4b79-b55e-28eb6a224e26" is not wrapped in braces: CCG does not invoke a plugin written without them; write "{E4781092-F116-4B79-B55E-28EB6A224E26}""#
        ]
    );
    let got = host(
        json!({"PortableCcgVersion": "1", "PluginGUID": "{8019A64C-3F4E-4DE3-AD2B-9A544290E2C3}", "PluginInput": "anything"}),
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].is_warning());
    assert!(got[0].message.starts_with(r#""{8019A64C-3F4E-4DE3-AD2B-9A544290E2C3}" is not a CCG plugin kubectl-gmsa knows (AWS {859E1386-BDB4-49E8-85C7-3070B13920E1}, Azure Key Vault {CCC2A336-D7F3-4818-A213-272B7924213E}, Rancher {e4781092-f116-4b79-b55e-28eb6a224e26})"#), "{}", got[0]);
}

#[test]
fn a_missing_scope_and_another_domain_are_warnings() {
    let accounts = |list: Value| {
        let mut v = webapp1();
        v["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"] = list;
        validate(&v)
    };
    let got = accounts(json!([{"Name": "WebApp1", "Scope": "contoso.com"}]));
    assert_eq!(got.len(), 1);
    assert!(got[0].is_warning());
    assert_eq!(
        got[0].to_string(),
        r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts: "WebApp1" is scoped to "contoso.com" but not to the domain's NetBIOS name "CONTOSO": add {Name: WebApp1, Scope: CONTOSO}, as New-CredentialSpec does"#
    );
    let got = lines(&accounts(json!([{"Name": "WebApp1", "Scope": "CONTOSO"}])));
    assert!(
        got[0].contains(r#"but not to the domain's DNS name "contoso.com""#),
        "{}",
        got[0]
    );
    let got = accounts(json!([
        {"Name": "WebApp1", "Scope": "contoso.com"}, {"Name": "WebApp1", "Scope": "CONTOSO"},
        {"Name": "Log", "Scope": "fabrikam.com"}
    ]));
    assert_eq!(got.len(), 1);
    assert!(got[0].is_warning());
    assert!(got[0].to_string().starts_with(r#"credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts[2].Scope: "fabrikam.com" is another domain than DomainJoinConfig's ("contoso.com" or "CONTOSO")"#), "{}", got[0]);
    // Every account in another domain: the spec names the wrong domain, an error.
    let got = accounts(json!([{"Name": "WebApp1", "Scope": "fabrikam.com"}]));
    assert!(
        got.iter()
            .any(|p| !p.is_warning() && p.path == "credspec.DomainJoinConfig.MachineAccountName"),
        "{got:#?}"
    );
}
