//! The arithmetic of the client rate limit, apart from any waiting: a token bucket that hands
//! out its tokens first come, first served. Each request reserves its slot when it arrives
//! (as Go's `rate.Limiter.Reserve` does), so a later arrival cannot take a token an earlier
//! waiter is due; a reservation given back moves everyone behind it up one slot.
//!
//! The bucket is a GCRA: `full_at` is when the bucket would be full again with every
//! reservation so far counted. Reservations waiting for their slot form a queue, and their
//! slots follow from it alone: the last waits until `full_at - burst × period`, each one ahead
//! of it one period less. Nothing else is stored, so a reservation given back from the middle
//! of the queue needs no bookkeeping beyond its removal.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A reserved slot, until its request begins or gives the slot back. Neither `Clone` nor
/// `Copy`: [`TokenBucket::begin`] and [`TokenBucket::cancel`] take it, so a slot is spent or
/// returned once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// A slot reserved for a request.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) ticket: Ticket,
    /// When the request may begin; at or before the reservation's `now`: at once.
    pub(crate) start: Instant,
}

/// A request the queue ahead of it would start too late; it reserved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLate {
    /// When it would have started.
    pub(crate) start: Instant,
    /// Reservations queued ahead of it, still waiting for their slots.
    pub(crate) ahead: usize,
}

/// `burst` tokens at once, then one every `period`, handed out in order of arrival.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    period: Duration,
    burst: u32,
    /// When the bucket is full again, every reservation counted; `None`: full, never used.
    full_at: Option<Instant>,
    /// Reservations waiting for their slot, oldest first (tickets rise with arrival).
    queue: VecDeque<u64>,
    next_ticket: u64,
}

impl TokenBucket {
    /// A full bucket; a `burst` of 0 holds one token, as there is no other way to serve.
    pub(crate) fn new(period: Duration, burst: u32) -> Self {
        Self {
            period,
            burst: burst.max(1),
            full_at: None,
            queue: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Reserves the next slot for a request arriving at `now`, behind every reservation already
    /// made, unless that slot is after `latest`: then nothing is reserved.
    pub(crate) fn reserve(
        &mut self,
        now: Instant,
        latest: Instant,
    ) -> Result<Reservation, TooLate> {
        // A bucket that was full before `now` is full at `now`: tokens do not pile up.
        let from = self.full_at.map_or(now, |full_at| full_at.max(now));
        let start = self.slot(from, self.burst - 1, now);
        let too_late = TooLate {
            start,
            ahead: self.queue.len(),
        };
        if start > latest {
            return Err(too_late);
        }
        // Only a limit of one token every few billion years gets here.
        let full_at = from.checked_add(self.period).ok_or(too_late)?;
        self.full_at = Some(full_at);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back(ticket);
        Ok(Reservation {
            ticket: Ticket(ticket),
            start,
        })
    }

    /// When the request holding `ticket` may begin, with the queue as it is now: never later
    /// than its reservation said, earlier once reservations ahead of it were given back.
    pub(crate) fn start_of(&self, ticket: &Ticket, now: Instant) -> Instant {
        let (Some(full_at), Ok(index)) = (self.full_at, self.queue.binary_search(&ticket.0)) else {
            // Not queued: only a ticket of another bucket. It had its turn.
            return now;
        };
        let behind = self.queue.len() - 1 - index;
        let periods = u32::try_from(behind)
            .ok()
            .and_then(|behind| behind.checked_add(self.burst))
            .unwrap_or(u32::MAX);
        self.slot(full_at, periods, now)
    }

    /// The request holding `ticket` begins: its token is spent and it leaves the queue.
    pub(crate) fn begin(&mut self, ticket: Ticket) {
        self.remove(&ticket);
    }

    /// Gives the slot of `ticket` back: every reservation behind it moves up one period, and
    /// the next arrival starts one period sooner. A request that gave up costs nothing.
    pub(crate) fn cancel(&mut self, ticket: Ticket) {
        if self.remove(&ticket) {
            self.full_at = self
                .full_at
                .and_then(|full_at| full_at.checked_sub(self.period));
        }
    }

    /// Reservations waiting for their slots.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// `periods` periods before `from`, and not before `now`.
    fn slot(&self, from: Instant, periods: u32, now: Instant) -> Instant {
        self.period
            .checked_mul(periods)
            .and_then(|back| from.checked_sub(back))
            .map_or(now, |slot| slot.max(now))
    }

    /// Takes `ticket` out of the queue; whether it was there.
    fn remove(&mut self, ticket: &Ticket) -> bool {
        match self.queue.binary_search(&ticket.0) {
            Ok(index) => {
                self.queue.remove(index);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(200);
    const FAR: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Reserves at `now` with no deadline to speak of; the delay until the slot.
    fn delay(bucket: &mut TokenBucket, now: Instant) -> (Ticket, Duration) {
        let reservation = bucket.reserve(now, now + FAR).expect("a slot");
        (reservation.ticket, reservation.start - now)
    }

    #[test]
    fn a_burst_at_once_then_one_per_period() {
        let mut bucket = TokenBucket::new(PERIOD, 10);
        let now = Instant::now();
        let delays: Vec<Duration> = (0..13).map(|_| delay(&mut bucket, now).1).collect();
        assert_eq!(&delays[..10], &[Duration::ZERO; 10]);
        assert_eq!(&delays[10..], &[ms(200), ms(400), ms(600)]);
        assert_eq!(bucket.queued(), 13);
    }

    #[test]
    fn tokens_come_back_one_per_period_and_never_above_the_burst() {
        let mut bucket = TokenBucket::new(PERIOD, 2);
        let t0 = Instant::now();
        for _ in 0..2 {
            let (ticket, wait) = delay(&mut bucket, t0);
            assert_eq!(wait, Duration::ZERO);
            bucket.begin(ticket);
        }
        // One token back after one period; only that one.
        let t1 = t0 + PERIOD;
        assert_eq!(delay(&mut bucket, t1).1, Duration::ZERO);
        assert_eq!(delay(&mut bucket, t1).1, PERIOD);
        // A long quiet refills the bucket to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        let waits: Vec<Duration> = (0..3).map(|_| delay(&mut bucket, t2).1).collect();
        assert_eq!(waits, [Duration::ZERO, Duration::ZERO, PERIOD]);
    }

    /// The fault of issue 24 item 8: a later arrival must not take the slot of an earlier
    /// waiter. Arrivals come faster than the limit and the waiters look for their turn newest
    /// first, as a bucket without reservations would let the newest win.
    #[test]
    fn slots_go_in_order_of_arrival_under_interleaved_arrivals() {
        let mut bucket = TokenBucket::new(PERIOD, 1);
        let t0 = Instant::now();
        let mut waiting: Vec<(usize, Ticket, Instant)> = Vec::new();
        let mut began: Vec<(usize, Instant)> = Vec::new();
        // An arrival every 70 ms; every 30 ms each waiter checks, and begins if its slot came.
        for step in 0..300u32 {
            let now = t0 + ms(10) * step;
            if step % 7 == 0 && step < 84 {
                let id = waiting.len() + began.len();
                let reservation = bucket.reserve(now, now + FAR).expect("a slot");
                waiting.push((id, reservation.ticket, reservation.start));
            }
            if step % 3 == 0 {
                for (id, ticket, reserved) in std::mem::take(&mut waiting).into_iter().rev() {
                    let start = bucket.start_of(&ticket, now);
                    assert_eq!(
                        start,
                        reserved.max(now),
                        "waiter {id}: its slot never moves"
                    );
                    if start <= now {
                        bucket.begin(ticket);
                        began.push((id, reserved));
                    } else {
                        waiting.insert(0, (id, ticket, reserved));
                    }
                }
            }
        }
        assert!(waiting.is_empty());
        let expected: Vec<(usize, Instant)> =
            (0..12u32).map(|n| (n as usize, t0 + PERIOD * n)).collect();
        assert_eq!(began, expected, "in order of arrival, one every period");
    }

    #[test]
    fn a_later_arrival_queues_behind_a_waiter_whose_slot_has_come() {
        let mut bucket = TokenBucket::new(PERIOD, 1);
        let t0 = Instant::now();
        let (first, _) = delay(&mut bucket, t0);
        bucket.begin(first);
        let (waiter, wait) = delay(&mut bucket, t0);
        assert_eq!(wait, PERIOD);
        // The waiter's slot has come but it has not woken yet; a newcomer arrives.
        let late = t0 + PERIOD + ms(5);
        let (_newcomer, newcomer_wait) = delay(&mut bucket, late);
        assert_eq!(newcomer_wait, PERIOD - ms(5), "behind the waiter");
        assert!(
            bucket.start_of(&waiter, late) <= late,
            "the waiter's slot stays its own"
        );
    }

    #[test]
    fn a_cancelled_slot_moves_those_behind_it_up() {
        let mut bucket = TokenBucket::new(PERIOD, 1);
        let now = Instant::now();
        let tickets: Vec<Ticket> = (0..4).map(|_| delay(&mut bucket, now).0).collect();
        let [a, b, c, d] = <[Ticket; 4]>::try_from(tickets).expect("four");
        bucket.begin(a);
        assert_eq!(bucket.start_of(&d, now) - now, PERIOD * 3);
        bucket.cancel(b);
        assert_eq!(bucket.start_of(&c, now) - now, PERIOD, "moved up");
        assert_eq!(bucket.start_of(&d, now) - now, PERIOD * 2, "moved up");
        bucket.cancel(d);
        assert_eq!(bucket.start_of(&c, now) - now, PERIOD, "ahead: unchanged");
        // The next arrival takes the slot the two gave back.
        assert_eq!(delay(&mut bucket, now).1, PERIOD * 2);
        bucket.begin(c);
    }

    /// The leak a reserving bucket had before: 200 waits abandoned in the order they came
    /// must leave the bucket as it was.
    #[test]
    fn abandoned_reservations_cost_nothing() {
        let mut bucket = TokenBucket::new(ms(50), 1);
        let now = Instant::now();
        let (first, _) = delay(&mut bucket, now);
        bucket.begin(first);
        let abandoned: Vec<Ticket> = (0..200).map(|_| delay(&mut bucket, now).0).collect();
        let next = bucket.reserve(now, now).expect_err("200 queued");
        assert_eq!(
            next,
            TooLate {
                start: now + ms(50) * 201,
                ahead: 200
            }
        );
        for ticket in abandoned {
            bucket.cancel(ticket);
        }
        assert_eq!(bucket.queued(), 0);
        assert_eq!(
            delay(&mut bucket, now).1,
            ms(50),
            "one period after the first"
        );
    }

    #[test]
    fn a_request_whose_slot_is_past_its_deadline_is_refused_and_reserves_nothing() {
        let mut bucket = TokenBucket::new(PERIOD, 2);
        let now = Instant::now();
        for _ in 0..5 {
            delay(&mut bucket, now);
        }
        // Slots at 0, 0, 200, 400, 600 ms; the next would be at 800 ms.
        let refused = bucket
            .reserve(now, now + ms(799))
            .expect_err("past the deadline");
        assert_eq!(
            refused,
            TooLate {
                start: now + ms(800),
                ahead: 5
            }
        );
        let refused_again = bucket.reserve(now, now + ms(10)).expect_err("still");
        assert_eq!(
            refused_again.start,
            now + ms(800),
            "the refusals took no slot"
        );
        let reservation = bucket.reserve(now, now + ms(800)).expect("just in time");
        assert_eq!(reservation.start, now + ms(800));
        assert_eq!(bucket.queued(), 6);
    }
}
