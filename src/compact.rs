//! Moving bytes and entries towards the front of a buffer without `memmove`.
//!
//! The client's receive and transmit buffers and the session's stores close gaps by moving
//! what follows down. `copy_within` and `Vec::remove` do that with `memmove`, whose
//! compiler-builtins implementation is 1.5 KiB of flash on a Cortex-M: a quarter of the
//! library's budget for a routine it needs only for this. Moving down in chunks no longer than
//! the gap never overlaps, so every chunk is a plain `memcpy`, which is linked anyway. The price
//! is one `memcpy` call per gap-sized chunk, so a small gap in front of much data is slow: the
//! client's buffers move their rest only when it is one chunk (or when the room is needed), and
//! the stores' gaps are whole stored messages and filters.

use heapless::Vec;

/// Moves `buf[from..to]` down to start at `dst` (`dst <= from`). Out-of-range arguments move
/// nothing.
pub(crate) fn move_down(buf: &mut [u8], dst: usize, from: usize, to: usize) {
    let gap = from.saturating_sub(dst);
    if gap == 0 || to > buf.len() {
        return;
    }
    let mut src = from;
    while src < to {
        let n = gap.min(to - src);
        let Some((head, tail)) = buf.split_at_mut_checked(src) else {
            return;
        };
        if let (Some(d), Some(s)) = (head.get_mut(src - gap..src - gap + n), tail.get(..n)) {
            d.copy_from_slice(s);
        }
        src += n;
    }
}

/// Removes and returns the element at `index`, keeping the order of the others; `None` if
/// `index` is out of range.
pub(crate) fn remove_ordered<T: Copy, const N: usize>(
    v: &mut Vec<T, N>,
    index: usize,
) -> Option<T> {
    let removed = v.get(index).copied()?;
    // One conditional pass, the way `retain` compacts: a plain shift loop, a chain of swaps
    // (`ptr::swap` copies with `memmove`) or an element assignment between two places of
    // one slice all end up as `memmove`.
    let mut kept = 0;
    for i in 0..v.len() {
        if i != index {
            // `kept < i` here: the halves of a split are disjoint, so this is a `memcpy`.
            if let Some((front, back)) = v.split_at_mut_checked(i)
                && let (Some(dst), Some(src)) = (front.get_mut(kept..=kept), back.get(..1))
            {
                dst.copy_from_slice(src);
            }
            kept += 1;
        }
    }
    v.truncate(kept);
    Some(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_move_down_every_gap_and_length() {
        for len in 0..12 {
            for dst in 0..len {
                for from in dst..=len {
                    for to in from..=len {
                        let mut buf: std::vec::Vec<u8> = (0..len as u8).collect();
                        let mut expected = buf.clone();
                        expected.copy_within(from..to, dst);
                        move_down(&mut buf, dst, from, to);
                        assert_eq!(buf, expected, "len {len} dst {dst} from {from} to {to}");
                    }
                }
            }
        }
    }

    #[test]
    fn test_move_down_out_of_range_moves_nothing() {
        let mut buf = [1u8, 2, 3];
        move_down(&mut buf, 0, 1, 4);
        move_down(&mut buf, 2, 1, 3);
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn test_remove_ordered_keeps_order() {
        let mut v: Vec<u8, 8> = Vec::from_slice(&[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(remove_ordered(&mut v, 1), Some(2));
        assert_eq!(v, [1, 3, 4, 5]);
        assert_eq!(remove_ordered(&mut v, 3), Some(5));
        assert_eq!(remove_ordered(&mut v, 0), Some(1));
        assert_eq!(v, [3, 4]);
        assert_eq!(remove_ordered(&mut v, 2), None);
    }
}
