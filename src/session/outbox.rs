//! The outbound message store: every accepted message stays here until it is acknowledged,
//! expires or is discarded, across disconnects.

use super::slab::{Slab, SlabFull};
use super::{PublishError, PublishId};
use crate::packet::{PacketId, Part, QoS, publish_first_byte};
use crate::time::Instant;

/// Where a stored message stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Not sent on this connection yet (new, or sent on an earlier one).
    Queued,
    /// PUBLISH sent at the given instant; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck(Instant),
    /// QoS 2 after PUBREC: the broker owns the message. PUBREL not sent on this connection yet.
    Releasing,
    /// PUBREL sent at the given instant; waiting for PUBCOMP.
    AwaitingComp(Instant),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) id: PublishId,
    pub(crate) qos: QoS,
    pub(crate) packet_id: Option<PacketId>,
    pub(crate) retain: bool,
    /// Sent at least once before: resends carry DUP.
    pub(crate) sent_before: bool,
    pub(crate) stage: Stage,
    /// [`Instant::FAR_FUTURE`] when it never expires.
    pub(crate) expires_at: Instant,
    pub(crate) topic_len: u16,
}

impl Entry {
    /// On the wire and waiting for the broker.
    pub(crate) fn in_flight(&self) -> bool {
        matches!(
            self.stage,
            Stage::AwaitingAck(_) | Stage::Releasing | Stage::AwaitingComp(_)
        )
    }

    /// When this entry's acknowledgement became due to start counting.
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        match self.stage {
            Stage::AwaitingAck(t) | Stage::AwaitingComp(t) => Some(t),
            Stage::Queued | Stage::Releasing => None,
        }
    }
}

pub(crate) struct Outbox<'b, const N: usize> {
    slab: Slab<'b, Entry, N>,
}

impl<'b, const N: usize> Outbox<'b, N> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            slab: Slab::new(buf),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn push(
        &mut self,
        entry: Entry,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        self.slab
            .push(entry, &[topic.as_bytes(), payload])
            .map_err(|e| match e {
                SlabFull::Entries => PublishError::StoreFull,
                SlabFull::Bytes => PublishError::StoreBytesFull,
            })
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slab.metas()
    }

    pub(crate) fn entry(&self, index: usize) -> Option<&Entry> {
        self.slab.meta(index)
    }

    pub(crate) fn entry_mut(&mut self, index: usize) -> Option<&mut Entry> {
        self.slab.meta_mut(index)
    }

    pub(crate) fn remove(&mut self, index: usize) -> Option<Entry> {
        self.slab.remove(index)
    }

    pub(crate) fn find(&self, pred: impl FnMut(&Entry) -> bool) -> Option<usize> {
        self.slab.position(pred)
    }

    pub(crate) fn find_packet_id(&self, packet_id: PacketId) -> Option<usize> {
        self.slab.position(|e| e.packet_id == Some(packet_id))
    }

    pub(crate) fn uses_packet_id(&self, packet_id: PacketId) -> bool {
        self.find_packet_id(packet_id).is_some()
    }

    /// Entry `index` as a PUBLISH: its first byte and body, for [`crate::packet::encode_parts`].
    /// DUP on a resend of QoS 1 and 2. Topic and payload go out as the bytes they were stored
    /// as (the topic was validated by `Session::publish`).
    pub(crate) fn publish(&self, index: usize) -> Option<(u8, [Option<Part<'_>>; 3])> {
        let e = self.slab.meta(index)?;
        let bytes = self.slab.bytes(index);
        let (topic, payload) = bytes.split_at_checked(usize::from(e.topic_len))?;
        let id = match e.qos {
            QoS::AtMostOnce => None,
            _ => Some(e.packet_id?),
        };
        let first = publish_first_byte(e.sent_before && id.is_some(), e.qos, e.retain);
        Some((
            first,
            [
                Some(Part::Prefixed(topic)),
                id.map(|id| Part::U16(id.get())),
                Some(Part::Raw(payload)),
            ],
        ))
    }

    /// Drops the topic and payload of entry `index` (a QoS 2 message whose PUBREC came: only
    /// its PUBREL is left to send).
    pub(crate) fn release_bytes(&mut self, index: usize) {
        self.slab.truncate_bytes(index);
    }

    /// The connection ended: whatever was on the wire goes again on the next one.
    pub(crate) fn connection_lost(&mut self) {
        for e in self.slab.metas_mut() {
            e.stage = match e.stage {
                Stage::AwaitingAck(_) => Stage::Queued,
                Stage::AwaitingComp(_) => Stage::Releasing,
                other => other,
            };
        }
    }

    /// Removes the messages not on the wire whose time to live ran out, calling `on_expired`
    /// for each, at most `limit` of them.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        mut limit: usize,
        mut on_expired: impl FnMut(PublishId),
    ) {
        self.slab.retain(
            |e| {
                let expired = e.stage == Stage::Queued && e.expires_at <= now;
                if expired && limit > 0 {
                    limit -= 1;
                    false
                } else {
                    true
                }
            },
            |e| on_expired(e.id),
        );
    }

    /// The earliest time-to-live deadline of a message not on the wire.
    /// [`Instant::FAR_FUTURE`] when nothing can expire.
    pub(crate) fn next_expiry(&self) -> Instant {
        let mut next = Instant::FAR_FUTURE;
        for e in self.slab.metas() {
            if e.stage == Stage::Queued {
                next = next.min(e.expires_at);
            }
        }
        next
    }
}
