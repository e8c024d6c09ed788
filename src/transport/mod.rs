//! The abstract network: "open a connection to the broker, give me its bytes".
//!
//! A [`Transport`] is one reusable connection slot: [`connect`](Transport::connect) opens a
//! connection to the broker it was configured with, the `embedded-io-async` [`Read`] and
//! [`Write`] impls move bytes over the current connection, and [`close`](Transport::close) ends it.
//! Keeping the connection inside the transport (rather than handing out a borrowed object) lets
//! an embassy-net socket with caller-provided buffers be reused for every reconnect.
//!
//! # Contract
//!
//! - `connect` replaces any previous connection. It may take as long as the network needs: the
//!   client races it against the session's connect timeout and drops the future when that
//!   passes, so it must be cancel-safe (leave the transport closed or closable). A dropped
//!   `poll` drops it too: a transport should then carry on with the attempt in progress at the
//!   next `connect` rather than start over (until `close`), or an application whose `select`
//!   loop wakes more often than a connect takes never connects. The tokio adapter does.
//! - `read` waits for at least one byte. `Ok(0)` means the peer closed the connection (end of
//!   stream); any error means the connection is broken. "No data yet" must never be `Ok(0)` or
//!   an error: the future just stays pending. Reads and writes must be cancel-safe: a future
//!   dropped before it completes has consumed or sent nothing.
//! - `write` may write fewer bytes than offered; the client writes the rest later. A timed-out
//!   write is an error like any other; the client never retries on the same connection.
//! - `close` never fails: it is best effort (flush what it can, then close or abort).
//! - Read or write without a connection is an error, never a panic.
//!
//! Adapters: `tokio` (hosts, feature `tokio`) and `embassy_net` (devices, feature
//! `embassy-net`). Any other stack (TLS, a modem's AT sockets, a test double) is one more
//! implementation.

#[cfg(feature = "embassy-net")]
pub mod embassy_net;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

/// A reusable connection to one MQTT broker. See the [module docs](self) for the contract.
#[allow(
    async_fn_in_trait,
    reason = "implementations are concrete types, so their futures' Send-ness is known where \
              it matters (tokio tasks); embassy executors need no Send"
)]
pub trait Transport: Read + Write {
    /// Opens a connection to the broker, replacing the current one if any.
    async fn connect(&mut self) -> Result<(), Self::Error>;

    /// Ends the current connection, if any. Best effort; never fails.
    async fn close(&mut self);
}
