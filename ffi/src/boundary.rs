//! The call boundary: every exported function runs inside [`guard`], which
//! turns a panic into `TESSERA_PANIC` instead of unwinding into C, and checks
//! its pointers with the helpers below.

use crate::tessera_result;

/// Runs `f`, turning a panic into [`crate::TESSERA_PANIC`].
#[cfg(feature = "std")]
pub(crate) fn guard(f: impl FnOnce() -> tessera_result) -> tessera_result {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => crate::TESSERA_PANIC,
    }
}

/// Runs `f` (bare metal: a panic halts in the firmware's handler).
#[cfg(not(feature = "std"))]
pub(crate) fn guard(f: impl FnOnce() -> tessera_result) -> tessera_result {
    f()
}

/// Returns `TESSERA_NULL_ARGUMENT` from the enclosing closure when a pointer
/// is NULL.
macro_rules! non_null {
    ($($p:expr),+ $(,)?) => {
        $( if $p.is_null() { return $crate::TESSERA_NULL_ARGUMENT; } )+
    };
}
pub(crate) use non_null;

/// `len` bytes at `ptr` as a slice; an empty slice for `len == 0` (where
/// `ptr` may be NULL); `None` for a NULL pointer with a non-zero length.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` readable bytes that stay valid and
/// unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, length within isize, and the caller promises `len`
    // readable bytes valid for 'a.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// `len` writable bytes at `ptr`; an empty slice for `len == 0`; `None` for
/// a NULL pointer with a non-zero length.
///
/// # Safety
/// Unless NULL, `ptr` must point to `len` writable bytes, not aliased by any
/// other reference, valid for `'a`.
pub(crate) unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, length within isize, and the caller promises `len`
    // writable unaliased bytes valid for 'a.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes `value` through `out` when it is not NULL.
///
/// # Safety
/// Unless NULL, `out` must be valid for a write of `T`.
pub(crate) unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and, by the caller, valid for a write.
        unsafe { out.write(value) }
    }
}

/// Copies `src` into the caller's buffer `(out, out_len)` and writes the
/// length through `written` (when not NULL). If the buffer is too small,
/// nothing is copied, `written` gets the length needed and the result is
/// `TESSERA_BUFFER_TOO_SMALL`.
///
/// # Safety
/// As [`bytes_mut`] for `(out, out_len)`, [`write_opt`] for `written`.
pub(crate) unsafe fn copy_out(
    src: &[u8],
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> tessera_result {
    // SAFETY: the caller's promise for `written`.
    unsafe { write_opt(written, src.len()) };
    if out_len < src.len() {
        return crate::TESSERA_BUFFER_TOO_SMALL;
    }
    // SAFETY: the caller's promise for `(out, out_len)`.
    let Some(dst) = (unsafe { bytes_mut(out, out_len) }) else {
        return crate::TESSERA_NULL_ARGUMENT;
    };
    dst[..src.len()].copy_from_slice(src);
    crate::TESSERA_OK
}

/// Moves `value` to the heap and writes the handle through `out`
/// (`TESSERA_UNSUPPORTED` without the `std` feature).
///
/// `out` must have been checked non-NULL and be valid for a write: every
/// exported constructor checks it with [`non_null!`] before building `value`.
pub(crate) fn new_handle<T>(value: T, out: *mut *mut T) -> tessera_result {
    #[cfg(feature = "std")]
    {
        let ptr = std::boxed::Box::into_raw(std::boxed::Box::new(value));
        // SAFETY: `out` was checked non-NULL by the caller of this helper.
        unsafe { out.write(ptr) };
        crate::TESSERA_OK
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = (value, out);
        crate::TESSERA_UNSUPPORTED
    }
}

/// Frees a handle made by [`new_handle`]; NULL is a no-op.
///
/// # Safety
/// `ptr` must be NULL or come from [`new_handle`] and not be used again.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    #[cfg(feature = "std")]
    if !ptr.is_null() {
        // SAFETY: by the caller, `ptr` came from Box::into_raw and is freed once.
        drop(unsafe { std::boxed::Box::from_raw(ptr) });
    }
    #[cfg(not(feature = "std"))]
    let _ = ptr;
}
