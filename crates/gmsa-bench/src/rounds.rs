//! Rounds of one cell, reduced to the round shown: interleaved rounds see the same background
//! load, and the median round is robust to one disturbed by the machine.

/// One row per `key`, in first-seen order: the round with the median `by`.
pub fn median<R, K: PartialEq>(
    rows: Vec<R>,
    key: impl Fn(&R) -> K,
    by: impl Fn(&R) -> f64,
) -> Vec<R> {
    let mut groups: Vec<(K, Vec<R>)> = Vec::new();
    for row in rows {
        let k = key(&row);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(row),
            None => groups.push((k, vec![row])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(_, mut group)| {
            group.sort_by(|a, b| by(a).total_cmp(&by(b)));
            let middle = group.len() / 2;
            group.into_iter().nth(middle)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cell_keeps_its_median_round_in_first_seen_order() {
        let rows = vec![
            ("b", 3.0),
            ("a", 9.0),
            ("b", 1.0),
            ("a", 1.0),
            ("b", 2.0),
            ("a", 5.0),
        ];
        assert_eq!(median(rows, |r| r.0, |r| r.1), [("b", 2.0), ("a", 5.0)]);
    }
}
