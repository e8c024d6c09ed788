//! The async client over a scripted in-memory transport and a virtual clock: no sockets, no
//! real sleeping, the same run every time.
//!
//! `transport` is the test double (scripted connects, received chunks, short writes, errors,
//! reads that never complete, end of stream) with a small broker that records and decodes every
//! byte the client writes; `clock` is virtual time and the executor that moves it; `harness`
//! wraps a client over both.

mod clock;
mod harness;
mod transport;

use embassy_futures::select::{Either, select};
use shearwater::client::{ClientError, Clock};
use shearwater::packet::{
    self, ConnAck, ConnectReturnCode, Packet, PacketId, PubRel, Publish, PublishQos, QoS,
    Subscription,
};
use shearwater::session::{CloseReason, Event, OutgoingMessage, ProtocolError, PublishId};
use shearwater::time::{Duration, Instant};

use clock::{Limit, Outcome, VirtualClock, drive};
use harness::{Ev, Harness, Msg, Sizes, Step, config, qos1};
use transport::{ConnectStep, Pkt, Rx};

const KEEPALIVE: u64 = 20_000;
const PING_TIMEOUT: u64 = 5_000;

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn session(event: Event) -> Step {
    Ok(Ev::Session(event))
}

fn down(reason: CloseReason, was_up: bool) -> Step {
    session(Event::Down { reason, was_up })
}

fn is_reconnecting(step: &Step) -> bool {
    matches!(step, Ok(Ev::Session(Event::Reconnecting { .. })))
}

fn is_down(step: &Step) -> bool {
    matches!(step, Ok(Ev::Session(Event::Down { .. })))
}

/// The delay of a `Reconnecting` step.
#[track_caller]
fn delay_of(step: &Step, failures: u32) -> u64 {
    match step {
        Ok(Ev::Session(Event::Reconnecting { failures: f, delay })) if *f == failures => {
            delay.as_millis()
        }
        other => panic!("expected Reconnecting after {failures} failures, got {other:?}"),
    }
}

/// The time at which the last step matching `pred` was returned.
#[track_caller]
fn time_of(h: &Harness, pred: impl Fn(&Step) -> bool) -> u64 {
    h.history
        .iter()
        .rev()
        .find(|(_, s)| pred(s))
        .map(|(t, _)| *t)
        .expect("step in history")
}

fn publish_packet<'a>(topic: &'a str, payload: &'a [u8], qos: PublishQos) -> Packet<'a> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        payload,
    })
}

fn message(topic: &str, payload: &[u8], qos: QoS) -> Msg {
    Msg {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        dup: false,
        acked: qos != QoS::AtMostOnce,
    }
}

/// The PUBLISH packets the broker received, as (connection, dup, id, payload).
fn publishes(h: &Harness) -> Vec<(u32, bool, Option<u16>, Vec<u8>)> {
    h.sent()
        .into_iter()
        .filter_map(|s| match s.packet {
            Pkt::Publish {
                dup, id, payload, ..
            } => Some((s.conn, dup, id, payload)),
            _ => None,
        })
        .collect()
}

// ----- connecting -----

#[test]
fn up_only_after_the_first_pingresp() {
    let mut h = Harness::new();
    h.net().broker.answer_pings = false;
    assert_eq!(h.next(), session(Event::TransportConnected));
    assert_eq!(
        h.next(),
        session(Event::ConnAckReceived {
            session_present: false
        })
    );
    // CONNACK is not "up": the client sent its PINGREQ at once and waits for the answer.
    assert_eq!(h.next_until(PING_TIMEOUT - 1), None);
    assert!(!h.client.session().is_up());
    assert_eq!(
        h.packets(),
        [
            Pkt::Connect {
                clean_session: true,
                keep_alive: 20
            },
            Pkt::PingReq
        ]
    );
    h.send(&Packet::PingResp);
    assert_eq!(
        h.next_until(PING_TIMEOUT - 1),
        Some(session(Event::Up {
            session_present: false
        }))
    );
    assert!(h.client.session().is_up());
    h.assert_clean_stream();
}

#[test]
fn no_first_pingresp_fails_the_attempt_and_backs_off() {
    let mut h = Harness::new();
    h.net().broker.answer_pings = false;
    let steps = h.run_until(60_000, is_reconnecting);
    assert_eq!(
        steps[steps.len() - 2],
        down(CloseReason::NoFirstPingResp, false)
    );
    let delay = delay_of(&steps[steps.len() - 1], 1);
    assert!((1_000..=2_000).contains(&delay), "delay {delay}");
    assert_eq!(time_of(&h, is_down), PING_TIMEOUT);
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Ok(Ev::Session(Event::Up { .. }))))
    );

    h.net().broker.answer_pings = true;
    h.run_until_up();
    let net = h.net();
    assert_eq!(net.connect_attempts, [0, PING_TIMEOUT + delay]);
    assert_eq!(net.connections, 2);
    drop(net);
    assert_eq!(h.client.session().failures(), 0, "up resets the backoff");
}

#[test]
fn refused_connack_backs_off() {
    let mut h = Harness::new();
    h.net().broker.connack = Some(ConnectReturnCode::ServerUnavailable);
    let steps = h.run_until(60_000, is_reconnecting);
    assert_eq!(
        steps[steps.len() - 2],
        down(
            CloseReason::Refused(ConnectReturnCode::ServerUnavailable),
            false
        )
    );
    assert_eq!(h.net().closes, 1, "the refused connection is closed");
}

#[test]
fn connect_errors_report_reconnecting_with_delays_in_bounds() {
    let mut h = Harness::new();
    h.net().connects.extend([ConnectStep::Fail; 5]);
    let mut delays = Vec::new();
    for failures in 1..=5 {
        let steps = h.run_until(h.now() + 120_000, is_reconnecting);
        assert_eq!(
            steps,
            [down(CloseReason::ConnectFailed, false), steps[1].clone()]
        );
        let delay = delay_of(&steps[1], failures);
        let ceiling = (1_000u64 << failures).min(60_000);
        assert!(
            (1_000..=ceiling).contains(&delay),
            "failure {failures}: delay {delay} outside 1000..={ceiling}"
        );
        delays.push(delay);
    }
    h.run_until_up();
    let attempts = h.net().connect_attempts.clone();
    assert_eq!(attempts.len(), 6);
    for (i, delay) in delays.iter().enumerate() {
        // A failed connect fails at once: the next attempt comes exactly one delay later.
        assert_eq!(attempts[i + 1] - attempts[i], *delay, "attempt {}", i + 2);
    }
    assert_eq!(h.client.session().failures(), 0);
}

#[test]
fn connect_that_never_completes_times_out() {
    let mut h = Harness::new();
    h.net().connects.push_back(ConnectStep::Never);
    let steps = h.run_until(60_000, is_reconnecting);
    assert_eq!(
        steps[steps.len() - 2],
        down(CloseReason::ConnectTimeout, false)
    );
    assert_eq!(time_of(&h, is_down), 10_000);
    h.run_until_up();
    assert_eq!(h.net().connections, 1);
}

#[test]
fn silent_broker_after_connack_times_out() {
    let mut h = Harness::new();
    h.net().broker.connack = None;
    h.run_until(60_000, is_reconnecting);
    assert_eq!(h.history[1].1, down(CloseReason::ConnAckTimeout, false));
    assert_eq!(time_of(&h, is_down), 10_000);
}

// ----- fragmented and short I/O -----

#[test]
fn packet_filling_the_receive_buffer_exactly() {
    let rx = 64;
    let mut h = Harness::with(config(), Sizes { rx, tx: 512 });
    h.net().read_chunk = 1;
    h.run_until_up();
    // Fixed header 2, topic 2 + 3: the payload that makes the packet exactly `rx` bytes.
    let payload = vec![9u8; rx - 7];
    let fits = publish_packet("fit", &payload, PublishQos::AtMostOnce);
    assert_eq!(transport::encode(&fits).len(), rx);
    h.send(&fits);
    h.send(&fits);
    for _ in 0..2 {
        assert_eq!(
            h.next(),
            Ok(Ev::Message(message("fit", &payload, QoS::AtMostOnce)))
        );
    }
    // One byte more does not fit: skipped and reported, the connection stays.
    let payload = vec![9u8; rx - 6];
    h.send(&publish_packet("fit", &payload, PublishQos::AtMostOnce));
    assert_eq!(
        h.next(),
        session(Event::MessageTooLarge {
            len: rx + 1,
            qos: QoS::AtMostOnce
        })
    );
    h.send(&fits);
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("fit", &payload[1..], QoS::AtMostOnce)))
    );
    assert_eq!(h.net().connections, 1);
}

#[test]
fn publish_larger_than_the_transmit_buffer_is_refused() {
    let mut h = Harness::with(config(), Sizes { rx: 512, tx: 64 });
    let payload = [0u8; 64];
    assert_eq!(
        h.client.publish(&qos1("t", &payload)),
        Err(shearwater::session::PublishError::TooLarge {
            len: 2 + 2 + 1 + 2 + 64,
            max_packet_size: 64
        })
    );
    h.publish(&qos1("t", &payload[..50]));
    h.run_until_up();
    h.run_until(h.now() + 1_000, |s| {
        matches!(s, Ok(Ev::Session(Event::Published(_))))
    });
}

#[test]
fn every_packet_arriving_one_byte_at_a_time() {
    let mut h = Harness::new();
    h.net().read_chunk = 1;
    h.client
        .subscribe(&[Subscription {
            filter: "s/#",
            qos: QoS::AtLeastOnce,
        }])
        .expect("subscribe");
    h.run_until_up();
    h.run_until(h.now() + 10_000, |s| {
        matches!(s, Ok(Ev::Session(Event::Subscribed { .. })))
    });

    // 200 bytes of payload need two bytes of remaining length.
    let long: Vec<u8> = (0..200).collect();
    let sent = [
        ("s/a", b"first".to_vec(), PublishQos::AtMostOnce),
        ("s/b", b"second".to_vec(), PublishQos::AtLeastOnce(id(7))),
        ("s/c", long.clone(), PublishQos::AtLeastOnce(id(8))),
        ("s/d", Vec::new(), PublishQos::AtMostOnce),
    ];
    // All four back to back in one chunk, read one byte per call.
    let mut bytes = Vec::new();
    for (topic, payload, qos) in &sent {
        bytes.extend(transport::encode(&publish_packet(topic, payload, *qos)));
    }
    h.push_rx(Rx::Data(bytes));
    for (topic, payload, qos) in &sent {
        assert_eq!(
            h.next(),
            Ok(Ev::Message(message(topic, payload, qos.qos())))
        );
    }
    h.drain_until(h.now() + 1_000);
    let acks: Vec<Pkt> = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Pkt::PubAck(_)))
        .collect();
    assert_eq!(acks, [Pkt::PubAck(7), Pkt::PubAck(8)]);
    h.assert_clean_stream();
}

#[test]
fn short_writes_produce_a_correct_stream() {
    for chunk in 1..=3 {
        let mut h = Harness::new();
        h.net().write_chunk = chunk;
        h.client
            .subscribe(&[Subscription {
                filter: "cmd/+",
                qos: QoS::AtLeastOnce,
            }])
            .expect("subscribe");
        let ids: Vec<PublishId> = (0..5u8)
            .map(|i| {
                let qos = if i % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                h.publish(&OutgoingMessage::new("data/x", &[i; 40]).qos(qos))
            })
            .collect();
        h.run_until_up();
        let mut published = Vec::new();
        h.run_until(h.now() + 30_000, |s| {
            if let Ok(Ev::Session(Event::Published(id))) = s {
                published.push(*id);
            }
            published.len() == ids.len()
        });
        published.sort();
        assert_eq!(published, ids, "chunk {chunk}");
        h.assert_clean_stream();
        let net = h.net();
        assert!(
            net.writes.iter().all(|&(_, n)| n <= chunk),
            "chunk {chunk}: {:?}",
            net.writes
        );
        drop(net);
        let payloads: Vec<Vec<u8>> = publishes(&h).into_iter().map(|p| p.3).collect();
        let expected: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
        assert_eq!(payloads, expected, "chunk {chunk}");
        assert!(
            h.packets()
                .iter()
                .any(|p| matches!(p, Pkt::Subscribe { filters, .. } if filters == &["cmd/+"]))
        );
    }
}

// ----- losing the connection -----

#[test]
fn write_error_goes_down_and_reconnects_with_backoff() {
    let mut h = Harness::new();
    h.run_until_up();
    let t0 = h.now();
    h.net().fail_next_write = true;
    let id = h.publish(&qos1("t/a", b"one"));
    let steps = h.run_until(t0 + 60_000, is_reconnecting);
    assert_eq!(
        steps,
        [down(CloseReason::ClosedByPeer, true), steps[1].clone()]
    );
    let delay = delay_of(&steps[1], 1);
    assert!((1_000..=2_000).contains(&delay), "delay {delay}");
    assert_eq!(h.net().closes, 1, "the broken connection is closed");

    h.run_until_up();
    assert_eq!(h.net().connect_attempts, [0, t0 + delay]);
    h.run_until_event(Event::Published(id));
    let sent = publishes(&h);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].0, sent[0].3.as_slice()), (2, &b"one"[..]));
    h.assert_clean_stream();
}

#[test]
fn read_that_never_completes_is_ended_by_keepalive() {
    let mut h = Harness::new();
    h.run_until_up();
    let t0 = h.now();
    // The broker stops answering; the read stays pending for ever.
    h.net().broker.answer_pings = false;
    let steps = h.run_until(t0 + 60_000, is_down);
    assert_eq!(steps, [down(CloseReason::PingTimeout, true)]);
    let down_at = time_of(&h, is_down);
    assert!(
        down_at <= t0 + KEEPALIVE + PING_TIMEOUT,
        "down at {down_at}"
    );
    let pings: Vec<u64> = h
        .sent()
        .iter()
        .filter(|s| s.packet == Pkt::PingReq)
        .map(|s| s.at)
        .collect();
    assert_eq!(pings, [t0, t0 + KEEPALIVE]);
    assert_eq!(down_at, t0 + KEEPALIVE + PING_TIMEOUT);

    h.net().broker.answer_pings = true;
    h.run_until_up();
    assert_eq!(h.net().connections, 2);
}

#[test]
fn publishing_into_a_half_open_connection_still_finds_out() {
    let mut h = Harness::new();
    h.run_until_up();
    let t0 = h.now();
    {
        let mut net = h.net();
        net.broker.answer_pings = false;
        net.broker.ack_publishes = false;
    }
    // The device keeps sending (QoS 0, nothing to acknowledge): only "nothing received"
    // can reveal the dead link.
    let mut down_at = None;
    for i in 0..20u8 {
        h.publish(&OutgoingMessage::new("t/q0", &[i]));
        let until = h.now() + 2_000;
        for step in h.drain_until(until) {
            if is_down(&step) && down_at.is_none() {
                assert_eq!(step, down(CloseReason::PingTimeout, true));
                down_at = h.history.iter().find(|(_, s)| is_down(s)).map(|(t, _)| *t);
            }
        }
    }
    let down_at = down_at.expect("the dead link was found");
    assert!(
        down_at <= t0 + KEEPALIVE + PING_TIMEOUT,
        "down at {down_at}"
    );
}

/// Regression: with writes blocked, the owed PINGREQ could not even be queued and the session's
/// keepalive deadline stayed in the past, so `poll` spun at full speed and never found the dead
/// link.
#[test]
fn write_that_never_completes_is_ended_by_keepalive() {
    let mut h = Harness::new();
    h.run_until_up();
    let t0 = h.now();
    // The peer stopped reading and its window is full: writes stay pending for ever.
    h.net().write_chunk = 0;
    h.publish(&OutgoingMessage::new("t/stuck", b"x"));
    let steps = h.run_until(t0 + 60_000, is_down);
    assert_eq!(steps.last(), Some(&down(CloseReason::PingTimeout, true)));
    let down_at = time_of(&h, is_down);
    assert!(
        down_at <= t0 + KEEPALIVE + PING_TIMEOUT,
        "down at {down_at}"
    );
    h.net().write_chunk = usize::MAX;
    h.run_until_up();
    assert_eq!(h.net().connections, 2);
}

/// A slow uplink and an application that publishes faster than it drains: the transmit buffer
/// never empties. The client still reads what the broker sends in between writes, so the
/// PINGRESPs arrive and the connection stays up. Before, it only read with nothing left to
/// write, and the unread PINGRESP ended the connection at the ping timeout.
#[test]
fn reads_go_on_while_a_slow_uplink_is_always_busy() {
    let mut h = Harness::new();
    h.run_until_up();
    {
        let mut net = h.net();
        // 16 bytes per 50 ms: 320 bytes/s.
        net.write_chunk = 16;
        net.write_ms = 50;
    }
    let t0 = h.now();
    let payload = [0u8; 64];
    let mut refused = 0;
    let mut next_publish = t0;
    // 68 bytes every 100 ms: more than twice what the uplink takes.
    while h.now() < t0 + 3 * KEEPALIVE {
        if h.now() >= next_publish {
            if h.client
                .publish(&OutgoingMessage::new("t/s", &payload))
                .is_err()
            {
                refused += 1;
            }
            next_publish += 100;
        }
        if let Some(step) = h.next_until(next_publish) {
            assert!(!is_down(&step), "{step:?}");
        }
    }
    assert!(refused > 0, "the uplink was never saturated");
    let pings = h.packets().iter().filter(|p| **p == Pkt::PingReq).count();
    assert!(pings >= 3, "{pings} PINGREQs");
    assert!(h.client.session().is_up());
    assert_eq!(h.net().connections, 1);
}

/// Found in review: a restart while the DISCONNECT was still waiting to be written, then a
/// write error on that old connection. The client reported the loss to the session, which by
/// then was opening the next connection: a spurious `Down { ConnectFailed }`, a failure counted
/// for an attempt never made, and a stale Open carried out later, leaving a connection with no
/// CONNECT on it.
#[test]
fn restart_during_the_disconnect_flush_then_a_write_error() {
    let mut h = Harness::new();
    h.run_until_up();
    // The DISCONNECT cannot go out yet.
    h.net().write_chunk = 0;
    h.client.disconnect();
    let t = h.now() + 100;
    let _ = h.poll_once(t, Some(4));
    let _ = h.poll_once(t, Some(4));
    h.client.restart();
    {
        let mut net = h.net();
        net.fail_next_write = true;
        net.write_chunk = usize::MAX;
    }
    let steps = h.drain_until(h.now() + 30_000);
    assert!(
        !steps.iter().any(|s| matches!(
            s,
            Ok(Ev::Session(Event::Down {
                reason: CloseReason::ConnectFailed,
                ..
            }))
        )),
        "{steps:#?}"
    );
    let net = h.net();
    let connects = net
        .broker
        .packets()
        .iter()
        .filter(|p| matches!(p, Pkt::Connect { .. }))
        .count();
    assert_eq!(
        connects, net.connections as usize,
        "a connection without CONNECT"
    );
}

#[test]
fn end_of_stream_is_closed_by_peer_and_reconnects() {
    let mut h = Harness::new();
    h.run_until_up();
    h.push_rx(Rx::Eof);
    let steps = h.run_until(h.now() + 1_000, is_reconnecting);
    assert_eq!(steps[0], down(CloseReason::ClosedByPeer, true));
    assert_eq!(h.net().closes, 1);
    h.run_until_up();
    assert_eq!(h.net().connections, 2);
}

#[test]
fn read_error_is_closed_by_peer_and_reconnects() {
    let mut h = Harness::new();
    h.run_until_up();
    h.push_rx(Rx::Error);
    let steps = h.run_until(h.now() + 1_000, is_reconnecting);
    assert_eq!(steps[0], down(CloseReason::ClosedByPeer, true));
    h.run_until_up();
    assert_eq!(h.net().connections, 2);
}

/// A message larger than the receive buffer is skipped as it streams in, acknowledged at its
/// QoS and reported; the connection stays up and the messages around it arrive. Before, it was
/// a protocol error: a retained message that no longer fit came back after every resubscribe
/// and kept the client reconnecting at the minimum backoff.
#[test]
fn oversize_message_is_skipped_acknowledged_and_reported() {
    let mut h = Harness::with(config(), Sizes { rx: 128, tx: 512 });
    h.net().read_chunk = 50;
    h.run_until_up();
    let payload = [7u8; 300];
    h.send(&publish_packet("small", b"1", PublishQos::AtMostOnce));
    h.send(&publish_packet(
        "big",
        &payload,
        PublishQos::AtLeastOnce(id(5)),
    ));
    h.send(&publish_packet("small", b"2", PublishQos::AtMostOnce));
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("small", b"1", QoS::AtMostOnce)))
    );
    assert_eq!(
        h.next(),
        session(Event::MessageTooLarge {
            // Fixed header 1 + 2, topic 2 + 3, packet identifier 2, payload 300.
            len: 3 + 5 + 2 + 300,
            qos: QoS::AtLeastOnce
        })
    );
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("small", b"2", QoS::AtMostOnce)))
    );
    h.drain_until(h.now() + 100);
    assert!(h.packets().contains(&Pkt::PubAck(5)), "{:?}", h.packets());
    assert_eq!(h.net().connections, 1);
    assert!(h.client.session().is_up());
    h.assert_clean_stream();
}

/// A message skipped over a slow link for twice the keepalive interval: the bytes arriving
/// keep the connection alive, and the PINGRESP queued behind them is not late. Before,
/// skipped bytes did not count as received, the PINGREQ went out at the keepalive interval
/// and its PINGRESP, stuck behind the rest of the message, ended the connection.
#[test]
fn a_long_skip_over_a_slow_link_keeps_the_connection() {
    let mut h = Harness::with(config(), Sizes { rx: 128, tx: 512 });
    h.run_until_up();
    h.net().broker.answer_pings = false;
    let payload = vec![7u8; 10_000];
    let bytes = transport::encode(&publish_packet("big", &payload, PublishQos::AtMostOnce));
    let t0 = h.now();
    let mut steps = Vec::new();
    // 1,000 bytes every 4 s (a gap under the ping timeout): 40 s for the message.
    for (k, chunk) in bytes.chunks(1000).enumerate() {
        h.push_rx(Rx::Data(chunk.to_vec()));
        let until = t0 + 4_000 * (k as u64 + 1);
        while let Some(step) = h.next_until(until) {
            assert!(!is_down(&step), "{step:?}");
            steps.push(step);
        }
    }
    // The PINGRESPs the broker owes come after the message.
    let pings = h.packets().iter().filter(|p| **p == Pkt::PingReq).count();
    assert!(pings >= 1, "no PINGREQ in 40 s");
    for _ in 0..pings {
        h.send(&Packet::PingResp);
    }
    h.send(&publish_packet("small", b"ok", PublishQos::AtMostOnce));
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("small", b"ok", QoS::AtMostOnce)))
    );
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Ok(Ev::Session(Event::MessageTooLarge { .. }))))
    );
    assert_eq!(h.net().connections, 1);
}

#[test]
fn oversize_qos2_message_is_received_exactly_once() {
    let mut h = Harness::with(config(), Sizes { rx: 64, tx: 512 });
    h.run_until_up();
    let payload = [7u8; 100];
    let big = publish_packet("big", &payload, PublishQos::ExactlyOnce(id(6)));
    h.send(&big);
    assert_eq!(
        h.next(),
        session(Event::MessageTooLarge {
            len: 2 + 5 + 2 + 100,
            qos: QoS::ExactlyOnce
        })
    );
    // The broker missed the PUBREC and sends it again with DUP: not reported again.
    let Packet::Publish(p) = big else { panic!() };
    h.send(&Packet::Publish(Publish { dup: true, ..p }));
    h.send(&Packet::PubRel(PubRel::new(id(6))));
    h.drain_until(h.now() + 100);
    let packets = h.packets();
    assert_eq!(
        packets.iter().filter(|p| **p == Pkt::PubRec(6)).count(),
        2,
        "{packets:?}"
    );
    assert!(packets.contains(&Pkt::PubComp(6)), "{packets:?}");
    assert_eq!(h.net().connections, 1);
}

/// Only a PUBLISH is skipped: any other packet larger than the receive buffer is refused from
/// its fixed header, at once.
#[test]
fn oversize_packet_of_another_type_is_refused_at_once() {
    let mut h = Harness::with(config(), Sizes { rx: 128, tx: 512 });
    h.run_until_up();
    let t0 = h.now();
    // A SUBACK header announcing 300 bytes, and the first of them.
    h.push_rx(Rx::Data(vec![0x90, 0xAC, 0x02, 0x00, 0x01]));
    let steps = h.run_until(t0 + 60_000, is_down);
    assert_eq!(
        steps.last(),
        Some(&down(
            CloseReason::Protocol(ProtocolError::Malformed(packet::Error::PacketTooLarge {
                packet_len: 303,
                max: 128
            })),
            true
        ))
    );
    assert_eq!(time_of(&h, is_down), t0);
}

#[test]
fn oversize_message_whose_head_does_not_fit_is_a_protocol_error() {
    let mut h = Harness::with(config(), Sizes { rx: 32, tx: 512 });
    h.run_until_up();
    // The topic alone is longer than the receive buffer: the packet identifier cannot be
    // read, so the message cannot be acknowledged.
    let topic = "t".repeat(40);
    h.send(&publish_packet(
        &topic,
        b"x",
        PublishQos::AtLeastOnce(id(1)),
    ));
    let steps = h.run_until(h.now() + 1_000, is_reconnecting);
    assert_eq!(
        steps[0],
        down(
            CloseReason::Protocol(ProtocolError::Malformed(packet::Error::PacketTooLarge {
                // Fixed header 2, topic 2 + 40, packet identifier 2, payload 1.
                packet_len: 2 + 42 + 2 + 1,
                max: 32
            })),
            true
        )
    );
    h.run_until_up();
    h.send(&publish_packet("small", b"ok", PublishQos::AtMostOnce));
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("small", b"ok", QoS::AtMostOnce)))
    );
}

#[test]
fn malformed_packet_is_a_protocol_error_and_reconnects() {
    let mut h = Harness::new();
    h.run_until_up();
    // Packet type 15 is reserved.
    h.push_rx(Rx::Data(vec![0xF0, 0x00]));
    let steps = h.run_until(h.now() + 1_000, is_reconnecting);
    assert_eq!(
        steps[0],
        down(
            CloseReason::Protocol(ProtocolError::Malformed(packet::Error::ReservedPacketType(
                15
            ))),
            true
        )
    );
    h.run_until_up();

    // A well-formed packet a broker never sends in this state.
    h.send(&Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    }));
    let steps = h.run_until(h.now() + 1_000, is_reconnecting);
    assert_eq!(
        steps[0],
        down(
            CloseReason::Protocol(ProtocolError::Unexpected(packet::PacketType::ConnAck)),
            true
        )
    );
    h.run_until_up();
    assert_eq!(h.net().connections, 3);
    h.assert_clean_stream();
}

// ----- acknowledgement after delivery -----

#[test]
fn inbound_qos1_is_acknowledged_on_the_next_poll() {
    let mut h = Harness::new();
    h.run_until_up();
    h.send(&publish_packet(
        "in/1",
        b"hello",
        PublishQos::AtLeastOnce(id(7)),
    ));
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("in/1", b"hello", QoS::AtLeastOnce)))
    );
    // The application holds the message: time passes, no PUBACK, since `poll` is not called.
    h.time.advance_to(h.now() + 3_000);
    assert!(!h.packets().contains(&Pkt::PubAck(7)));
    // The next call releases it.
    assert_eq!(h.next_until(h.now() + 1_000), None);
    let acks: Vec<Pkt> = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Pkt::PubAck(_)))
        .collect();
    assert_eq!(acks, [Pkt::PubAck(7)]);
}

#[test]
fn inbound_qos2_is_received_on_the_next_poll_and_completed() {
    let mut h = Harness::new();
    h.run_until_up();
    h.send(&publish_packet(
        "in/2",
        b"once",
        PublishQos::ExactlyOnce(id(9)),
    ));
    assert_eq!(
        h.next(),
        Ok(Ev::Message(message("in/2", b"once", QoS::ExactlyOnce)))
    );
    assert!(!h.packets().contains(&Pkt::PubRec(9)));
    // The broker answers PUBREC with PUBREL; the client completes with PUBCOMP.
    assert_eq!(h.next_until(h.now() + 1_000), None);
    let tail: Vec<Pkt> = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Pkt::PubRec(_) | Pkt::PubComp(_)))
        .collect();
    assert_eq!(tail, [Pkt::PubRec(9), Pkt::PubComp(9)]);
}

/// Regression: the acknowledgements of a burst of inbound QoS 1 messages read in one go were
/// only taken out of the session once no whole packet was left in the receive buffer, so more
/// than the session's 16 owed acknowledgements (mosquitto allows 20 messages in flight to a
/// subscriber) closed the connection with `InboundBacklog`.
#[test]
fn a_burst_of_inbound_qos1_is_acknowledged_without_backlog() {
    const BURST: u16 = 40;
    let mut h = Harness::with(config(), Sizes { rx: 2048, tx: 512 });
    h.run_until_up();
    let mut bytes = Vec::new();
    for i in 1..=BURST {
        let payload = [i as u8; 8];
        bytes.extend(transport::encode(&publish_packet(
            "in/burst",
            &payload,
            PublishQos::AtLeastOnce(id(i)),
        )));
    }
    h.push_rx(Rx::Data(bytes));
    for i in 1..=BURST {
        assert_eq!(
            h.next(),
            Ok(Ev::Message(message(
                "in/burst",
                &[i as u8; 8],
                QoS::AtLeastOnce
            )))
        );
    }
    assert_eq!(h.next_until(h.now() + 1_000), None);
    let acks: Vec<Pkt> = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Pkt::PubAck(_)))
        .collect();
    assert_eq!(acks, (1..=BURST).map(Pkt::PubAck).collect::<Vec<_>>());
    assert_eq!(h.net().connections, 1);
    h.assert_clean_stream();
}

// ----- QoS 1 across an outage -----

#[test]
fn qos1_messages_survive_an_outage() {
    let mut h = Harness::new();
    h.run_until_up();
    {
        let mut net = h.net();
        net.broker.answer_pings = false;
        net.broker.ack_publishes = false;
    }
    // Published into the half-open link: written, never acknowledged.
    let a = h.publish(&qos1("t/a", b"into the void"));
    let steps = h.run_until(h.now() + 60_000, is_reconnecting);
    assert!(
        steps.contains(&down(CloseReason::PingTimeout, true)),
        "{steps:?}"
    );
    // Published while the client knows it is offline.
    let b = h.publish(&qos1("t/b", b"while down"));
    {
        let mut net = h.net();
        net.broker.answer_pings = true;
        net.broker.ack_publishes = true;
    }
    h.run_until_up();
    let mut done = Vec::new();
    h.run_until(h.now() + 10_000, |s| {
        if let Ok(Ev::Session(Event::Published(id))) = s {
            done.push(*id);
        }
        done.len() == 2
    });
    done.sort();
    assert_eq!(done, [a, b]);
    let sent = publishes(&h);
    assert_eq!(
        sent,
        [
            (1, false, Some(1), b"into the void".to_vec()),
            // Sent again with DUP and its packet identifier.
            (2, true, Some(1), b"into the void".to_vec()),
            // Never on the wire before: its first attempt, so no DUP (MQTT-3.3.1-1).
            (2, false, Some(2), b"while down".to_vec()),
        ]
    );
    h.assert_clean_stream();
}

#[test]
fn unacknowledged_qos1_times_out_and_goes_again_with_dup() {
    let mut h = Harness::new();
    h.run_until_up();
    let t0 = h.now();
    h.net().broker.ack_publishes = false;
    let id = h.publish(&qos1("t/a", b"late"));
    let steps = h.run_until(t0 + 60_000, is_down);
    assert_eq!(steps.last(), Some(&down(CloseReason::AckTimeout, true)));
    assert_eq!(time_of(&h, is_down), t0 + 30_000);
    h.net().broker.ack_publishes = true;
    h.run_until_event(Event::Published(id));
    assert_eq!(
        publishes(&h),
        [
            (1, false, Some(1), b"late".to_vec()),
            (2, true, Some(1), b"late".to_vec())
        ]
    );
}

#[test]
fn subscriptions_are_renewed_after_a_clean_reconnect() {
    let mut h = Harness::new();
    h.client
        .subscribe(&[Subscription {
            filter: "cmd/#",
            qos: QoS::AtLeastOnce,
        }])
        .expect("subscribe");
    h.run_until_up();
    h.run_until(h.now() + 1_000, |s| {
        matches!(s, Ok(Ev::Session(Event::Subscribed { .. })))
    });
    h.push_rx(Rx::Eof);
    h.run_until_up();
    h.run_until(h.now() + 1_000, |s| {
        matches!(s, Ok(Ev::Session(Event::Subscribed { .. })))
    });
    let subscribes: Vec<u32> = h
        .sent()
        .into_iter()
        .filter(|s| matches!(&s.packet, Pkt::Subscribe { filters, .. } if filters == &["cmd/#"]))
        .map(|s| s.conn)
        .collect();
    assert_eq!(subscribes, [1, 2]);
}

#[test]
fn qos1_message_expiring_during_an_outage_is_reported() {
    let mut h = Harness::new();
    h.net().connects.extend([ConnectStep::Fail; 3]);
    let id = h.publish(&qos1("t/ttl", b"stale").ttl(Duration::from_secs(2)));
    h.run_until_event(Event::Expired(id));
    h.run_until_up();
    h.drain_until(h.now() + 1_000);
    assert!(publishes(&h).is_empty());
}

// ----- one task: select and cancellation -----

#[test]
fn publish_from_the_same_task_while_poll_is_pending() {
    let mut h = Harness::new();
    let clock = VirtualClock::new(h.time.clone());
    let mut next_sample = 1_000;
    let mut ids = Vec::new();
    let mut acked = Vec::new();
    while acked.len() < 10 {
        let client = &mut h.client;
        let at = Instant::from_millis(next_sample);
        let woke = drive(
            &h.time,
            async {
                match select(client.poll(), clock.sleep_until(at)).await {
                    Either::First(step) => Some(step.map(Ev::from_client)),
                    Either::Second(()) => None,
                }
            },
            Limit {
                until: 120_000,
                polls: None,
            },
        )
        .unwrap();
        match woke {
            None if ids.len() < 10 => {
                let payload = [ids.len() as u8];
                ids.push(h.publish(&qos1("sensor/t", &payload)));
                next_sample += 3_000;
            }
            None => next_sample += 3_000,
            Some(Ok(Ev::Session(Event::Published(id)))) => acked.push(id),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e:?}"),
        }
    }
    assert_eq!(acked, ids);
    // Each sample went out the moment it was published, although `poll` was waiting on a read.
    let at: Vec<u64> = h
        .sent()
        .into_iter()
        .filter(|s| matches!(s.packet, Pkt::Publish { .. }))
        .map(|s| s.at)
        .collect();
    let expected: Vec<u64> = (0..10).map(|i| 1_000 + 3_000 * i).collect();
    assert_eq!(at, expected);
}

/// The outcome of one run of [`cancellation_scenario`].
struct Cancelled {
    /// Polls dropped before they completed.
    drops: usize,
}

/// A whole session: connect, subscribe, messages both ways, graceful disconnect, with every
/// `poll` future dropped after `k` pending polls (and the application publishing in between).
/// Reads come one byte at a time, writes take `write_chunk` bytes, and every other I/O call is
/// an extra await point.
fn cancellation_scenario(k: usize, write_chunk: usize) -> Cancelled {
    let mut h = Harness::new();
    {
        let mut net = h.net();
        net.read_chunk = 1;
        net.write_chunk = write_chunk;
        net.yield_every_other = true;
    }
    h.client
        .subscribe(&[Subscription {
            filter: "in/#",
            qos: QoS::ExactlyOnce,
        }])
        .expect("subscribe");
    let inbound: Vec<(String, Vec<u8>, PublishQos)> = (1..=6u16)
        .map(|i| {
            let qos = match i % 3 {
                0 => PublishQos::AtMostOnce,
                1 => PublishQos::AtLeastOnce(id(100 + i)),
                _ => PublishQos::ExactlyOnce(id(100 + i)),
            };
            (format!("in/{i}"), vec![i as u8; usize::from(i) * 7], qos)
        })
        .collect();
    let outbound: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'o', i]).collect();

    let mut published: Vec<PublishId> = Vec::new();
    let mut acked: Vec<PublishId> = Vec::new();
    let mut delivered: Vec<Msg> = Vec::new();
    let mut drops = 0;
    let mut injected = false;
    let mut disconnecting = false;
    let limit = 600_000;
    for round in 1.. {
        assert!(
            h.now() < limit,
            "k {k}, write chunk {write_chunk}: not finished by {limit} ms: delivered {}, acked {}, wire {:#?}",
            delivered.len(),
            acked.len(),
            h.sent()
        );
        // As if selected against the application's one-second timer.
        let outcome = h.poll_once(h.now() + 1_000, Some(k));
        // The application does its own work while `poll` is not running.
        if round % 3 == 0 && published.len() < outbound.len() {
            let i = published.len();
            let payload = outbound[i].clone();
            // Mostly QoS 1, one QoS 2 (PUBLISH, PUBREC, PUBREL, PUBCOMP) where the build has it.
            let qos = if i == 2 {
                QoS::ExactlyOnce.min(shearwater::session::MAX_QOS)
            } else {
                QoS::AtLeastOnce
            };
            published.push(h.publish(&OutgoingMessage::new("out/x", &payload).qos(qos)));
        }
        match outcome {
            Outcome::Cancelled => drops += 1,
            Outcome::Ready(Ok(Ev::Session(Event::Up { .. }))) => {
                assert!(!injected, "k {k}, write chunk {write_chunk}: up twice");
                injected = true;
                let mut bytes = Vec::new();
                for (topic, payload, qos) in &inbound {
                    bytes.extend(transport::encode(&publish_packet(topic, payload, *qos)));
                }
                h.push_rx(Rx::Data(bytes));
            }
            Outcome::Ready(Ok(Ev::Message(m))) => delivered.push(m),
            Outcome::Ready(Ok(Ev::Session(Event::Published(id)))) => acked.push(id),
            Outcome::Ready(Ok(Ev::Session(Event::Disconnected))) => {}
            Outcome::Ready(Ok(Ev::Session(e))) => {
                assert!(
                    matches!(
                        e,
                        Event::TransportConnected
                            | Event::ConnAckReceived { .. }
                            | Event::Subscribed { .. }
                    ),
                    "k {k}, write chunk {write_chunk}: unexpected {e:?}"
                );
            }
            Outcome::Ready(Err(ClientError::Stopped)) => break,
            Outcome::TimeUp => {}
            Outcome::Stuck => panic!(
                "k {k}, write chunk {write_chunk}: stuck at {} ms; history {:?}; wire {:?}; state {:?}",
                h.now(),
                h.history,
                h.packets(),
                h.client.session().state()
            ),
        }
        let broker_done = {
            let packets = h.packets();
            let count = |p: &Pkt| packets.iter().filter(|q| *q == p).count();
            inbound.iter().all(|(_, _, qos)| match qos {
                PublishQos::AtMostOnce => true,
                PublishQos::AtLeastOnce(i) => count(&Pkt::PubAck(i.get())) == 1,
                PublishQos::ExactlyOnce(i) => count(&Pkt::PubComp(i.get())) == 1,
            })
        };
        if !disconnecting
            && broker_done
            && delivered.len() == inbound.len()
            && acked.len() == outbound.len()
        {
            disconnecting = true;
            h.client.disconnect();
        }
    }

    // Every inbound message exactly once, in order.
    let expected: Vec<Msg> = inbound
        .iter()
        .map(|(t, p, q)| message(t, p, q.qos()))
        .collect();
    assert_eq!(delivered, expected, "k {k}, write chunk {write_chunk}");
    // Every outbound message exactly once on the wire, on the one connection, without DUP.
    // (The QoS 2 message completes a round trip later than the QoS 1 ones after it.)
    acked.sort();
    assert_eq!(acked, published, "k {k}, write chunk {write_chunk}");
    let sent = publishes(&h);
    let payloads: Vec<Vec<u8>> = sent.iter().map(|p| p.3.clone()).collect();
    assert_eq!(payloads, outbound, "k {k}, write chunk {write_chunk}");
    let releases = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Pkt::PubRel(_)))
        .count();
    let outbound_qos2 = usize::from(shearwater::session::MAX_QOS == QoS::ExactlyOnce);
    assert_eq!(releases, outbound_qos2, "k {k}, write chunk {write_chunk}");
    assert!(
        sent.iter().all(|p| p.0 == 1 && !p.1),
        "k {k}, write chunk {write_chunk}: {sent:?}"
    );
    // One acknowledgement per inbound exchange, one SUBSCRIBE, DISCONNECT last.
    let packets = h.packets();
    for (_, _, qos) in &inbound {
        let wanted: &[Pkt] = match qos {
            PublishQos::AtMostOnce => &[],
            PublishQos::AtLeastOnce(i) => &[Pkt::PubAck(i.get())],
            PublishQos::ExactlyOnce(i) => &[Pkt::PubRec(i.get()), Pkt::PubComp(i.get())],
        };
        for p in wanted {
            assert_eq!(
                packets.iter().filter(|q| *q == p).count(),
                1,
                "k {k}, write chunk {write_chunk}: {p:?}"
            );
        }
    }
    let subscribes = packets
        .iter()
        .filter(|p| matches!(p, Pkt::Subscribe { .. }))
        .count();
    assert_eq!(subscribes, 1, "k {k}, write chunk {write_chunk}");
    assert_eq!(
        packets.last(),
        Some(&Pkt::Disconnect),
        "k {k}, write chunk {write_chunk}"
    );
    // The stream was never corrupted and ended on a packet boundary.
    h.assert_clean_stream();
    let net = h.net();
    assert!(
        net.broker.partial_at_close.is_empty(),
        "k {k}, write chunk {write_chunk}"
    );
    assert_eq!(
        net.connections, 1,
        "k {k}, write chunk {write_chunk}: reconnected"
    );
    assert!(
        !net.connected,
        "k {k}, write chunk {write_chunk}: still connected after the disconnect"
    );
    Cancelled { drops }
}

/// Also the regression test of a close forgotten by a dropped `poll` (see
/// `disconnect_survives_a_dropped_poll`).
#[test]
fn poll_dropped_at_every_await_point_loses_and_duplicates_nothing() {
    for write_chunk in 1..=3 {
        let mut k = 1;
        // Past the deepest run of awaits within one call, nothing is dropped any more: every
        // await point of the scenario has been a drop point.
        while cancellation_scenario(k, write_chunk).drops > 0 {
            k += 1;
            assert!(k < 200, "write chunk {write_chunk}: drops never stop");
        }
        assert!(
            k > 10,
            "write chunk {write_chunk}: too few await points ({k})"
        );
    }
}

// ----- disconnect -----

#[test]
fn disconnect_sends_disconnect_closes_and_stops() {
    let mut h = Harness::new();
    h.run_until_up();
    h.client.disconnect();
    assert_eq!(h.next(), session(Event::Disconnected));
    assert_eq!(h.next(), Err(ClientError::Stopped));
    assert_eq!(h.packets().last(), Some(&Pkt::Disconnect));
    let net = h.net();
    assert!(!net.connected);
    assert_eq!(net.closes, 1);
    assert!(net.broker.partial_at_close.is_empty());
    drop(net);
    assert_eq!(
        h.client.publish(&qos1("t", b"x")),
        Err(shearwater::session::PublishError::Stopped)
    );
    h.client.restart();
    h.run_until_up();
    assert_eq!(h.net().connections, 2);
}

#[test]
fn disconnect_while_connecting_or_waiting_stops_at_once() {
    // While the transport is still connecting.
    let mut h = Harness::new();
    h.net().connects.push_back(ConnectStep::Never);
    assert_eq!(h.next_until(1_000), None);
    h.client.disconnect();
    assert_eq!(h.next(), session(Event::Disconnected));
    assert_eq!(h.next(), Err(ClientError::Stopped));
    assert_eq!(h.net().closes, 1);
    assert!(h.packets().is_empty());

    // While backing off after a failure.
    let mut h = Harness::new();
    h.net().connects.push_back(ConnectStep::Fail);
    h.run_until(1_000, is_reconnecting);
    h.client.disconnect();
    assert_eq!(h.next(), session(Event::Disconnected));
    assert_eq!(h.next(), Err(ClientError::Stopped));
    assert_eq!(h.net().connect_attempts.len(), 1);
}

/// Regression: a `poll` dropped while it flushed DISCONNECT forgot the close, so the next
/// calls waited on the open connection for ever instead of closing it and reporting `Stopped`.
#[test]
fn disconnect_survives_a_dropped_poll() {
    for k in 1..=6 {
        let mut h = Harness::new();
        h.run_until_up();
        {
            let mut net = h.net();
            net.write_chunk = 1;
            net.yield_every_other = true;
        }
        h.client.disconnect();
        let mut steps = Vec::new();
        loop {
            match h.poll_once(h.now() + 60_000, Some(k)) {
                Outcome::Ready(Err(ClientError::Stopped)) => break,
                Outcome::Ready(step) => steps.push(step),
                Outcome::Cancelled => {}
                other => panic!("k {k}: {other:?} after {steps:?}"),
            }
        }
        assert_eq!(steps, [session(Event::Disconnected)], "k {k}");
        assert_eq!(h.packets().last(), Some(&Pkt::Disconnect), "k {k}");
        let net = h.net();
        assert!(!net.connected, "k {k}");
        assert!(net.broker.partial_at_close.is_empty(), "k {k}");
    }
}
