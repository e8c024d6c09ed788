//! The subscription table: what the application asked for, so that it can be renewed after
//! every connect in which the broker kept no session.

use heapless::Vec;

use super::event_queue::EventQueue;
use super::slab::Slab;
use super::{Event, RequestId, SubscribeError};
use crate::packet::{PacketId, PacketType, Part, QoS, Subscription, first_byte};
use crate::time::Instant;

/// Filters per SUBSCRIBE or UNSUBSCRIBE packet, so one SUBACK never floods the event queue.
pub(crate) const PER_PACKET: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubState {
    /// SUBSCRIBE to be sent.
    Wanted,
    /// SUBSCRIBE sent at the instant with this packet identifier.
    Requested(PacketId, Instant),
    /// Confirmed by SUBACK.
    Active,
    /// UNSUBSCRIBE to be sent.
    UnsubWanted,
    /// UNSUBSCRIBE sent at the instant with this packet identifier.
    UnsubRequested(PacketId, Instant),
    /// Refused by the broker's SUBACK; removed before the SUBACK is done with.
    Refused,
}

/// Which entries [`Subscriptions::remove_where`] removes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Removal {
    /// Unsubscribed and not sent: nothing to tell a broker that starts clean.
    UnsubWanted,
    /// Unsubscribed, and the UNSUBACK for this packet came.
    UnsubAcked(PacketId),
    /// Refused by the SUBACK.
    Refused,
}

impl Removal {
    fn matches(self, state: SubState) -> bool {
        match (self, state) {
            (Removal::UnsubWanted, SubState::UnsubWanted)
            | (Removal::Refused, SubState::Refused) => true,
            (Removal::UnsubAcked(id), SubState::UnsubRequested(p, _)) => id == p,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SubEntry {
    pub(crate) qos: QoS,
    pub(crate) state: SubState,
    pub(crate) request: RequestId,
    pub(crate) index: u16,
}

impl SubEntry {
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        match self.state {
            SubState::Requested(_, t) | SubState::UnsubRequested(_, t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn packet_id(&self) -> Option<PacketId> {
        match self.state {
            SubState::Requested(id, _) | SubState::UnsubRequested(id, _) => Some(id),
            _ => None,
        }
    }
}

pub(crate) struct Subscriptions<'b, const N: usize> {
    slab: Slab<'b, SubEntry, N>,
}

impl<'b, const N: usize> Subscriptions<'b, N> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            slab: Slab::new(buf),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn find(&self, filter: &str) -> Option<usize> {
        (0..self.slab.len()).find(|&i| self.slab.bytes(i) == filter.as_bytes())
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &SubEntry> {
        self.slab.metas()
    }

    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut SubEntry> {
        self.slab.metas_mut()
    }

    pub(crate) fn uses_packet_id(&self, packet_id: PacketId) -> bool {
        self.slab.metas().any(|e| e.packet_id() == Some(packet_id))
    }

    /// Adds or updates the filters of one request, all or nothing.
    pub(crate) fn add(
        &mut self,
        request: RequestId,
        subs: &[Subscription<'_>],
    ) -> Result<(), SubscribeError> {
        self.upsert(
            request,
            subs.iter().map(|s| (s.filter, s.qos, SubState::Wanted)),
        )
    }

    /// Marks filters for UNSUBSCRIBE, adding the ones the table does not know (a persistent
    /// session may hold filters from before), all or nothing.
    pub(crate) fn remove_filters(
        &mut self,
        request: RequestId,
        filters: &[&str],
    ) -> Result<(), SubscribeError> {
        self.upsert(
            request,
            filters
                .iter()
                .map(|f| (*f, QoS::AtMostOnce, SubState::UnsubWanted)),
        )
    }

    fn upsert<'f>(
        &mut self,
        request: RequestId,
        items: impl Iterator<Item = (&'f str, QoS, SubState)> + Clone,
    ) -> Result<(), SubscribeError> {
        let (new, new_bytes) = items
            .clone()
            .filter(|(f, _, _)| self.find(f).is_none())
            .fold((0, 0), |(n, b), (f, _, _)| (n + 1, b + f.len()));
        if self.slab.len() + new > N || new_bytes > self.slab.free_bytes() {
            return Err(SubscribeError::TableFull);
        }
        // A filter with a request still open (sent or not) would lose that request's answer
        // if it were overwritten: the caller tries again once it is settled.
        let busy = items.clone().any(|(f, _, _)| {
            self.find(f)
                .and_then(|i| self.slab.meta(i))
                .is_some_and(|e| e.state != SubState::Active)
        });
        if busy {
            return Err(SubscribeError::Busy);
        }
        for (index, (filter, qos, state)) in items.enumerate() {
            let sub = Subscription { filter, qos };
            let entry = SubEntry {
                qos: sub.qos,
                state,
                request,
                index: u16::try_from(index).unwrap_or(u16::MAX),
            };
            match self.find(sub.filter) {
                Some(i) => {
                    if let Some(e) = self.slab.meta_mut(i) {
                        *e = entry;
                    }
                }
                None => self
                    .slab
                    .push(entry, &[sub.filter.as_bytes()])
                    .map_err(|_| SubscribeError::TableFull)?,
            }
        }
        Ok(())
    }

    /// Removes the entries `which` picks. An unsubscribe is answered by that: each request
    /// they belonged to is reported once, as [`Event::Unsubscribed`], when none of its filters
    /// is left waiting (one request can go out in several UNSUBSCRIBE packets).
    pub(crate) fn remove_where(&mut self, which: Removal, events: &mut EventQueue) {
        let mut requests: Vec<RequestId, N> = Vec::new();
        self.slab.retain(
            |e| !which.matches(e.state),
            |e| {
                if !requests.contains(&e.request) {
                    // At most one request per entry: never full.
                    let _ = requests.push(e.request);
                }
            },
        );
        if matches!(which, Removal::Refused) {
            return;
        }
        for request in requests {
            let waiting = self.slab.metas().any(|e| {
                e.request == request
                    && matches!(
                        e.state,
                        SubState::UnsubWanted | SubState::UnsubRequested(..)
                    )
            });
            if !waiting {
                events.push(Event::Unsubscribed(request));
            }
        }
    }

    /// Plans the next SUBSCRIBE (`wanted` is [`SubState::Wanted`]) or UNSUBSCRIBE
    /// ([`SubState::UnsubWanted`]): how many of the entries in that state, from the first, go in
    /// one packet of at most `max_packet_size` bytes and [`PER_PACKET`] filters. The first
    /// always goes: `check_request` made sure a single filter fits.
    pub(crate) fn plan(&self, wanted: SubState, max_packet_size: usize) -> usize {
        // Length prefix and filter, and for SUBSCRIBE the requested QoS.
        let per_filter = if wanted == SubState::UnsubWanted {
            2
        } else {
            3
        };
        // At most 5 bytes of fixed header, and the packet identifier.
        let (mut count, mut len) = (0, 5 + 2);
        for (i, e) in self.slab.metas().enumerate() {
            if e.state != wanted {
                continue;
            }
            let next = len + per_filter + self.slab.bytes(i).len();
            if count == PER_PACKET || (count > 0 && next > max_packet_size) {
                break;
            }
            (count, len) = (count + 1, next);
        }
        count
    }

    /// The packet [`plan`](Self::plan) planned, straight from the table: its first byte and
    /// body (packet identifier, then each filter with, for SUBSCRIBE, its requested QoS).
    pub(crate) fn request(
        &self,
        wanted: SubState,
        count: usize,
        packet_id: PacketId,
    ) -> (u8, [Option<Part<'_>>; 1 + 2 * PER_PACKET]) {
        let subscribe = wanted != SubState::UnsubWanted;
        let mut parts = [None; 1 + 2 * PER_PACKET];
        let mut slots = parts.iter_mut();
        if let Some(slot) = slots.next() {
            *slot = Some(Part::U16(packet_id.get()));
        }
        let picked = self
            .slab
            .metas()
            .enumerate()
            .filter(|(_, e)| e.state == wanted)
            .take(count.min(PER_PACKET));
        for (i, e) in picked {
            if let Some(slot) = slots.next() {
                *slot = Some(Part::Prefixed(self.slab.bytes(i)));
            }
            if let (true, Some(slot)) = (subscribe, slots.next()) {
                // Never above what this build can receive (QoS 2 needs `qos2`).
                *slot = Some(Part::U8(e.qos.min(super::MAX_QOS) as u8));
            }
        }
        let packet_type = if subscribe {
            PacketType::Subscribe
        } else {
            PacketType::Unsubscribe
        };
        (first_byte(packet_type), parts)
    }

    /// The first `count` entries in state `wanted` went out in packet `packet_id` at `now`.
    pub(crate) fn mark_requested(
        &mut self,
        wanted: SubState,
        count: usize,
        packet_id: PacketId,
        now: Instant,
    ) {
        let mut left = count;
        for e in self.slab.metas_mut() {
            if left == 0 {
                break;
            }
            if e.state == wanted {
                e.state = match wanted {
                    SubState::UnsubWanted => SubState::UnsubRequested(packet_id, now),
                    _ => SubState::Requested(packet_id, now),
                };
                left -= 1;
            }
        }
    }
}
