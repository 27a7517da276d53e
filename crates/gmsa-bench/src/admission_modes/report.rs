//! The admission-mode rows as their section of BENCHMARKS.md.

use std::fmt::Write as _;

use super::{Mode, Plan, Row};
use crate::section::ADMISSION_MODES;

/// The rows as the section of BENCHMARKS.md, markers included.
pub fn markdown(rows: &[Row], plan: &Plan, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", ADMISSION_MODES.begin);
    let _ = writeln!(out, "## Policy mode: pod creation by admission mode\n");
    let _ = writeln!(
        out,
        "kube-apiserver v1.37.2 and etcd 3.6 on loopback; the admin creates {} pods per cell \
         (after {} unmeasured) over {} keep-alive connections, each pod naming a credential spec \
         its service account may `use`. `none` has no GMSA admission at all (the floor: what a \
         pod create costs on this server); `webhook` is the webhook (kube backend, caches on, \
         its own process) registered by URL with the configurations install renders; \
         `policies` is the admission policies `install --admission policies` renders, with no \
         process on the path. CPU is the kube-apiserver's user+system time over the window \
         (`/proc`, 10 ms ticks) divided by the pods created, and the webhook's the same way. \
         The heap is the API server's `go_memstats_heap_alloc_bytes` right after a collection \
         (`/debug/pprof/heap?gc=1`) at the end of the cell, pods still stored; it carries what \
         earlier cells left (watch-cache history), so compare it within one spec count. \
         Every mode's first pod is read back: contents inlined in every mode but `none`. Modes \
         interleave, {} rounds; the round with the median API-server CPU is shown. Measured \
         with `{command}`.\n",
        plan.pods,
        plan.warmup,
        plan.connections,
        plan.rounds.max(1)
    );
    let _ = writeln!(
        out,
        "The specs are the cluster's; the pods' service account may `use` {} of them (its \
         namespace's published contents hold those), as a namespace running one app or a few \
         would.\n",
        plan.namespace_specs
    );
    let _ = writeln!(
        out,
        "| specs | mode | pods/s | p50 | p99 | API server CPU/pod | vs none | webhook CPU/pod | API server heap | failed |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let floor = rows
            .iter()
            .find(|r| r.specs == row.specs && r.mode == Mode::None.name())
            .map(|r| r.apiserver_cpu_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {:.0} MiB | {} of {} |",
            row.specs,
            row.mode,
            if row.pods_per_s < 10.0 {
                format!("{:.2}", row.pods_per_s)
            } else {
                format!("{:.0}", row.pods_per_s)
            },
            row.p50_ms,
            row.p99_ms,
            row.apiserver_cpu_ms,
            floor
                .filter(|f| *f > 0.0)
                .map(|f| format!("{:.2}×", row.apiserver_cpu_ms / f))
                .unwrap_or_else(|| "–".into()),
            row.webhook_cpu_ms
                .map(|w| format!("{w:.2} ms"))
                .unwrap_or_else(|| "–".into()),
            row.apiserver_heap_mib,
            row.failures,
            row.pods + row.failures
        );
    }
    for mode in [Mode::Webhook, Mode::Policies] {
        if let Some(growth) = growth(rows, mode) {
            let _ = writeln!(out, "\n{growth}");
        }
    }
    // The designs measured before this one: a record, not regenerated.
    let _ = writeln!(out, "\n{}", DESIGNS_TRIED.trim_end());
    let _ = writeln!(out, "{}", ADMISSION_MODES.end);
    out
}

/// What issue 21 measured of the designs before the present one (their code is in git history).
const DESIGNS_TRIED: &str = include_str!("designs_tried.md");

/// How a mode's cost grows with the number of specs, from its smallest to its largest count.
fn growth(rows: &[Row], mode: Mode) -> Option<String> {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.mode == mode.name()).collect();
    let first = mine.iter().min_by_key(|r| r.specs)?;
    let last = mine.iter().max_by_key(|r| r.specs)?;
    if last.specs <= first.specs {
        return None;
    }
    let extra = (last.specs - first.specs) as f64;
    let why = match mode {
        Mode::Policies => {
            " (the policies read one object, the pod's namespace's, whatever the number of \
             specs: what remains is noise)."
        }
        _ => ".",
    };
    Some(format!(
        "In `{}` mode, going from {} to {} specs adds {:.2} µs of API-server CPU and {:.2} µs \
         of p50 latency per pod for each spec added{why}",
        mode.name(),
        first.specs,
        last.specs,
        (last.apiserver_cpu_ms - first.apiserver_cpu_ms) * 1000.0 / extra,
        (last.p50_ms - first.p50_ms) * 1000.0 / extra,
    ))
}
