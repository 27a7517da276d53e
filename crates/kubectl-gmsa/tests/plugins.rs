//! Credential specs for CCG plugins: `credspec new --plugin` writes each plugin's spec as the
//! shared fixture has it, `credspec validate` passes it, `admit` inlines it unchanged; every
//! mistake of the shared table is refused or warned by `credspec validate` with its message.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use gmsa_core::canonical::to_go_json;
use gmsa_testkit::credspecs::{
    mistakes, plugin_specs, AWS_ARN, AZURE_OBJECT_ID, AZURE_SECRET_URI, RANCHER_NAMESPACE,
    RANCHER_SECRET,
};
use serde_json::{json, Value};
use support::{copy_data, run};

const DOMAIN: &[&str] = &[
    "--account",
    "WebApp1",
    "--domain",
    "contoso.com",
    "--netbios",
    "CONTOSO",
    "--domain-guid",
    "244818ae-87ac-4fcd-92ec-e79e5252348a",
    "--domain-sid",
    "S-1-5-21-2126449477-2524075714-3094792973",
];

fn plugin_flags(plugin: &str) -> Vec<&'static str> {
    match plugin {
        "aws" => vec!["--plugin", "aws", "--credential-arn", AWS_ARN],
        "azure" => vec![
            "--plugin",
            "azure",
            "--object-id",
            AZURE_OBJECT_ID,
            "--secret-uri",
            AZURE_SECRET_URI,
        ],
        _ => vec![
            "--plugin",
            "rancher",
            "--secret-namespace",
            RANCHER_NAMESPACE,
            "--secret",
            RANCHER_SECRET,
        ],
    }
}

fn new_spec(dir: &std::path::Path, name: &str, plugin: &str) -> support::Run {
    let mut args = vec!["credspec", "new", name];
    args.extend_from_slice(DOMAIN);
    args.extend(plugin_flags(plugin));
    run(dir, &args)
}

#[test]
fn each_plugin_round_trips_through_new_validate_and_admit() {
    for (plugin, mut expected) in plugin_specs() {
        let dir = tempfile::tempdir().unwrap();
        copy_data("state", dir.path());
        copy_data("with-creds.yaml", dir.path());
        let out = new_spec(dir.path(), "gmsa-webapp1", plugin);
        assert_eq!(out.code, 0, "{plugin}: {}", out.stderr);
        expected["metadata"]["name"] = json!("gmsa-webapp1");
        let written = out.docs();
        assert_eq!(written, [expected.clone()], "{plugin}");

        let spec_file = dir.path().join("state/gmsa-webapp1.yaml");
        std::fs::write(&spec_file, &out.stdout).unwrap();
        let checked = run(
            dir.path(),
            &["credspec", "validate", "state/gmsa-webapp1.yaml"],
        );
        assert_eq!(checked.code, 0, "{plugin}: {}", checked.stdout);
        assert_eq!(checked.stdout, "", "{plugin}");
        assert!(
            checked.stderr.contains("0 problems, 0 warnings"),
            "{}",
            checked.stderr
        );

        let admitted = run(
            dir.path(),
            &["admit", "-f", "with-creds.yaml", "--state", "state"],
        );
        assert_eq!(admitted.code, 0, "{plugin}: {}", admitted.stderr);
        let pod = &admitted.docs()[0]["spec"]["template"]["spec"];
        let inlined = pod["securityContext"]["windowsOptions"]["gmsaCredentialSpec"]
            .as_str()
            .unwrap();
        assert_eq!(inlined, to_go_json(&expected["credspec"]), "{plugin}");
        let parsed: Value = serde_json::from_str(inlined).unwrap();
        assert_eq!(parsed, expected["credspec"], "{plugin}");
    }
}

#[test]
fn plugin_flags_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--plugin", "aws", "--credential-arn", "gmsa-plugin-input"],
            "--credential-arn: \"gmsa-plugin-input\" is not an ARN",
        ),
        (
            &[
                "--plugin",
                "azure",
                "--object-id",
                "kubelet",
                "--secret-uri",
                AZURE_SECRET_URI,
            ],
            "--object-id: ObjectId \"kubelet\" is not a GUID",
        ),
        (
            &[
                "--plugin",
                "azure",
                "--object-id",
                AZURE_OBJECT_ID,
                "--secret-uri",
                "contoso-gmsa/gmsa-user",
            ],
            "--secret-uri: SecretUri \"contoso-gmsa/gmsa-user\" is not an https:// URI",
        ),
        (
            &[
                "--plugin",
                "rancher",
                "--secret-namespace",
                "Cattle",
                "--secret",
                "x",
            ],
            "--secret-namespace: the namespace in \"Cattle:x\"",
        ),
        (&["--plugin", "aws"], "--credential-arn <ARN>"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["credspec", "new", "gmsa-webapp1"];
        args.extend_from_slice(DOMAIN);
        args.extend_from_slice(flags);
        let out = run(dir.path(), &args);
        assert_eq!(out.code, 2, "{flags:?}: {}", out.stdout);
        assert!(out.stderr.contains(expected), "{flags:?}: {}", out.stderr);
    }
    let mut args = vec!["credspec", "new", "gmsa-webapp1"];
    args.extend_from_slice(DOMAIN);
    args.extend(plugin_flags("aws"));
    args.extend(["--ccg-plugin-guid", "x", "--ccg-plugin-input", "y"]);
    let out = run(dir.path(), &args);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

#[test]
fn each_mistake_is_refused_or_warned_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    for mistake in mistakes() {
        let file = format!("{}.json", mistake.id);
        std::fs::write(dir.path().join(&file), mistake.spec.to_string()).unwrap();
        let out = run(dir.path(), &["credspec", "validate", &file]);
        // The line about this mistake; a mistake may bring others (all accounts in another
        // domain is also each account in another domain).
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(mistake.words[0]) && l.contains(mistake.words[1]))
            .unwrap_or_else(|| panic!("{}: {}", mistake.id, out.stdout));
        if mistake.refused {
            assert_eq!(out.code, 1, "{}", mistake.id);
            assert!(!line.contains(": warning: "), "{line}");
        } else {
            assert_eq!(out.code, 0, "{}", mistake.id);
            assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
            assert!(line.contains(": warning: "), "{line}");
        }
        for word in mistake.words {
            assert!(
                line.contains(word),
                "{}: {word:?} not in {line}",
                mistake.id
            );
        }
    }
}

#[test]
fn ccg_version_needs_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["credspec", "new", "gmsa-webapp1"];
    args.extend_from_slice(DOMAIN);
    args.extend(["--ccg-version", "2"]);
    let out = run(dir.path(), &args);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr.trim_end(),
        "error: --ccg-version is the PortableCcgVersion of a CCG plugin, and no plugin is given: add --plugin aws|azure|rancher with its flags (or --ccg-plugin-guid and --ccg-plugin-input), or leave --ccg-version out"
    );
    // With a plugin, by name or by GUID, it is written as given.
    for plugin in [
        plugin_flags("rancher"),
        vec![
            "--ccg-plugin-guid",
            "{00000000-1111-2222-3333-444444444444}",
            "--ccg-plugin-input",
            "x",
        ],
    ] {
        let mut args = vec!["credspec", "new", "gmsa-webapp1"];
        args.extend_from_slice(DOMAIN);
        args.extend(plugin.iter().copied());
        args.extend(["--ccg-version", "2"]);
        let out = run(dir.path(), &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let host = &out.docs()[0]["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"];
        assert_eq!(host["PortableCcgVersion"], "2", "{plugin:?}");
    }
}
