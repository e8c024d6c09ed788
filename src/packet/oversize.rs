//! The head of a PUBLISH too large for the receive buffer: enough of it to skip the packet and
//! acknowledge it without ever holding it whole.

use super::fields::Reader;
use super::header::{self, HeaderStatus};
use super::{Error, Field, PacketType, Publish, PublishQos};

/// What a receiver needs to skip a PUBLISH it cannot hold, and to acknowledge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishHead {
    pub(crate) dup: bool,
    pub(crate) qos: PublishQos,
    /// The length of the whole packet, fixed header included: the bytes to skip.
    pub(crate) packet_len: usize,
}

impl PublishHead {
    /// The PUBLISH as far as it is known, with an empty topic and payload.
    pub(crate) fn publish(self) -> Publish<'static> {
        Publish::head(self.dup, self.qos)
    }
}

/// Reads the fixed header, topic and packet identifier of the PUBLISH at the start of `buf`,
/// which may hold only its first bytes. `Ok(None)` while they have not all arrived, or if
/// `buf` does not start with a PUBLISH. The topic is not validated: the message is skipped,
/// never delivered.
pub(crate) fn peek_publish_head(buf: &[u8]) -> Result<Option<PublishHead>, Error> {
    let h = match header::parse(buf)? {
        HeaderStatus::Complete(h) if h.packet_type == PacketType::Publish => h,
        _ => return Ok(None),
    };
    let arrived = buf.get(h.header_len..).unwrap_or(&[]);
    let complete = arrived.len() >= h.remaining_len;
    let mut r = Reader::new(arrived.get(..h.remaining_len).unwrap_or(arrived));
    let head = r.binary(Field::TopicName).and_then(|_| {
        // The fixed header check refused QoS 3.
        Ok(match (h.flags >> 1) & 0x03 {
            0 => PublishQos::AtMostOnce,
            1 => PublishQos::AtLeastOnce(r.packet_id()?),
            _ => PublishQos::ExactlyOnce(r.packet_id()?),
        })
    });
    match head {
        Ok(PublishQos::AtMostOnce) if h.flags & 0x08 != 0 => Err(Error::DupWithQos0),
        Ok(qos) => Ok(Some(PublishHead {
            dup: h.flags & 0x08 != 0,
            qos,
            packet_len: h.packet_len(),
        })),
        // Cut off by the end of what arrived, not by the end of the packet: wait for more.
        Err(Error::Truncated(_)) if !complete => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[rustfmt::skip]
    const QOS1: [u8; 12] = [
        0x32, 200, 0x01,        // PUBLISH QoS 1, remaining length 200
        0x00, 0x03, b'a', b'/', b'b',
        0x00, 0x07,             // packet identifier 7
        b'x', b'y',             // the first bytes of the payload
    ];

    #[test]
    fn test_head_once_topic_and_id_arrived() {
        for cut in 0..10 {
            assert_eq!(peek_publish_head(&QOS1[..cut]), Ok(None), "cut at {cut}");
        }
        let head = Some(PublishHead {
            dup: false,
            qos: PublishQos::AtLeastOnce(super::super::PacketId::new(7).unwrap()),
            packet_len: 203,
        });
        assert_eq!(peek_publish_head(&QOS1[..10]), Ok(head));
        assert_eq!(peek_publish_head(&QOS1), Ok(head));
    }

    #[test]
    fn test_qos0_head_has_no_id() {
        let buf = [0x30, 100, 0x00, 0x01, b't', b'p'];
        assert_eq!(
            peek_publish_head(&buf),
            Ok(Some(PublishHead {
                dup: false,
                qos: PublishQos::AtMostOnce,
                packet_len: 102,
            }))
        );
    }

    #[test]
    fn test_bad_heads_are_errors() {
        let zero_id = [0x32, 100, 0x00, 0x01, b't', 0x00, 0x00];
        assert_eq!(peek_publish_head(&zero_id), Err(Error::ZeroPacketId));
        // A topic longer than the packet itself.
        let short = [0x30, 0x03, 0x00, 0x09, b't'];
        assert_eq!(
            peek_publish_head(&short),
            Err(Error::Truncated(Field::TopicName))
        );
        assert_eq!(peek_publish_head(&[0xC0, 0x00]), Ok(None), "PINGREQ");
        let dup_qos0 = [0x38, 100, 0x00, 0x01, b't'];
        assert_eq!(peek_publish_head(&dup_qos0), Err(Error::DupWithQos0));
        assert!(peek_publish_head(&[0x00, 0x00]).is_err());
    }
}
