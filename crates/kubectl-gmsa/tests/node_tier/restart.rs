//! A whole-cluster restart, and what `uninstall` leaves behind.

use super::*;

/// Every process stopped, then started: pods without GMSA are admitted as soon as the API
/// server answers; GMSA pods are refused until a replica is Ready and admitted after; no
/// deadlock.
pub(crate) fn whole_cluster_restart(node: &mut NodeCluster) {
    node.stop_all();
    let began = Instant::now();
    node.start_control_plane().unwrap_or_else(|e| panic!("{e}"));
    let api_up = began.elapsed();

    let (url, ca, token) = {
        let api = node.api();
        (
            api.url().to_string(),
            api.ca_pem().to_string(),
            api.admin_token().to_string(),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let post = |pod: &Value| {
                let mut pod = pod.clone();
                pod["metadata"]["generateName"] = json!("restart-");
                https_request(
                    "POST",
                    &format!("{url}/api/v1/namespaces/{NS}/pods?dryRun=All"),
                    &ca,
                    Some(&token),
                    Some(&pod.to_string()),
                )
                .unwrap_or_else(|e| (0, e.to_string()))
            };
            let mut plain = (0u32, Vec::new());
            let mut gmsa_refused = 0u32;
            // Probes until a GMSA pod is admitted, then a few more plain ones.
            let mut first_gmsa = None;
            let mut after = 0;
            while !stop.load(Ordering::Relaxed) && after < 10 {
                let (status, body) = post(&plain_pod());
                plain.0 += 1;
                if status != 201 {
                    plain.1.push(format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ));
                }
                if first_gmsa.is_none() {
                    let (status, body) = post(&gmsa_pod("webapp"));
                    if status == 201 {
                        assert!(
                            body.contains(MARKER),
                            "a GMSA pod admitted without contents: {body}"
                        );
                        first_gmsa = Some(began.elapsed());
                    } else {
                        gmsa_refused += 1;
                    }
                } else {
                    after += 1;
                }
                thread::sleep(Duration::from_millis(200));
            }
            (plain, gmsa_refused, first_gmsa)
        })
    };
    node.start_node_again().unwrap_or_else(|e| panic!("{e}"));
    let node_ready = began.elapsed();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !prober.is_finished() {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(250));
    }
    let ((plain_probes, plain_refused), gmsa_refused, first_gmsa) = prober.join().unwrap();
    eprintln!(
        "node tier: whole-cluster restart: API server up at +{:.1} s, node Ready at +{:.1} s, \
         first GMSA pod admitted at +{} ({gmsa_refused} GMSA probes refused before it); \
         {plain_probes} plain probes, {} refused",
        api_up.as_secs_f64(),
        node_ready.as_secs_f64(),
        first_gmsa.map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
        plain_refused.len()
    );
    assert!(
        plain_refused.is_empty(),
        "pods without GMSA refused during the restart: {plain_refused:?}"
    );
    assert!(
        first_gmsa.is_some(),
        "no GMSA pod admitted within three minutes of the restart"
    );
}

/// `uninstall` with a GMSA Deployment present names it, and leaves a guard that keeps its
/// new pods refused (never admitted without contents) while plain pods are admitted.
pub(crate) fn uninstall_names_what_it_lets_through(env: &Env) {
    let out = env.gmsa_ok(&["uninstall"]);
    let said = format!("{}{}", out.stdout, out.stderr);
    eprintln!("node tier: uninstall said:\n{said}");
    assert!(
        said.contains("webapp"),
        "the GMSA Deployment is not named: {said}"
    );
    let webhooks = env.webhook_configurations();
    assert!(!webhooks.contains("gmsa-webhook"), "{webhooks}");
    let (status, body) = env.dry_run(&gmsa_pod("webapp"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("GMSA admission is not installed"), "{body}");
    let (status, body) = env.dry_run(&plain_pod());
    assert_eq!(status, 201, "{body}");
}
