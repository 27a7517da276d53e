//! The exit status of every command, in one place: README's "Exit status" table says the
//! same, and every command's `--help` ends with [`ExitStatus::HELP`].

use std::process::ExitCode;

/// What a command's exit status means, whichever command it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// The command did its work: written, applied, admitted; every check passed or only warned.
    Success,
    /// The command did its work and the answer is no: a check failed (`doctor` FAIL,
    /// `credspec validate` found a problem) or `admit` refused an object.
    Refused,
    /// The command could not do its work: bad flags, unreadable or unusable input, an
    /// unreachable cluster or directory, rejected credentials, a refused apply.
    Error,
}

impl ExitStatus {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Refused => 1,
            ExitStatus::Error => 2,
        }
    }

    /// The paragraph every `--help` ends with.
    pub const HELP: &'static str = "\
Exit status (the same for every command; README.md, \"Exit status\"): 0 success, every check
passed or only warned; 1 a check failed or an object was refused (doctor FAIL, credspec
validate problems, admit denials); 2 an error: bad flags, unusable input, an unreachable
cluster or directory, a refused apply.";
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// A command's help text after the flags, ending with the exit statuses.
pub fn after_help(text: &str) -> String {
    format!("{text}\n\n{}", ExitStatus::HELP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_ordered_by_severity() {
        let all = [ExitStatus::Success, ExitStatus::Refused, ExitStatus::Error];
        let codes: Vec<u8> = all.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2]);
        // clap exits 2 on bad flags before any command runs: the same meaning as Error.
        assert_eq!(ExitStatus::Error.code(), 2);
    }

    #[test]
    fn help_names_every_code() {
        for status in [ExitStatus::Success, ExitStatus::Refused, ExitStatus::Error] {
            assert!(
                ExitStatus::HELP.contains(&format!("{} ", status.code())),
                "{status:?}"
            );
        }
    }
}
