//! Bounded waiting for tests: every wait has a limit, so a broken component fails a test
//! instead of hanging it.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 20 ms until it is true or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(limit, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}
