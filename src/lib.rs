//! shearwater: a `no_std`, allocation-free MQTT 3.1.1 client for constrained devices.
//!
//! # Layers
//!
//! Data flows one way; each layer only knows the ones below it.
//!
//! - [`packet`]: the MQTT 3.1.1 wire format. Pure functions over byte slices: decoding borrows
//!   topics, payloads and strings from the input, encoding writes into a caller's buffer. Every
//!   rule of the specification that a receiver can check is checked, each with its own
//!   [`packet::Error`] variant. Never panics, never allocates.
//! - [`session`]: the sans-IO protocol state machine: keepalive, reconnect backoff, the
//!   outbound store, QoS 1/2 exchanges, subscriptions. Time and randomness are passed in.
//! - [`client`]: the async driver: runs the session over a transport, sleeping until the
//!   session's next deadline or until the network has something.
//! - [`transport`]: "give me a connected byte stream", with adapters for embassy-net (devices)
//!   and tokio (hosts).
//!
//! Most users will only touch the client layer; the codec is public for tools, tests, fuzzers and
//! simulated brokers.
//!
//! # Guarantees
//!
//! - `#![no_std]` (unless the `std` feature or a test build), no `alloc`, no `unsafe`.
//! - No indexing that can fail, no `unwrap`, no `panic!` in library code: the crate denies the
//!   matching clippy lints outside tests.
//! - Minimum supported Rust version: 1.88 (checked in CI).
//!
//! # Features
//!
//! | feature | effect |
//! |---|---|
//! | `qos2` (default) | QoS 2: publish, subscribe and receive exactly once; without it the client publishes and subscribes at QoS 1 at most ([`session::MAX_QOS`]), takes a QoS 2 message at least once, and is about 1.1 KiB smaller on a Cortex-M |
//! | `std` | lifts `#![no_std]` (host builds) |
//! | `defmt` | log through `defmt`; `defmt::Format` on public types |
//! | `log` | log through the `log` facade |
//! | `embassy-time` | `client::EmbassyClock` |
//! | `embassy-net` | `transport::embassy_net`: TCP over embassy-net with DNS |
//! | `tokio` | `transport::tokio` and `client::TokioClock` (implies `std`) |
//!
//! Only `qos2` is on by default; `defmt` and `log` exclude each other.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

// This module must come first: its macros are used by the modules below.
#[macro_use]
mod fmt;

pub mod client;
mod compact;
pub mod packet;
pub mod rand;
pub mod session;
pub mod time;
pub mod transport;
