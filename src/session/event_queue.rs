//! The bounded queue of events waiting for the application, which counts what it had to drop.

use heapless::Deque;

use super::Event;

/// Events one step can queue before the application must drain them.
pub(crate) const EVENT_CAPACITY: usize = 32;

pub(crate) struct EventQueue {
    queue: Deque<Event, EVENT_CAPACITY>,
    /// Events dropped because the queue was full, reported as [`Event::EventsLost`].
    lost: u32,
}

impl EventQueue {
    pub(crate) const fn new() -> Self {
        Self {
            queue: Deque::new(),
            lost: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn push(&mut self, event: Event) {
        if self.queue.push_back(event).is_err() {
            self.lost = self.lost.saturating_add(1);
        }
    }

    /// The next event; a count of dropped ones takes its place in the order once there is
    /// room for it.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if self.lost > 0 && !self.queue.is_full() {
            let lost = core::mem::take(&mut self.lost);
            self.push(Event::EventsLost(lost));
        }
        self.queue.pop_front()
    }
}
