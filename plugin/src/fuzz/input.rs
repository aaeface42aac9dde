//! Reading a fuzzer's bytes as operations: little-endian numbers, with
//! zeros once the input runs out, so that every byte string is a valid
//! input and a mutation of one byte changes one operand.

/// A cursor over one input.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// The whole of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `N` bytes, zero-padded past the end.
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    /// The next two bytes.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    /// The next four bytes.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    /// The next eight bytes.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    /// One of `choices`, by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }

    /// Up to `max` of the next bytes, the count first.
    pub fn slice(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u16()).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A number that is mostly a small, meaningful one: the next byte
    /// chooses between `table` (by the following byte) and a raw u64, so a
    /// fuzzer reaches the values that matter without guessing 64 bits.
    pub fn value(&mut self, table: &[u64]) -> u64 {
        if self.u8() & 1 == 0 && !table.is_empty() {
            self.pick(table)
        } else {
            self.u64()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_pads_with_zeros() {
        let mut i = Input::new(&[1, 2, 3]);
        assert_eq!(i.u16(), 0x0201);
        assert_eq!(i.u32(), 3);
        assert!(i.is_empty());
        assert_eq!(i.u64(), 0);
        let mut i = Input::new(&[2, 0, 7, 8, 9]);
        assert_eq!(i.slice(16), &[7, 8]);
        assert_eq!(i.u8(), 9);
        let mut i = Input::new(&[0, 1, 1, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(i.value(&[10, 20]), 20);
        assert_eq!(i.value(&[10, 20]), 5);
    }
}
