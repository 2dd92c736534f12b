//! Fixed-capacity vectors and strings of the public API.
//!
//! Wire messages and records carry lists and names of bounded length, stored
//! inline so the core never allocates. These two types are Tessera's own, so
//! the public API (and its semver) does not depend on the crate that stores
//! them: read them as slices and `&str` (both dereference), build them with
//! `try_from` or `push`, which refuse what does not fit rather than panic.

use core::fmt;
use core::ops::Deref;

use serde::{Deserialize, Serialize};

/// More items or bytes than the capacity holds; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError {
    /// The capacity.
    pub capacity: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than the capacity of {}", self.capacity)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CapacityError {}

/// At most `N` items of `T`, stored inline. Dereferences to `[T]`; encodes as
/// a postcard sequence (a length, then the items).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedVec<T, const N: usize>(heapless::Vec<T, N>);

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> BoundedVec<T, N> {
    /// The most items it holds.
    pub const CAPACITY: usize = N;

    /// An empty vector.
    pub const fn new() -> Self {
        BoundedVec(heapless::Vec::new())
    }

    /// Appends `item`, or gives it back when the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        self.0.push(item)
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The items, mutably (their number cannot change through this).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }

    /// Removes and returns the last item.
    pub fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
}

impl<T: Clone, const N: usize> BoundedVec<T, N> {
    /// A copy of `items`, if they fit.
    pub fn from_slice(items: &[T]) -> Result<Self, CapacityError> {
        heapless::Vec::from_slice(items)
            .map(BoundedVec)
            .map_err(|_| CapacityError { capacity: N })
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> core::ops::DerefMut for BoundedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Clone, const N: usize> TryFrom<&[T]> for BoundedVec<T, N> {
    type Error = CapacityError;
    fn try_from(items: &[T]) -> Result<Self, CapacityError> {
        Self::from_slice(items)
    }
}

impl<'a, T, const N: usize> IntoIterator for &'a BoundedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// At most `N` bytes of UTF-8, stored inline. Dereferences to `str`; encodes
/// as a postcard string (a length, then the bytes).
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedString<const N: usize>(heapless::String<N>);

impl<const N: usize> BoundedString<N> {
    /// The most bytes it holds.
    pub const CAPACITY: usize = N;

    /// An empty string.
    pub const fn new() -> Self {
        BoundedString(heapless::String::new())
    }

    /// Appends `s` if it fits; else changes nothing.
    pub fn push_str(&mut self, s: &str) -> Result<(), CapacityError> {
        self.0
            .push_str(s)
            .map_err(|_| CapacityError { capacity: N })
    }

    /// Removes all text.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// Appends `c` if it fits; else changes nothing.
    pub fn push(&mut self, c: char) -> Result<(), CapacityError> {
        self.0.push(c).map_err(|_| CapacityError { capacity: N })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Deref for BoundedString<N> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> TryFrom<&str> for BoundedString<N> {
    type Error = CapacityError;
    fn try_from(s: &str) -> Result<Self, CapacityError> {
        let mut out = BoundedString::new();
        out.push_str(s)?;
        Ok(out)
    }
}

impl<const N: usize> PartialEq<str> for BoundedString<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for BoundedString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> fmt::Write for BoundedString<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_refused_and_changes_nothing() {
        let mut v: BoundedVec<u8, 2> = BoundedVec::from_slice(&[1, 2]).unwrap();
        assert_eq!(v.push(3), Err(3));
        assert_eq!(&*v, &[1, 2]);
        assert_eq!(
            BoundedVec::<u8, 2>::from_slice(&[1, 2, 3]),
            Err(CapacityError { capacity: 2 })
        );
        let mut s: BoundedString<4> = BoundedString::try_from("ab").unwrap();
        assert!(s.push_str("cde").is_err());
        assert_eq!(s, "ab");
        assert!(BoundedString::<4>::try_from("abcde").is_err());
    }

    #[test]
    fn encodes_as_the_stored_sequence() {
        let v: BoundedVec<u8, 8> = BoundedVec::from_slice(&[5, 6]).unwrap();
        let h: heapless::Vec<u8, 8> = heapless::Vec::from_slice(&[5, 6]).unwrap();
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        assert_eq!(
            postcard::to_slice(&v, &mut a).unwrap(),
            postcard::to_slice(&h, &mut b).unwrap()
        );
        let s: BoundedString<8> = BoundedString::try_from("main").unwrap();
        let n = postcard::to_slice(&s, &mut a).unwrap().len();
        assert_eq!(&a[..n], b"\x04main");
    }
}
