//! The C ABI of Tessera (`include/tessera.h`).
//!
//! Conventions, stated once for every function:
//! - Every function returns a [`tessera_result`]: `TESSERA_OK` (0) or a code
//!   of the shared code space (`docs/CODES.md`); [`tessera_result_text`]
//!   words it. Outputs are written only on success, except the length a
//!   too-small buffer needed (`TESSERA_BUFFER_TOO_SMALL`).
//! - Handles are opaque, made by a `_new` function and released by its
//!   `_free`, which accepts NULL. A handle used after its `_free` (or after a
//!   `_new` function took it over) is undefined behaviour the library cannot
//!   detect.
//! - Inputs come first, then outputs. Bytes are `(const uint8_t *, size_t)`;
//!   a zero length allows a NULL pointer. Output buffers belong to the caller.
//! - A function taking a `const` handle may be called from several threads at
//!   once; one taking a non-`const` handle needs that handle to itself (one
//!   thread at a time). Handles may move between threads.
//! - A callback may call the library, but a call into the agent, signer or
//!   runtime whose call runs the callback returns `TESSERA_IN_USE` (a
//!   runtime's thread-safe functions work); freeing that handle there is a
//!   bug.
//! - No function unwinds into C: a panic is caught and returned as
//!   `TESSERA_PANIC`, after which the handle should be freed (an agent,
//!   signer or runtime then answers every other call with `TESSERA_PANIC`).
//! - Structs that may grow carry their size in a first `size` field: set it to
//!   `sizeof` the struct, or fill the struct with its `_default` function;
//!   also a struct the library fills (an event, job or verification info,
//!   counters, a status): set its size before the call, which is refused
//!   with `TESSERA_INVALID_ARGUMENT` (nothing consumed) when it is not set.
//! - A `bool` field the caller fills holds `false` or `true`: a struct whose
//!   `bool` holds another byte is refused (`TESSERA_INVALID_ARGUMENT`, or
//!   `TESSERA_INVALID_CONFIG` for a configuration); see [`CBool`].
#![cfg_attr(not(feature = "std"), no_std)]
#![allow(non_camel_case_types)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod boundary;

#[cfg(all(not(feature = "std"), target_os = "none"))]
mod bare_metal;

pub mod agent;
/// The C++ API's bridge (`include/tessera.hpp`).
#[cfg(feature = "cpp")]
mod cpp;
/// The Vulkan dispatcher: devices, benchmark, kernel jobs.
#[cfg(feature = "runtime")]
pub mod dispatcher;
/// A host executor for the runtime.
#[cfg(feature = "runtime")]
pub mod executor;
/// Protocol messages as JSON.
#[cfg(feature = "std")]
pub mod message;
/// The network runtime and the log callback.
#[cfg(feature = "runtime")]
pub mod runtime;
/// Verification of evidence, receipts, chains and proofs; keys.
#[cfg(feature = "std")]
pub mod verify;

use boundary::guard;

/// A result code: `TESSERA_OK` (0) or a code from `docs/CODES.md`.
pub type tessera_result = u32;

/// A `bool` field of a struct the caller fills (`bool` in the header): one
/// byte, 0 or 1. The library reads it as a byte, so that any other value
/// (raw bytes from a binding, a `memset`, a file) is refused with a result
/// code; read as a Rust `bool` it would be undefined behaviour.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CBool(u8);

impl CBool {
    /// `false`.
    pub const FALSE: CBool = CBool(0);
    /// `true`.
    pub const TRUE: CBool = CBool(1);

    /// The value; `None` for a byte that is neither 0 nor 1.
    pub fn get(self) -> Option<bool> {
        match self.0 {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl From<bool> for CBool {
    fn from(b: bool) -> CBool {
        CBool(u8::from(b))
    }
}

/// Success.
pub const TESSERA_OK: tessera_result = 0;
/// The outgoing queue is full: drain transmits, then call again.
pub const TESSERA_WOULD_BLOCK: tessera_result = 1;
/// Events wait to be read: drain events, then call again.
pub const TESSERA_EVENTS_PENDING: tessera_result = 2;
/// The caller's buffer is too small; the length needed was written.
pub const TESSERA_BUFFER_TOO_SMALL: tessera_result = 3;
/// A pointer argument was NULL.
pub const TESSERA_NULL_ARGUMENT: tessera_result = 4;
/// An argument is out of range or not of the expected form.
pub const TESSERA_INVALID_ARGUMENT: tessera_result = 5;
/// Internal error caught at the boundary; free the handle.
pub const TESSERA_PANIC: tessera_result = 6;
/// The library was built without the feature this call needs.
pub const TESSERA_UNSUPPORTED: tessera_result = 7;
/// A file or socket operation failed.
pub const TESSERA_IO: tessera_result = 8;
/// Nothing to return now: the end of a drain loop.
pub const TESSERA_NOTHING: tessera_result = 9;
/// The object was stopped and takes no more calls of this kind.
pub const TESSERA_STOPPED: tessera_result = 10;
/// The object is busy: its own thread runs it (only its thread-safe functions
/// apply), or a callback of a call on it made this call.
pub const TESSERA_IN_USE: tessera_result = 11;
/// No session is established.
pub const TESSERA_NOT_CONNECTED: tessera_result = 100;
/// A session is already open.
pub const TESSERA_ALREADY_CONNECTED: tessera_result = 101;
/// No such job on this agent.
pub const TESSERA_UNKNOWN_JOB: tessera_result = 102;
/// The job is not in a state that allows this call.
pub const TESSERA_INVALID_JOB_STATE: tessera_result = 103;
/// Outputs written for another buffer than the next one due.
pub const TESSERA_OUTPUT_OUT_OF_ORDER: tessera_result = 104;
/// Not every read-back buffer was written in full.
pub const TESSERA_OUTPUT_INCOMPLETE: tessera_result = 105;
/// Outputs written again differ from the first time.
pub const TESSERA_OUTPUT_MISMATCH: tessera_result = 106;
/// The agent holds as many jobs as it can.
pub const TESSERA_CAPACITY_EXCEEDED: tessera_result = 107;
/// No input of this job is readable now.
pub const TESSERA_NO_INPUT: tessera_result = 108;
/// A configuration value is out of range (`tessera_agent_last_error` says which).
pub const TESSERA_INVALID_CONFIG: tessera_result = 200;
/// Not an Ed25519 key of the expected form.
pub const TESSERA_KEY_REJECTED: tessera_result = 201;
/// The public key does not belong to the seed.
pub const TESSERA_KEY_MISMATCH: tessera_result = 202;
/// The system random source failed.
pub const TESSERA_NO_RANDOMNESS: tessera_result = 203;
/// The signing key is not available now (a sign callback may return it).
pub const TESSERA_SIGNER_UNAVAILABLE: tessera_result = 210;
/// The signer failed.
pub const TESSERA_SIGNER_FAILED: tessera_result = 211;
/// The store could not read or write a file, or a file is damaged.
pub const TESSERA_STORE_IO: tessera_result = 300;
/// The store's chain belongs to another device key.
pub const TESSERA_STORE_OTHER_KEY: tessera_result = 301;
/// Two stored chain positions disagree.
pub const TESSERA_STORE_CONFLICT: tessera_result = 302;
/// Verification: not a well-formed structure of the expected kind.
pub const TESSERA_VERIFY_MALFORMED: tessera_result = 401;
/// Verification: the signature does not verify.
pub const TESSERA_VERIFY_BAD_SIGNATURE: tessera_result = 402;
/// Verification: signed by another key than the one expected.
pub const TESSERA_VERIFY_UNKNOWN_KEY: tessera_result = 403;
/// Verification: bound to another challenge or nonce.
pub const TESSERA_VERIFY_WRONG_NONCE: tessera_result = 404;
/// Verification: a replayed receipt.
pub const TESSERA_VERIFY_REPLAYED: tessera_result = 405;
/// Verification: a receipt is missing.
pub const TESSERA_VERIFY_OUT_OF_ORDER: tessera_result = 406;
/// Verification: the previous-receipt hash does not match.
pub const TESSERA_VERIFY_BROKEN_CHAIN: tessera_result = 407;
/// Verification: the chunk's proof does not lead to the signed root.
pub const TESSERA_VERIFY_CHUNK_PROOF_MISMATCH: tessera_result = 408;
/// First Vulkan set-up code (500 + the dispatcher's set-up code).
pub const TESSERA_VULKAN_BASE: tessera_result = 500;
/// First peer protocol code (1000 + the wire error code).
pub const TESSERA_PEER_BASE: tessera_result = 1000;
/// First job failure code (2000 + the wire fail reason).
pub const TESSERA_FAIL_BASE: tessera_result = 2000;
/// First dispatcher job code (2100 + the dispatcher's job error code).
pub const TESSERA_JOB_BASE: tessera_result = 2100;
/// First kernel rejection code (10000 + the kernel rule code).
pub const TESSERA_KERNEL_BASE: tessera_result = 10000;

/// Major version of the library this header belongs to.
pub const TESSERA_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const TESSERA_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const TESSERA_VERSION_PATCH: u32 = 0;
/// The version as one number: `major << 16 | minor << 8 | patch`.
pub const TESSERA_VERSION_NUMBER: u32 =
    (TESSERA_VERSION_MAJOR << 16) | (TESSERA_VERSION_MINOR << 8) | TESSERA_VERSION_PATCH;

/// The library's version as `major << 16 | minor << 8 | patch`: compare with
/// `TESSERA_VERSION_NUMBER` to check that the header matches the library.
#[no_mangle]
pub extern "C" fn tessera_version() -> u32 {
    TESSERA_VERSION_NUMBER
}

/// Writes the name and meaning of `code` ("would_block: the outgoing queue
/// is full: ...") into `buf` as a NUL-terminated string, cut to fit
/// `len - 1` bytes, and the length written (without the NUL) to `written`
/// (may be NULL). A code this version does not know is worded as
/// "unknown code N". `TESSERA_NULL_ARGUMENT` if `buf` is NULL or `len` is 0.
///
/// # Safety
/// `buf` must point to `len` writable bytes; `written` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_result_text(
    code: tessera_result,
    buf: *mut u8,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    guard(|| {
        boundary::non_null!(buf);
        if len == 0 {
            return TESSERA_NULL_ARGUMENT;
        }
        let mut text = Text::<256>::new();
        match (
            tessera_core::codes::name(code),
            tessera_core::codes::describe(code),
        ) {
            (Some(name), Some(words)) => {
                text.push(name);
                text.push(": ");
                text.push(words);
            }
            _ => {
                use core::fmt::Write;
                let _ = write!(text, "unknown code {code}");
            }
        }
        // SAFETY: the caller's promise for (buf, len) and written.
        unsafe { text.write_c(buf, len, written) }
    })
}

/// A short text built without an allocator, cut at its capacity.
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub(crate) fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, s: &str) {
        let mut take = s.len().min(N - self.len);
        // Never cut a UTF-8 sequence in half (`write_c` only backs off
        // within the text, not at its end).
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
    }

    /// Writes the text into a C buffer as a NUL-terminated string cut to fit,
    /// touching only the bytes it writes (so a `len` past `isize::MAX`, "no
    /// limit", is no slice of that size).
    ///
    /// # Safety
    /// `buf` must point to `len >= 1` writable bytes; `written` NULL or valid.
    pub(crate) unsafe fn write_c(&self, buf: *mut u8, len: usize, written: *mut usize) -> u32 {
        let mut n = self.len.min(len - 1);
        // Never cut a UTF-8 sequence in half.
        while n > 0 && n < self.len && (self.buf[n] & 0xC0) == 0x80 {
            n -= 1;
        }
        // SAFETY: `n + 1 <= len` writable bytes at `buf`, by the caller;
        // `n < N`, far within `isize::MAX`.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf, n + 1) };
        dst[..n].copy_from_slice(&self.buf[..n]);
        dst[n] = 0;
        // SAFETY: the caller's promise for `written`.
        unsafe { boundary::write_opt(written, n) };
        TESSERA_OK
    }

    /// As [`Text::write_c`], and for a zero `len` (where `buf` may be NULL)
    /// `TESSERA_BUFFER_TOO_SMALL` with the buffer length the whole text needs,
    /// NUL included, written to `written`.
    ///
    /// # Safety
    /// `buf` NULL or `len` writable bytes; `written` NULL or valid.
    pub(crate) unsafe fn write_c_or_size(
        &self,
        buf: *mut u8,
        len: usize,
        written: *mut usize,
    ) -> u32 {
        if len == 0 {
            // SAFETY: the caller's promise for `written`.
            unsafe { boundary::write_opt(written, self.len + 1) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        if buf.is_null() {
            return TESSERA_NULL_ARGUMENT;
        }
        // SAFETY: `len >= 1` writable bytes at `buf`, by the caller.
        unsafe { self.write_c(buf, len, written) }
    }
}

impl<const N: usize> core::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::codes;

    #[test]
    fn header_codes_are_the_core_codes() {
        let pairs = [
            (TESSERA_OK, codes::OK),
            (TESSERA_WOULD_BLOCK, codes::WOULD_BLOCK),
            (TESSERA_EVENTS_PENDING, codes::EVENTS_PENDING),
            (TESSERA_BUFFER_TOO_SMALL, codes::BUFFER_TOO_SMALL),
            (TESSERA_NULL_ARGUMENT, codes::NULL_ARGUMENT),
            (TESSERA_INVALID_ARGUMENT, codes::INVALID_ARGUMENT),
            (TESSERA_PANIC, codes::PANIC),
            (TESSERA_UNSUPPORTED, codes::UNSUPPORTED),
            (TESSERA_IO, codes::IO),
            (TESSERA_NOTHING, codes::NOTHING),
            (TESSERA_STOPPED, codes::STOPPED),
            (TESSERA_IN_USE, codes::IN_USE),
            (TESSERA_NOT_CONNECTED, codes::NOT_CONNECTED),
            (TESSERA_ALREADY_CONNECTED, codes::ALREADY_CONNECTED),
            (TESSERA_UNKNOWN_JOB, codes::UNKNOWN_JOB),
            (TESSERA_INVALID_JOB_STATE, codes::INVALID_JOB_STATE),
            (TESSERA_OUTPUT_OUT_OF_ORDER, codes::OUTPUT_OUT_OF_ORDER),
            (TESSERA_OUTPUT_INCOMPLETE, codes::OUTPUT_INCOMPLETE),
            (TESSERA_OUTPUT_MISMATCH, codes::OUTPUT_MISMATCH),
            (TESSERA_CAPACITY_EXCEEDED, codes::CAPACITY_EXCEEDED),
            (TESSERA_NO_INPUT, codes::NO_INPUT),
            (TESSERA_INVALID_CONFIG, codes::INVALID_CONFIG),
            (TESSERA_KEY_REJECTED, codes::KEY_REJECTED),
            (TESSERA_KEY_MISMATCH, codes::KEY_MISMATCH),
            (TESSERA_NO_RANDOMNESS, codes::NO_RANDOMNESS),
            (TESSERA_SIGNER_UNAVAILABLE, codes::SIGNER_UNAVAILABLE),
            (TESSERA_SIGNER_FAILED, codes::SIGNER_FAILED),
            (TESSERA_STORE_IO, codes::STORE_IO),
            (TESSERA_STORE_OTHER_KEY, codes::STORE_OTHER_KEY),
            (TESSERA_STORE_CONFLICT, codes::STORE_CONFLICT),
            (TESSERA_VERIFY_MALFORMED, codes::VERIFY_MALFORMED),
            (TESSERA_VERIFY_BAD_SIGNATURE, codes::VERIFY_BAD_SIGNATURE),
            (TESSERA_VERIFY_UNKNOWN_KEY, codes::VERIFY_UNKNOWN_KEY),
            (TESSERA_VERIFY_WRONG_NONCE, codes::VERIFY_WRONG_NONCE),
            (TESSERA_VERIFY_REPLAYED, codes::VERIFY_REPLAYED),
            (TESSERA_VERIFY_OUT_OF_ORDER, codes::VERIFY_OUT_OF_ORDER),
            (TESSERA_VERIFY_BROKEN_CHAIN, codes::VERIFY_BROKEN_CHAIN),
            (
                TESSERA_VERIFY_CHUNK_PROOF_MISMATCH,
                codes::VERIFY_CHUNK_PROOF_MISMATCH,
            ),
            (TESSERA_VULKAN_BASE, codes::VULKAN_BASE),
            (TESSERA_PEER_BASE, codes::PEER_BASE),
            (TESSERA_FAIL_BASE, codes::FAIL_BASE),
            (TESSERA_JOB_BASE, codes::JOB_BASE),
            (TESSERA_KERNEL_BASE, codes::KERNEL_BASE),
        ];
        for (ours, core) in pairs {
            assert_eq!(ours, core);
        }
        // Every named code below the kernel range has its constant.
        let named = (0..codes::VULKAN_BASE)
            .filter(|c| codes::name(*c).is_some())
            .count();
        assert_eq!(
            named,
            pairs
                .iter()
                .filter(|(c, _)| *c < codes::VULKAN_BASE)
                .count()
        );
    }

    #[test]
    fn a_c_bool_is_one_byte_read_as_one() {
        assert_eq!(core::mem::size_of::<CBool>(), core::mem::size_of::<bool>());
        assert_eq!(
            core::mem::align_of::<CBool>(),
            core::mem::align_of::<bool>()
        );
        assert_eq!(
            (CBool::FALSE.get(), CBool::TRUE.get()),
            (Some(false), Some(true))
        );
        assert_eq!(CBool::from(true), CBool::TRUE);
        for byte in 2..=u8::MAX {
            assert_eq!(CBool(byte).get(), None);
        }
    }

    #[test]
    fn the_version_is_the_package_version() {
        let v: [u32; 3] = [
            env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_MINOR").parse().unwrap(),
            env!("CARGO_PKG_VERSION_PATCH").parse().unwrap(),
        ];
        assert_eq!(
            [
                TESSERA_VERSION_MAJOR,
                TESSERA_VERSION_MINOR,
                TESSERA_VERSION_PATCH
            ],
            v
        );
        assert_eq!(tessera_version(), v[0] << 16 | v[1] << 8 | v[2]);
    }
}
