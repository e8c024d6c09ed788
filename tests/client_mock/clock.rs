//! Virtual time: a [`Clock`] whose `now` is a shared cell, and an executor that moves that cell
//! forward to the earliest pending sleep whenever nothing else can make progress.
//!
//! Nothing here sleeps for real: a test that covers minutes of keepalive runs in microseconds,
//! and the same inputs always give the same run.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use shearwater::client::Clock;
use shearwater::time::Instant;

/// Sleeps that completed at once, at one instant, before the clock calls it a busy loop.
const SPIN_LIMIT: u32 = 100_000;

/// The virtual time, shared by the clock, the transport and the executor.
#[derive(Debug, Default)]
pub struct Time {
    now: Cell<u64>,
    /// The earliest instant a sleep polled since the executor last cleared it waits for.
    next_timer: Cell<Option<u64>>,
    /// Sleeps that completed at once since time last moved.
    immediate: Cell<u32>,
}

impl Time {
    /// Milliseconds since the origin.
    pub fn now(&self) -> u64 {
        self.now.get()
    }

    /// Moves time forward to `to` (never back).
    pub fn advance_to(&self, to: u64) {
        if to > self.now.get() {
            self.now.set(to);
            self.immediate.set(0);
        }
    }

    /// Something waits until `at`: time may jump there when nothing else can happen.
    pub fn register(&self, at: u64) {
        let earliest = self.next_timer.get().map_or(at, |t| t.min(at));
        self.next_timer.set(Some(earliest));
    }

    fn ran_at_once(&self) {
        let n = self.immediate.get() + 1;
        self.immediate.set(n);
        assert!(
            n < SPIN_LIMIT,
            "busy loop: {n} sleeps completed at once at {} ms without time moving",
            self.now()
        );
    }
}

/// The client's clock over [`Time`].
#[derive(Debug, Clone)]
pub struct VirtualClock {
    time: Rc<Time>,
}

impl VirtualClock {
    /// A clock reading `time`.
    pub fn new(time: Rc<Time>) -> Self {
        Self { time }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.time.now())
    }

    async fn sleep_until(&self, at: Instant) {
        let at = at.as_millis();
        let mut first = true;
        poll_fn(|_| {
            let now = self.time.now();
            if now >= at {
                if first {
                    self.time.ran_at_once();
                }
                Poll::Ready(())
            } else {
                first = false;
                self.time.register(at);
                Poll::Pending
            }
        })
        .await;
    }
}

/// How [`drive`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The future completed.
    Ready(T),
    /// It was dropped after the allowed number of polls.
    Cancelled,
    /// The next thing that could happen lies past the time limit; time stands at the limit.
    TimeUp,
    /// Nothing can ever happen without the test's help: no sleep pending, nothing woken.
    Stuck,
}

impl<T> Outcome<T> {
    /// The output; panics otherwise.
    #[track_caller]
    pub fn unwrap(self) -> T {
        match self {
            Outcome::Ready(v) => v,
            Outcome::Cancelled => panic!("cancelled"),
            Outcome::TimeUp => panic!("time up"),
            Outcome::Stuck => panic!("stuck"),
        }
    }
}

/// Limits of one [`drive`].
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Virtual time is not moved past this.
    pub until: u64,
    /// Drop the future after this many polls that returned `Pending`.
    pub polls: Option<usize>,
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `future` to completion on virtual `time`: when it is pending and nothing woke it, time
/// jumps to the earliest sleep it is waiting for. Time still moves on a poll after which the
/// future is dropped (time passes whether or not anyone polls).
pub fn drive<F: Future>(time: &Time, future: F, limit: Limit) -> Outcome<F::Output> {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut pending = 0;
    loop {
        time.next_timer.set(None);
        flag.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return Outcome::Ready(v);
        }
        pending += 1;
        if !flag.0.load(Ordering::SeqCst) {
            match time.next_timer.get() {
                Some(t) if t <= limit.until => time.advance_to(t),
                Some(_) => {
                    time.advance_to(limit.until);
                    return Outcome::TimeUp;
                }
                None => return Outcome::Stuck,
            }
        }
        if limit.polls.is_some_and(|max| pending >= max) {
            return Outcome::Cancelled;
        }
    }
}
