//! gMSA account names: how a name given by a user maps to a `sAMAccountName`, and which
//! existing gMSAs look like a mistyped name.

/// Characters Windows forbids in a `sAMAccountName`.
const FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];
/// How many suggestions an unknown-account error lists at most.
const MAX_CLOSE_MATCHES: usize = 5;
/// Names within this many single-character edits count as close.
const MAX_EDIT_DISTANCE: usize = 2;
/// Names that share at least this many leading characters count as close.
const MIN_SHARED_PREFIX: usize = 4;

/// The account name without its trailing `$`, as credential specs write it
/// (`WebApp1` for the `sAMAccountName` `WebApp1$`).
pub fn account_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    let name = name.strip_suffix('$').unwrap_or(name);
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control() || *c == '$')
    {
        return Err(format!("it contains {c:?}"));
    }
    Ok(name.to_string())
}

/// The existing gMSA names (given as `sAMAccountName`s, `$` optional) that look like `wanted`:
/// within a small edit distance, or sharing a prefix. Closest first, at most a handful.
pub fn close_matches<'a>(wanted: &str, existing: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let wanted: Vec<char> = wanted.to_lowercase().chars().collect();
    let mut scored: Vec<(usize, String)> = existing
        .into_iter()
        .map(|sam| sam.strip_suffix('$').unwrap_or(sam))
        .filter_map(|name| {
            let candidate: Vec<char> = name.to_lowercase().chars().collect();
            let distance = edit_distance(&wanted, &candidate);
            let shared = wanted
                .iter()
                .zip(&candidate)
                .take_while(|(a, b)| a == b)
                .count();
            let prefix_match = shared >= MIN_SHARED_PREFIX.min(wanted.len()) && wanted.len() >= 3;
            (distance <= MAX_EDIT_DISTANCE || prefix_match).then(|| (distance, name.to_string()))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1.eq_ignore_ascii_case(&b.1));
    scored
        .into_iter()
        .take(MAX_CLOSE_MATCHES)
        .map(|(_, name)| name)
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_dollar_is_optional() {
        assert_eq!(account_name("WebApp1").unwrap(), "WebApp1");
        assert_eq!(account_name("WebApp1$").unwrap(), "WebApp1");
        assert_eq!(account_name("  Reports$ ").unwrap(), "Reports");
    }

    #[test]
    fn names_that_cannot_be_sam_account_names_are_rejected() {
        for bad in ["", "$", "a*b", "x,y", "a$b", "a\nb", "user@contoso.com"] {
            assert!(account_name(bad).is_err(), "{bad:?} accepted");
        }
        // Parentheses are legal in a sAMAccountName; search filters escape them.
        assert_eq!(account_name("web(1)").unwrap(), "web(1)");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("webapp", "webapp1"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("same", "same"), 0);
    }

    #[test]
    fn close_matches_by_distance_and_prefix() {
        let existing = [
            "WebApp1$",
            "WebApp2$",
            "Reports$",
            "ReportingService$",
            "Sql$",
        ];
        assert_eq!(
            close_matches("WebApp", existing),
            vec!["WebApp1".to_string(), "WebApp2".to_string()]
        );
        assert_eq!(close_matches("webapp1", existing)[0], "WebApp1");
        assert_eq!(
            close_matches("Report", existing),
            vec!["Reports".to_string(), "ReportingService".to_string()]
        );
        assert!(close_matches("Payroll", existing).is_empty());
        // A short name is close to names within the edit distance only.
        assert_eq!(close_matches("Sq", existing), vec!["Sql".to_string()]);
    }

    #[test]
    fn close_matches_are_capped() {
        let existing: Vec<String> = (0..20).map(|i| format!("WebApp{i}$")).collect();
        let matches = close_matches("WebApp", existing.iter().map(String::as_str));
        assert_eq!(matches.len(), MAX_CLOSE_MATCHES);
    }
}
