//! The lists of SUBSCRIBE, SUBACK and UNSUBSCRIBE: either a caller's slice (to encode) or the
//! already validated bytes of a received packet (decoded), iterated without copying.

use core::fmt;

use super::Error;
use super::fields::Writer;

/// One entry of a [`List`].
///
/// Sealed: implemented by [`Subscription`](super::Subscription), `&str` (the topic filters of
/// UNSUBSCRIBE) and [`SubAckReturnCode`](super::SubAckReturnCode).
pub trait Item<'a>: Copy + sealed::Codec<'a> {}

impl<'a, T: Copy + sealed::Codec<'a>> Item<'a> for T {}

pub(crate) mod sealed {
    use super::{Error, Writer};

    /// How an entry is read from, measured on and written to the wire.
    pub trait Codec<'a>: Sized {
        /// Reads and validates one entry from the front of `buf`.
        fn read(buf: &mut &'a [u8]) -> Result<Self, Error>;
        /// Reads the next entry of bytes that `read` accepted already, for the iterator; `None`
        /// at the end (and, as with `read`, at a bad entry, which validated bytes never have).
        #[inline]
        fn next(buf: &mut &'a [u8]) -> Option<Self> {
            Self::read(buf).ok()
        }
        /// Applies the decoder's rules to an entry about to be encoded.
        fn check(&self) -> Result<(), Error>;
        /// The entry's size on the wire.
        fn wire_len(&self) -> usize;
        /// Writes the entry.
        fn write(&self, w: &mut Writer<'_>);
    }
}

#[derive(Clone, Copy)]
enum Repr<'a, T> {
    Items(&'a [T]),
    /// Bytes that `List::read` validated entry by entry.
    Wire(&'a [u8]),
}

/// A non-empty list of entries: built from a slice to encode, or borrowed from a received packet.
#[derive(Clone, Copy)]
pub struct List<'a, T> {
    repr: Repr<'a, T>,
}

impl<'a, T: Item<'a>> List<'a, T> {
    /// A list over the caller's entries. Emptiness and the entries' rules are checked when the
    /// packet is encoded.
    pub const fn new(items: &'a [T]) -> Self {
        Self {
            repr: Repr::Items(items),
        }
    }

    /// Validates every entry of `buf` and keeps the bytes; an empty `buf` is `empty_error`.
    pub(crate) fn read(buf: &'a [u8], empty_error: Error) -> Result<Self, Error> {
        if buf.is_empty() {
            return Err(empty_error);
        }
        let mut rest = buf;
        while !rest.is_empty() {
            T::read(&mut rest)?;
        }
        Ok(Self {
            repr: Repr::Wire(buf),
        })
    }

    /// The entries, in order.
    pub fn iter(&self) -> Iter<'a, T> {
        Iter { repr: self.repr }
    }

    /// The number of entries (counted by walking a received list).
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Items(items) => items.len(),
            Repr::Wire(_) => self.iter().count(),
        }
    }

    /// True if the list has no entry (only possible for a list built to encode).
    pub fn is_empty(&self) -> bool {
        match self.repr {
            Repr::Items(items) => items.is_empty(),
            Repr::Wire(bytes) => bytes.is_empty(),
        }
    }

    /// Checks a list about to be encoded: non-empty, every entry valid.
    pub(crate) fn check(&self, empty_error: Error) -> Result<(), Error> {
        if self.is_empty() {
            return Err(empty_error);
        }
        match self.repr {
            Repr::Items(items) => items.iter().try_for_each(sealed::Codec::check),
            Repr::Wire(_) => Ok(()),
        }
    }

    pub(crate) fn wire_len(&self) -> usize {
        match self.repr {
            Repr::Items(items) => items.iter().map(sealed::Codec::wire_len).sum(),
            Repr::Wire(bytes) => bytes.len(),
        }
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        match self.repr {
            Repr::Items(items) => items.iter().for_each(|item| item.write(w)),
            Repr::Wire(bytes) => w.bytes(bytes),
        }
    }
}

impl<'a, T: Item<'a>> From<&'a [T]> for List<'a, T> {
    fn from(items: &'a [T]) -> Self {
        Self::new(items)
    }
}

impl<'a, T: Item<'a>, const N: usize> From<&'a [T; N]> for List<'a, T> {
    fn from(items: &'a [T; N]) -> Self {
        Self::new(items)
    }
}

impl<'a, T: Item<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, T: Item<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: Item<'a> + fmt::Debug> fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl<'a, T: Item<'a> + defmt::Format> defmt::Format for List<'a, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                defmt::write!(f, ", ");
            }
            defmt::write!(f, "{}", item);
        }
        defmt::write!(f, "]");
    }
}

impl<'a, T: Item<'a>> IntoIterator for List<'a, T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Iterator over the entries of a [`List`].
#[derive(Clone)]
pub struct Iter<'a, T> {
    repr: Repr<'a, T>,
}

impl<'a, T: Item<'a>> Iterator for Iter<'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &mut self.repr {
            Repr::Items(items) => {
                let (first, rest) = items.split_first()?;
                *items = rest;
                Some(*first)
            }
            // Validated when the packet was decoded, so reading again cannot fail; if it did,
            // the iteration would simply end.
            Repr::Wire(bytes) => T::next(bytes),
        }
    }
}
