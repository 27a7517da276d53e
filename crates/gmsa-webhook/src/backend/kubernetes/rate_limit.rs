//! The client rate limit (`QPS`, `BURST`) on the requests made on an admission's behalf, served
//! first come, first served. Watches are long-lived and not throttled per event; their
//! re-lists are paced by the watcher's backoff.

mod bucket;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Notify;
use tokio::time::Instant;

use bucket::{Ticket, TokenBucket};

/// A request that the queue ahead of it would start after its admission's deadline.
#[derive(Debug, Clone, PartialEq, Error)]
#[error(
    "the webhook's client rate limit (QPS {qps}, BURST {burst}) would start this request in {} ms, {}, past the admission's deadline: raise QPS and BURST if the API server can take more",
    .wait.as_millis(),
    queue_text(*.ahead)
)]
pub(super) struct RateLimited {
    /// How long until the limit would start it.
    pub(super) wait: Duration,
    /// Requests queued ahead of it, waiting for their turn.
    pub(super) ahead: usize,
    pub(super) qps: f32,
    pub(super) burst: u32,
}

fn queue_text(ahead: usize) -> String {
    match ahead {
        0 => "with no request queued ahead".to_string(),
        1 => "behind 1 queued request".to_string(),
        n => format!("behind {n} queued requests"),
    }
}

/// The limit, shared by every admission. Each request reserves its slot when it arrives, so a
/// waiter is never overtaken by a later one and its wait is known at once: a request the
/// queue would start after its deadline is refused before it waits, reserving nothing. A
/// waiter that gives up (its admission's deadline passed) gives its slot back, and those
/// behind it move up, so abandoned waits cannot leave later admissions short.
pub(super) struct RateLimiter {
    /// `None` when the limit is off (non-positive or non-finite `QPS`).
    bucket: Option<Mutex<TokenBucket>>,
    /// Woken when a slot is given back, so those behind it start sooner.
    moved_up: Notify,
    qps: f32,
    burst: u32,
}

impl RateLimiter {
    /// `qps` requests per second on average, `burst` at once.
    pub(super) fn new(qps: f32, burst: u32) -> Self {
        let burst = burst.max(1);
        let bucket = (qps.is_finite() && qps > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / f64::from(qps)).ok())
            .flatten()
            .map(|period| Mutex::new(TokenBucket::new(period, burst)));
        Self {
            bucket,
            moved_up: Notify::new(),
            qps,
            burst,
        }
    }

    /// Waits for this request's turn, if it comes by `latest_start`; else fails at once.
    /// Cancel-safe: a dropped wait gives its slot back.
    pub(super) async fn acquire(&self, latest_start: Instant) -> Result<(), RateLimited> {
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        let now = Instant::now();
        let reservation = lock(bucket)
            .reserve(now, latest_start)
            .map_err(|late| RateLimited {
                wait: late.start.saturating_duration_since(now),
                ahead: late.ahead,
                qps: self.qps,
                burst: self.burst,
            })?;
        let mut turn = Turn {
            limiter: self,
            bucket,
            ticket: Some(reservation.ticket),
        };
        if reservation.start <= now {
            turn.begin();
            return Ok(());
        }
        loop {
            let moved_up = self.moved_up.notified();
            tokio::pin!(moved_up);
            // Registered before looking, so a slot given back meanwhile is not missed.
            moved_up.as_mut().enable();
            let now = Instant::now();
            let start = turn.start(now);
            if start <= now {
                turn.begin();
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep_until(start) => {}
                () = moved_up => {}
            }
        }
    }
}

/// A reserved slot while its request waits; dropped before it begins, it gives the slot back.
struct Turn<'a> {
    limiter: &'a RateLimiter,
    bucket: &'a Mutex<TokenBucket>,
    /// `None` once begun.
    ticket: Option<Ticket>,
}

impl Turn<'_> {
    /// When the slot is, with the queue as it is `now`.
    fn start(&self, now: Instant) -> Instant {
        match &self.ticket {
            Some(ticket) => lock(self.bucket).start_of(ticket, now),
            None => now,
        }
    }

    /// The request begins: the slot is spent, not given back.
    fn begin(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(self.bucket).begin(ticket);
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(self.bucket).cancel(ticket);
            self.limiter.moved_up.notify_waiters();
        }
    }
}

/// The bucket's state is updated whole under the lock and nothing in it panics, so a poisoned
/// lock still guards a consistent bucket.
fn lock(bucket: &Mutex<TokenBucket>) -> MutexGuard<'_, TokenBucket> {
    bucket.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A limiter of `qps` and burst 1 whose token is taken, with `waiters` queued behind it
    /// (each with a minute to spare).
    async fn queued_behind_one(
        qps: f32,
        waiters: usize,
    ) -> (
        Arc<RateLimiter>,
        Vec<tokio::task::JoinHandle<Result<(), RateLimited>>>,
    ) {
        let limiter = Arc::new(RateLimiter::new(qps, 1));
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(limiter.acquire(far).await, Ok(()));
        let queued = (0..waiters)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire(far).await })
            })
            .collect();
        tokio::task::yield_now().await;
        (limiter, queued)
    }

    /// Paused time: every wait below is on the limiter's own arithmetic.
    #[tokio::test(start_paused = true)]
    async fn a_burst_then_a_refusal_that_names_the_queue() {
        let limiter = RateLimiter::new(1.0, 3);
        let soon = Instant::now() + Duration::from_millis(200);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(soon).await, Ok(()));
        }
        let refused = limiter
            .acquire(soon)
            .await
            .expect_err("the bucket is empty");
        assert_eq!(refused.wait, Duration::from_secs(1));
        assert_eq!(refused.ahead, 0);
        assert_eq!(
            refused.to_string(),
            "the webhook's client rate limit (QPS 1, BURST 3) would start this request in 1000 ms, with no request queued ahead, past the admission's deadline: raise QPS and BURST if the API server can take more"
        );
    }

    /// Issue 24 item 8: a newcomer arriving just as a waiter's turn comes must not take it.
    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order_of_arrival() {
        const PERIOD: Duration = Duration::from_millis(100);
        let limiter = Arc::new(RateLimiter::new(10.0, 1));
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        assert_eq!(limiter.acquire(far).await, Ok(()));
        // Five at once, then a newcomer each time one of them is due.
        let arrivals = (0..5u32)
            .map(|i| (i, t0))
            .chain((5..10u32).map(|i| (i, t0 + PERIOD * (i - 4))));
        let requests: Vec<_> = arrivals
            .map(|(i, at)| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    limiter.acquire(far).await.expect("in time");
                    (i, Instant::now() - t0)
                })
            })
            .collect();
        let mut began = Vec::new();
        for request in requests {
            began.push(request.await.expect("request"));
        }
        began.sort_by_key(|(_, at)| *at);
        let expected: Vec<(u32, Duration)> = (0..10u32).map(|i| (i, PERIOD * (i + 1))).collect();
        assert_eq!(began, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_the_queue_would_start_too_late_is_refused_naming_the_queue() {
        let (limiter, queued) = queued_behind_one(10.0, 5).await;
        let refused = limiter
            .acquire(Instant::now() + Duration::from_millis(550))
            .await
            .expect_err("behind five");
        assert_eq!(
            (refused.ahead, refused.wait),
            (5, Duration::from_millis(600))
        );
        assert!(
            refused.to_string().contains(
                "(QPS 10, BURST 1) would start this request in 600 ms, behind 5 queued requests, past the admission's deadline"
            ),
            "{refused}"
        );
        // It reserved nothing: the five are served as before, and the next one is 600 ms out.
        for request in queued {
            assert_eq!(request.await.expect("queued"), Ok(()));
        }
        let next = limiter
            .acquire(Instant::now())
            .await
            .expect_err("one period");
        assert_eq!((next.ahead, next.wait), (0, Duration::from_millis(100)));
    }

    /// The leak a reserving bucket had before: waiters that give up must leave the bucket as
    /// they found it, and those behind them move up. 200 waits at 20/s abandoned would
    /// otherwise push the next slot 10 s away.
    #[tokio::test(start_paused = true)]
    async fn abandoned_waits_give_their_slots_back() {
        let (limiter, waiters) = queued_behind_one(20.0, 200).await;
        let far = Instant::now() + Duration::from_secs(60);
        // One more, queued behind the 200.
        let last = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let asked = Instant::now();
                limiter.acquire(far).await.map(|()| asked.elapsed())
            })
        };
        tokio::task::yield_now().await;
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            let _ = waiter.await;
        }
        let waited = last.await.expect("last").expect("in time");
        assert!(waited <= Duration::from_millis(50), "{waited:?}");
        // And a newcomer after it is one period behind, not 200.
        let within = Instant::now() + Duration::from_millis(50);
        assert_eq!(limiter.acquire(within).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_positive_qps_means_no_limit() {
        for qps in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let limiter = RateLimiter::new(qps, 1);
            let now = Instant::now();
            for _ in 0..100 {
                assert_eq!(limiter.acquire(now).await, Ok(()), "qps {qps}");
            }
        }
    }
}
