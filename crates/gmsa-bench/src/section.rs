//! Sections of BENCHMARKS.md that one part of the suite writes and the others keep: each sits
//! between an HTML comment marker pair, so a part can replace its own without touching the rest.

/// A marked section of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub begin: &'static str,
    pub end: &'static str,
}

use std::path::Path;

/// Access decisions on a real kube-apiserver (`gmsa-bench authorization`).
pub const ACCESS_DECISIONS: Section = Section {
    begin: "<!-- access-decisions:begin -->",
    end: "<!-- access-decisions:end -->",
};

/// The allocator comparison: two builds of this binary (`--features mimalloc` and without)
/// run side by side, which one run of the suite cannot do, so it is measured by hand.
pub const ALLOCATOR: Section = Section {
    begin: "<!-- allocator:begin -->",
    end: "<!-- allocator:end -->",
};

/// Pod creation under each admission mode (`gmsa-bench policies`).
pub const ADMISSION_MODES: Section = Section {
    begin: "<!-- admission-modes:begin -->",
    end: "<!-- admission-modes:end -->",
};

/// Every section a full report keeps from the previous one.
pub const KEPT: [Section; 3] = [ACCESS_DECISIONS, ALLOCATOR, ADMISSION_MODES];

impl Section {
    /// The section of `report`, markers included.
    pub fn find<'a>(&self, report: &'a str) -> Option<&'a str> {
        match (report.find(self.begin), report.find(self.end)) {
            (Some(b), Some(e)) if e > b => Some(&report[b..e + self.end.len()]),
            _ => None,
        }
    }

    /// `report` with this section replaced by `text` (which carries the markers), or with
    /// `text` appended when the report has none.
    pub fn replace(&self, report: &str, text: &str) -> String {
        match (report.find(self.begin), report.find(self.end)) {
            (Some(b), Some(e)) if e > b => format!(
                "{}{}{}",
                &report[..b],
                text.trim_end(),
                &report[e + self.end.len()..]
            ),
            _ => format!("{}\n\n{}\n", report.trim_end(), text.trim_end()),
        }
    }

    /// Replaces this section of the report at `path` (created when missing) with `text`.
    pub fn write_into(&self, path: &Path, text: &str) -> std::io::Result<()> {
        let report = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, self.replace(&report, text))
    }

    /// `report` with the section of `old` appended, when `old` has one and `report` does not:
    /// a regenerated report keeps the sections it does not produce.
    pub fn keep(&self, report: &str, old: &str) -> String {
        match self.find(old) {
            Some(section) if !report.contains(self.begin) => {
                format!("{}\n\n{}\n", report.trim_end(), section)
            }
            _ => report.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_appended_once() {
        let s = ADMISSION_MODES;
        let first = s.replace(
            "# Report\n\ntext\n",
            &format!("{}\nold\n{}\n", s.begin, s.end),
        );
        assert!(
            first.ends_with(&format!("{}\nold\n{}\n", s.begin, s.end)),
            "{first}"
        );
        let second = s.replace(
            &format!("{first}\ntail\n"),
            &format!("{}\nnew\n{}", s.begin, s.end),
        );
        assert!(
            second.contains("new") && !second.contains("old"),
            "{second}"
        );
        assert!(
            second.ends_with("\ntail\n"),
            "what follows the section stays: {second}"
        );
        assert_eq!(second.matches(s.begin).count(), 1);
    }

    #[test]
    fn a_section_is_written_into_a_report_file_or_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("BENCHMARKS.md");
        let text = format!("{}\nrows\n{}", ACCESS_DECISIONS.begin, ACCESS_DECISIONS.end);
        ACCESS_DECISIONS.write_into(&path, &text).expect("new file");
        std::fs::write(&path, format!("# Report\n\n{text}\n\ntail\n")).expect("write");
        let newer = format!(
            "{}\nnewer\n{}",
            ACCESS_DECISIONS.begin, ACCESS_DECISIONS.end
        );
        ACCESS_DECISIONS
            .write_into(&path, &newer)
            .expect("existing file");
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written, format!("# Report\n\n{newer}\n\ntail\n"));
    }

    #[test]
    fn a_regenerated_report_keeps_the_sections_it_does_not_write() {
        let old = format!(
            "# Old\n\n{}\nmeasured\n{}\n",
            ALLOCATOR.begin, ALLOCATOR.end
        );
        let kept = ALLOCATOR.keep("# New\n", &old);
        assert!(kept.starts_with("# New\n"));
        assert!(kept.contains(&format!("{}\nmeasured\n{}", ALLOCATOR.begin, ALLOCATOR.end)));
        assert_eq!(
            ALLOCATOR.keep(&kept, &old).matches(ALLOCATOR.begin).count(),
            1
        );
        assert_eq!(ALLOCATOR.keep("# New\n", "# Old\n"), "# New\n");
        assert_eq!(ACCESS_DECISIONS.find(&old), None);
    }
}
