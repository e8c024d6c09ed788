//! A fixed table of entries whose variable-length bytes live in one caller-provided buffer.
//!
//! Entries keep their insertion order, and their bytes are packed in that order: removing one
//! moves the bytes of the later ones down. That is O(bytes) per removal, which for the few
//! kilobytes of a device's store costs less than any free-list bookkeeping, and it means a full
//! store is only ever full for real (no fragmentation).

use heapless::Vec;

use crate::compact::{move_down, remove_ordered};

/// One entry: its metadata and where its bytes are.
#[derive(Debug, Clone, Copy)]
struct Slot<M> {
    meta: M,
    start: usize,
    len: usize,
}

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlabFull {
    /// All `N` entries are taken.
    Entries,
    /// The byte buffer cannot hold this many more bytes.
    Bytes,
}

pub(crate) struct Slab<'b, M, const N: usize> {
    slots: Vec<Slot<M>, N>,
    data: &'b mut [u8],
}

impl<'b, M: Copy, const N: usize> Slab<'b, M, N> {
    pub(crate) fn new(data: &'b mut [u8]) -> Self {
        Self {
            slots: Vec::new(),
            data,
        }
    }

    fn used(&self) -> usize {
        self.slots.last().map_or(0, |s| s.start + s.len)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes still free in the buffer.
    pub(crate) fn free_bytes(&self) -> usize {
        self.data.len().saturating_sub(self.used())
    }

    /// Appends an entry whose bytes are the concatenation of `parts`.
    pub(crate) fn push(&mut self, meta: M, parts: &[&[u8]]) -> Result<(), SlabFull> {
        if self.slots.is_full() {
            return Err(SlabFull::Entries);
        }
        let start = self.used();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let Some(dst) = self.data.get_mut(start..start + len) else {
            return Err(SlabFull::Bytes);
        };
        let mut at = 0;
        for part in parts {
            if let Some(d) = dst.get_mut(at..at + part.len()) {
                d.copy_from_slice(part);
            }
            at += part.len();
        }
        self.slots
            .push(Slot { meta, start, len })
            .map_err(|_| SlabFull::Entries)
    }

    /// Removes entry `index`, keeping the order of the others.
    pub(crate) fn remove(&mut self, index: usize) -> Option<M> {
        let removed = remove_ordered(&mut self.slots, index)?;
        let end = self.used().max(removed.start + removed.len);
        move_down(self.data, removed.start, removed.start + removed.len, end);
        for slot in self.slots.iter_mut().skip(index) {
            slot.start -= removed.len;
        }
        Some(removed.meta)
    }

    /// Drops the bytes of entry `index` but keeps its metadata and place.
    pub(crate) fn truncate_bytes(&mut self, index: usize) {
        let Some(slot) = self.slots.get(index).copied() else {
            return;
        };
        let end = self.used();
        move_down(self.data, slot.start, slot.start + slot.len, end);
        for (i, s) in self.slots.iter_mut().enumerate().skip(index) {
            if i == index {
                s.len = 0;
            } else {
                s.start -= slot.len;
            }
        }
    }

    pub(crate) fn meta(&self, index: usize) -> Option<&M> {
        self.slots.get(index).map(|s| &s.meta)
    }

    pub(crate) fn meta_mut(&mut self, index: usize) -> Option<&mut M> {
        self.slots.get_mut(index).map(|s| &mut s.meta)
    }

    pub(crate) fn bytes(&self, index: usize) -> &[u8] {
        self.slots
            .get(index)
            .and_then(|s| self.data.get(s.start..s.start + s.len))
            .unwrap_or(&[])
    }

    /// The index of the first entry whose metadata satisfies `pred`.
    pub(crate) fn position(&self, mut pred: impl FnMut(&M) -> bool) -> Option<usize> {
        self.slots.iter().position(|s| pred(&s.meta))
    }

    pub(crate) fn metas(&self) -> impl Iterator<Item = &M> {
        self.slots.iter().map(|s| &s.meta)
    }

    pub(crate) fn metas_mut(&mut self) -> impl Iterator<Item = &mut M> {
        self.slots.iter_mut().map(|s| &mut s.meta)
    }

    /// Removes every entry for which `keep` is false, in order, calling `on_removed` for each.
    pub(crate) fn retain(
        &mut self,
        mut keep: impl FnMut(&M) -> bool,
        mut on_removed: impl FnMut(M),
    ) {
        let mut i = 0;
        while let Some(slot) = self.slots.get(i) {
            if keep(&slot.meta) {
                i += 1;
            } else if let Some(meta) = self.remove(i) {
                on_removed(meta);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_push_remove_keeps_order_and_bytes() {
        let mut buf = [0u8; 15];
        let mut slab: Slab<'_, u8, 4> = Slab::new(&mut buf);
        slab.push(1, &[b"ab", b"c"]).unwrap();
        slab.push(2, &[b"defg"]).unwrap();
        slab.push(3, &[b"hi"]).unwrap();
        assert_eq!(slab.remove(1), Some(2));
        assert_eq!(slab.bytes(0), b"abc");
        assert_eq!(slab.bytes(1), b"hi");
        assert_eq!(slab.meta(1), Some(&3));
        slab.push(4, &[b"0123456789"]).unwrap();
        assert_eq!(slab.push(5, &[b"x"]), Err(SlabFull::Bytes));
        assert_eq!(slab.len(), 3);
        slab.truncate_bytes(0);
        assert_eq!(slab.bytes(0), b"");
        assert_eq!(slab.bytes(1), b"hi");
        assert_eq!(slab.bytes(2), b"0123456789");
        slab.push(5, &[b"x"]).unwrap();
        assert_eq!(slab.push(6, &[]), Err(SlabFull::Entries));
        slab.retain(|m| m % 2 == 1, |_| {});
        assert_eq!(
            slab.metas().copied().collect::<std::vec::Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(slab.bytes(1), b"hi");
        assert_eq!(slab.bytes(2), b"x");
    }
}
