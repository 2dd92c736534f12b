//! Protocol messages as JSON: `tessera_message_decode` and
//! `tessera_message_encode` over `tessera_core::wire_json`, for bindings,
//! tools and tests that read or write frames without a codec of their own.
//!
//! The JSON form is `{"type": NAME, "fields": {...}}`, where `NAME` is the
//! message type's name in `docs/PROTOCOL.md` (`"Hello"`, `"JobAssign"`) and
//! `fields` is the `readable` form of `core/tests/vectors/wire.json`:
//! integers as numbers, byte strings as lowercase hex, enums by variant name
//! (`"PriceTooLow"`), field names as in the protocol. Decoding a vector's
//! frame gives its `readable` form and encoding that form gives the frame
//! back, byte for byte.

use std::ffi::{c_char, CStr};

use serde_json::Value;
use tessera_core::wire::{DecodeError, Message};
use tessera_core::wire_json::{encode_json, to_json};
use tessera_core::ErrorCode;

use crate::boundary::{bytes, bytes_mut, guard, non_null, write_opt};
use crate::*;

/// The code for a frame that does not decode: `TESSERA_PEER_BASE` + the
/// wire error code the agent would send for it. A frame shorter than its
/// header announces is malformed here (this call takes whole frames).
pub(crate) fn decode_code(e: DecodeError) -> tessera_result {
    let code = match e {
        DecodeError::BadMagic => ErrorCode::BadMagic,
        DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
        DecodeError::FrameTooLarge(_) => ErrorCode::FrameTooLarge,
        DecodeError::UnknownType(_) => ErrorCode::UnknownMessageType,
        _ => ErrorCode::Malformed,
    };
    TESSERA_PEER_BASE + code as u32
}

/// Decodes one whole frame into its JSON form (module documentation),
/// written into `json` NUL-terminated; `written` gets its length without
/// the NUL. A frame that does not decode returns `TESSERA_PEER_BASE` + the
/// wire error code the agent would send for it (`BAD_MAGIC`,
/// `UNSUPPORTED_VERSION`, `FRAME_TOO_LARGE`, `UNKNOWN_MESSAGE_TYPE`, or
/// `MALFORMED`, which includes a frame shorter or longer than its header
/// says). When `json_len` is too small: `TESSERA_BUFFER_TOO_SMALL`, and
/// `written` gets the length needed, NUL included (`json` may be NULL with
/// a zero `json_len`).
///
/// # Safety
/// `(frame, len)` readable; `json` NULL or `json_len` writable bytes;
/// `written` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tessera_message_decode(
    frame: *const u8,
    len: usize,
    json: *mut c_char,
    json_len: usize,
    written: *mut usize,
) -> tessera_result {
    guard(|| {
        // SAFETY: the caller's promise for (frame, len).
        let Some(frame) = (unsafe { bytes(frame, len) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        let msg = match Message::decode(frame) {
            Ok(m) => m,
            Err(e) => return decode_code(e),
        };
        let text = to_json(&msg).to_string();
        let need = text.len() + 1;
        if json_len < need {
            // SAFETY: the caller's promise for `written`.
            unsafe { write_opt(written, need) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        // SAFETY: `json_len >= need` writable bytes, by the caller.
        let Some(out) = (unsafe { bytes_mut(json.cast(), need) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        out[..text.len()].copy_from_slice(text.as_bytes());
        out[text.len()] = 0;
        // SAFETY: the caller's promise for `written`.
        unsafe { write_opt(written, text.len()) };
        TESSERA_OK
    })
}

/// Encodes a message from its JSON form (module documentation; `fields` may
/// be left out for `Ready` and `Drain`) into `frame`; `written` gets the
/// frame's length. What is wrong with the JSON (`TESSERA_INVALID_ARGUMENT`)
/// is written into `error` when given, NUL-terminated and cut to fit: the
/// field's path and what it must be. When `frame_len` is too small:
/// `TESSERA_BUFFER_TOO_SMALL`, and `written` gets the length needed (at
/// most `TESSERA_MAX_FRAME`).
///
/// # Safety
/// `json` NUL-terminated; `frame` NULL or `frame_len` writable bytes;
/// `written` NULL or valid; `error` NULL or `error_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tessera_message_encode(
    json: *const c_char,
    frame: *mut u8,
    frame_len: usize,
    written: *mut usize,
    error: *mut c_char,
    error_len: usize,
) -> tessera_result {
    guard(|| {
        non_null!(json);
        let say = |text: &str| {
            if !error.is_null() && error_len > 0 {
                let mut t = Text::<512>::new();
                t.push(text);
                // SAFETY: `error_len >= 1` writable bytes, by the caller.
                unsafe { t.write_c(error.cast(), error_len, core::ptr::null_mut()) };
            }
        };
        // SAFETY: non-NULL and NUL-terminated, by the caller.
        let text = unsafe { CStr::from_ptr(json) };
        let value: Value = match text.to_str().map(serde_json::from_str) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                say(&format!("not JSON: {e}"));
                return TESSERA_INVALID_ARGUMENT;
            }
            Err(_) => {
                say("not UTF-8");
                return TESSERA_INVALID_ARGUMENT;
            }
        };
        let bytes = match encode_json(&value) {
            Ok(b) => b,
            Err(words) => {
                say(&words);
                return TESSERA_INVALID_ARGUMENT;
            }
        };
        if frame_len < bytes.len() {
            // SAFETY: the caller's promise for `written`.
            unsafe { write_opt(written, bytes.len()) };
            return TESSERA_BUFFER_TOO_SMALL;
        }
        // SAFETY: `frame_len >= bytes.len()` writable bytes, by the caller.
        let Some(out) = (unsafe { bytes_mut(frame, bytes.len()) }) else {
            return TESSERA_NULL_ARGUMENT;
        };
        out.copy_from_slice(&bytes);
        // SAFETY: the caller's promise for `written`.
        unsafe { write_opt(written, bytes.len()) };
        TESSERA_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tessera_core::limits::MAX_FRAME;
    use tessera_core::wire_json::{hex, unhex};

    const VECTORS: &str = include_str!("../../core/tests/vectors/wire.json");

    fn decode(frame: &[u8]) -> Result<Value, tessera_result> {
        let mut buf = vec![0u8; 4 * MAX_FRAME];
        let mut n = 0usize;
        // SAFETY: valid buffers of the lengths given.
        let r = unsafe {
            tessera_message_decode(
                frame.as_ptr(),
                frame.len(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut n,
            )
        };
        if r != TESSERA_OK {
            return Err(r);
        }
        Ok(serde_json::from_slice(&buf[..n]).expect("decode writes JSON"))
    }

    fn encode(v: &Value) -> Result<Vec<u8>, (tessera_result, String)> {
        let json = std::ffi::CString::new(v.to_string()).expect("no NUL");
        let mut frame = vec![0u8; MAX_FRAME];
        let mut n = 0usize;
        let mut err = [0u8; 512];
        // SAFETY: valid buffers of the lengths given.
        let r = unsafe {
            tessera_message_encode(
                json.as_ptr(),
                frame.as_mut_ptr(),
                frame.len(),
                &mut n,
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if r != TESSERA_OK {
            let end = err.iter().position(|&b| b == 0).unwrap_or(0);
            return Err((r, String::from_utf8_lossy(&err[..end]).into_owned()));
        }
        frame.truncate(n);
        Ok(frame)
    }

    #[test]
    fn every_wire_vector_round_trips_through_json() {
        let vectors: Vec<Value> = serde_json::from_str(VECTORS).expect("wire.json");
        let (mut valid, mut invalid) = (0, 0);
        for v in &vectors {
            let frame = unhex(v["hex"].as_str().expect("hex")).expect("hex digits");
            match v.get("readable") {
                Some(readable) => {
                    let got = decode(&frame).unwrap_or_else(|c| panic!("{}: code {c}", v["name"]));
                    assert_eq!(got["type"], v["type"], "{}", v["name"]);
                    assert_eq!(&got["fields"], readable, "{}", v["name"]);
                    assert_eq!(encode(&got).expect("encodes"), frame, "{}", v["name"]);
                    valid += 1;
                }
                None => {
                    let want = match v["expect_error"].as_str().expect("error") {
                        "BadMagic" => ErrorCode::BadMagic,
                        "UnsupportedVersion" => ErrorCode::UnsupportedVersion,
                        "FrameTooLarge" => ErrorCode::FrameTooLarge,
                        "UnknownType" => ErrorCode::UnknownMessageType,
                        _ => ErrorCode::Malformed,
                    };
                    assert_eq!(
                        decode(&frame),
                        Err(TESSERA_PEER_BASE + want as u32),
                        "{}",
                        v["name"]
                    );
                    invalid += 1;
                }
            }
        }
        assert!(
            valid > 50 && invalid > 30,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn bad_json_names_the_field() {
        let cases = [
            (json!({"type": "Nope"}), "no such message type"),
            (
                json!({"type": "OfferAccept", "fields": {"job": 1}}),
                "fields.price is missing",
            ),
            (
                json!({"type": "OfferAccept", "fields": {"job": -1, "price": 0}}),
                "fields.job must be an integer",
            ),
            (
                json!({"type": "Heartbeat", "fields": {"active_jobs": 256, "capacity": 1}}),
                "fields.active_jobs must be an integer",
            ),
            (
                json!({"type": "Welcome", "fields": {"version": 1, "challenge": "00", "heartbeat_ms": 1}}),
                "fields.challenge must be 32 bytes",
            ),
            (
                json!({"type": "Goodbye", "fields": {"reason": "Bored"}}),
                "no such reason",
            ),
            (
                json!({"type": "Evidence", "fields": {"bytes": "0g"}}),
                "fields.bytes must be hex",
            ),
            (json!([1, 2]), "must be an object"),
        ];
        for (v, words) in cases {
            let (code, text) = encode(&v).expect_err("refused");
            assert_eq!(code, TESSERA_INVALID_ARGUMENT, "{v}");
            assert!(text.contains(words), "{v}: {text}");
        }
        // A chunk over CHUNK_SIZE is no frame.
        let big = json!({"type": "InputChunk", "fields": {
            "job": 1, "stream": 1, "index": 0, "digest": hex(&[0; 32]),
            "data": hex(&vec![0; tessera_core::limits::CHUNK_SIZE + 1]),
        }});
        assert_eq!(
            encode(&big).expect_err("too big").0,
            TESSERA_INVALID_ARGUMENT
        );
    }

    /// The error names what the caller sent (a type's name, say): cut to
    /// its 512 bytes, it stays UTF-8, also in a buffer larger than that.
    #[test]
    fn an_error_cut_to_fit_is_still_utf8() {
        for n in [250, 251, 400] {
            let json = json!({ "type": "é".repeat(n) }).to_string();
            let json = std::ffi::CString::new(json).expect("no NUL");
            let mut err = [0xFFu8; 1024];
            // SAFETY: a NUL-terminated string and buffers of the lengths given.
            let r = unsafe {
                tessera_message_encode(
                    json.as_ptr(),
                    core::ptr::null_mut(),
                    0,
                    core::ptr::null_mut(),
                    err.as_mut_ptr().cast(),
                    err.len(),
                )
            };
            assert_eq!(r, TESSERA_INVALID_ARGUMENT);
            let end = err.iter().position(|&b| b == 0).expect("NUL-terminated");
            let text = core::str::from_utf8(&err[..end]).expect("UTF-8");
            assert!(text.starts_with("type: no such message type"), "{text}");
        }
    }

    #[test]
    fn small_buffers_learn_the_length_needed() {
        let frame = encode(&json!({"type": "Ready"})).expect("encodes");
        let mut need = 0usize;
        // SAFETY: a zero length with a NULL buffer; `need` valid.
        let r = unsafe {
            tessera_message_decode(
                frame.as_ptr(),
                frame.len(),
                core::ptr::null_mut(),
                0,
                &mut need,
            )
        };
        let text = to_json(&Message::Ready).to_string();
        assert_eq!((r, need), (TESSERA_BUFFER_TOO_SMALL, text.len() + 1));
        let json = std::ffi::CString::new(r#"{"type":"Ready"}"#).expect("no NUL");
        let mut small = [0u8; 4];
        // SAFETY: buffers of the lengths given.
        let r = unsafe {
            tessera_message_encode(
                json.as_ptr(),
                small.as_mut_ptr(),
                small.len(),
                &mut need,
                core::ptr::null_mut(),
                0,
            )
        };
        assert_eq!((r, need), (TESSERA_BUFFER_TOO_SMALL, frame.len()));
    }
}
