//! What doctor found: a row per finding, the worst of them, and the two ways they are printed
//! (aligned rows with each fix under its row, or JSON for scripts).

use std::fmt;

use serde::Serialize;
use serde_json::json;

use crate::exit::ExitStatus;

/// How bad a finding is; the worst one is the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    /// A stable identifier: `crd`, `crd-storage`, `webhook-configurations`, `certificate`, `certificate-expiry`,
    /// `webhook-ready`, `reference-webhook`, `credspec`, `pod-spec-exists`, `pod-grant`, `pod-contents`,
    /// `pod-windows`, `pod-hostname`, `pod`; in policy mode `admission-policies`,
    /// `published-contents`, `admission-cost` and `keeper` instead of the webhook's rows; `uninstall-guard` when
    /// an uninstall left its guard.
    pub check: String,
    /// What it is about (`default/iis`, `gmsa-webapp1`).
    pub subject: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The findings so far, in the order the checks ran.
#[derive(Default)]
pub(super) struct Report {
    pub(super) findings: Vec<Finding>,
}

impl Report {
    fn add(
        &mut self,
        status: Status,
        check: &str,
        subject: &str,
        detail: String,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            status,
            check: check.into(),
            subject: subject.into(),
            detail,
            fix,
        });
    }
    pub(super) fn pass(&mut self, check: &str, subject: &str, detail: String) {
        self.add(Status::Pass, check, subject, detail, None);
    }
    pub(super) fn warn(&mut self, check: &str, subject: &str, detail: String, fix: String) {
        self.add(Status::Warn, check, subject, detail, Some(fix));
    }
    pub(super) fn fail(&mut self, check: &str, subject: &str, detail: String, fix: String) {
        self.add(Status::Fail, check, subject, detail, Some(fix));
    }
    pub(super) fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Pass)
    }
}

/// The exit status for these findings, with or without `--ad`: a cluster that cannot be read
/// is an error (nothing could be checked); a failed check is a refusal; warnings alone pass.
pub fn exit_status(findings: &[Finding]) -> ExitStatus {
    let unreachable = findings
        .iter()
        .any(|f| f.check == CLUSTER && f.status == Status::Fail);
    if unreachable {
        return ExitStatus::Error;
    }
    match findings.iter().map(|f| f.status).max() {
        Some(Status::Fail) => ExitStatus::Refused,
        None | Some(Status::Pass | Status::Warn) => ExitStatus::Success,
    }
}

/// The row that says whether the cluster could be read at all.
pub(super) const CLUSTER: &str = "cluster";

/// The report as `-o json` prints it: the findings, the worst status, and the node steps when
/// asked for (`null` otherwise).
pub(super) fn json(report: &Report, steps: Option<&str>) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&json!({
        "findings": report.findings,
        "worst": report.worst(),
        "nodeSteps": steps,
    }))
}

/// The findings as aligned rows, each fix on its own indented line.
pub fn table(findings: &[Finding]) -> String {
    let width = findings
        .iter()
        .map(|f| f.check.len() + f.subject.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let what = if f.subject.is_empty() {
            f.check.clone()
        } else {
            format!("{} {}", f.check, f.subject)
        };
        out.push_str(&format!("{}  {what:<width$}  {}\n", f.status, f.detail));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let count = |s| findings.iter().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_fixes_and_a_summary() {
        let findings = vec![
            Finding {
                status: Status::Pass,
                check: "crd".into(),
                subject: String::new(),
                detail: "ok".into(),
                fix: None,
            },
            Finding {
                status: Status::Fail,
                check: "pod-grant".into(),
                subject: "default/iis".into(),
                detail: "no".into(),
                fix: Some("kubectl gmsa grant x".into()),
            },
        ];
        let text = table(&findings);
        assert!(
            text.contains("FAIL  pod-grant default/iis  no\n      fix: kubectl gmsa grant x\n"),
            "{text}"
        );
        assert!(text.ends_with("1 passed, 0 warnings, 1 failed\n"));
    }

    fn row(check: &str, status: Status) -> Finding {
        Finding {
            status,
            check: check.into(),
            subject: String::new(),
            detail: String::new(),
            fix: None,
        }
    }

    #[test]
    fn exit_status_fails_on_a_failed_check_and_errs_on_an_unreadable_cluster() {
        assert_eq!(exit_status(&[]), ExitStatus::Success);
        assert_eq!(
            exit_status(&[row("crd", Status::Pass)]),
            ExitStatus::Success
        );
        let warned = [row("ad-spn", Status::Pass), row("ad-scopes", Status::Warn)];
        assert_eq!(exit_status(&warned), ExitStatus::Success);
        let failed = [
            row("ad-scopes", Status::Warn),
            row("pod-grant", Status::Fail),
        ];
        assert_eq!(exit_status(&failed), ExitStatus::Refused);
        let unreachable = [row("pod-grant", Status::Fail), row(CLUSTER, Status::Fail)];
        assert_eq!(exit_status(&unreachable), ExitStatus::Error);
    }
}
