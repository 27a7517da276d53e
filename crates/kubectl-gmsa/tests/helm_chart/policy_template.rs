//! The chart's admission policies template, generated from gmsa-deploy's policy-mode rendering
//! so that its CEL is install's, never a copy that drifts: the policy objects rendered for a
//! sentinel name and namespace, as YAML, with both sentinels left to Helm.

use gmsa_deploy::{Admission, KubeVersion, Settings};
use serde_json::Value;

/// The template, relative to the chart.
pub const PATH: &str = "templates/admission-policies.yaml";

/// Set to 1, the generation test rewrites the template instead of comparing it.
pub const WRITE_ENV: &str = "GMSA_WRITE_CHART";

/// The test that compares (and with [`WRITE_ENV`] rewrites) the template.
pub const TEST: &str = "admission_policies_template_is_generated";

/// Names no rendered text holds otherwise (valid, so the settings pass their checks).
const NAME_SENTINEL: &str = "chart-sentinel-name";
const NAMESPACE_SENTINEL: &str = "chart-sentinel-namespace";

/// How to regenerate the template, for the file's header and the test's failure.
pub fn regenerate_command() -> String {
    format!("{WRITE_ENV}=1 cargo test -p kubectl-gmsa --test helm_chart {TEST}")
}

/// What install renders in policy mode alone: the published contents' CRD, then the policies
/// and their bindings.
pub fn policy_objects(settings: &Settings) -> Vec<Value> {
    let manifest = gmsa_deploy::render(settings, None).unwrap_or_else(|e| panic!("{e}"));
    let contents_crd = gmsa_deploy::crd::namespace_contents_crd_name();
    manifest
        .definitions
        .into_iter()
        .filter(|o| o.id.name == contents_crd)
        .chain(manifest.admission)
        .map(|o| o.body)
        .collect()
}

/// The template's text: the policy objects, rendered only in policy mode (where
/// `gmsa.policies` also refuses Kubernetes before 1.36).
pub fn generate() -> String {
    let settings = Settings {
        name: NAME_SENTINEL.into(),
        namespace: NAMESPACE_SENTINEL.into(),
        admission: Admission::Policies,
        kube_version: KubeVersion::ADMISSION_POLICIES,
        ..Settings::default()
    };
    let objects = policy_objects(&settings);
    assert!(!objects.is_empty(), "policy mode renders no policy objects");
    let docs: Vec<String> = objects
        .iter()
        .map(|o| {
            let mut doc = serde_saphyr::to_string(o).unwrap();
            if !doc.ends_with('\n') {
                doc.push('\n');
            }
            doc
        })
        .collect();
    // Whatever the CEL holds reaches the API server as rendered: `{{` is the only text Helm
    // would read as an action, so it is written as an action that prints it.
    let body = docs
        .join("---\n")
        .replace("{{", r#"{{ "{{" }}"#)
        // The namespace's sentinel first: the name's is a prefix of it.
        .replace(NAMESPACE_SENTINEL, "{{ .Release.Namespace }}")
        .replace(NAME_SENTINEL, "{{ .Values.name }}");
    let mut template = String::from(
        "{{- /*\n\
         Generated from gmsa-deploy's policy-mode rendering (crates/gmsa-deploy/src/policies) by\n\
         crates/kubectl-gmsa/tests/helm_chart/policy_template.rs: do not edit. After a change\n\
         there, regenerate it with\n",
    );
    template.push_str(&format!("  {}\n", regenerate_command()));
    template.push_str("*/ -}}\n{{- if eq (include \"gmsa.policies\" .) \"true\" }}\n");
    template.push_str(&body);
    template.push_str("{{- end }}\n");
    template
}
