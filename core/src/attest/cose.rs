//! COSE_Sign1 (RFC 9052 §4.2) with EdDSA, in the one fixed shape Tessera uses:
//!
//! ```text
//! D2                      tag 18 (COSE_Sign1)
//! 84                      array of 4
//!   43 A1 01 27           protected: bstr { 1 (alg): -8 (EdDSA) }
//!   A1 04 50 <16 bytes>   unprotected: { 4 (kid): bstr key id }
//!   58 <len> <..>         payload: bstr, fixed length per structure (59 <len
//!                         u16 BE> when it is 256 bytes or more)
//!   58 40 <64 bytes>      signature: bstr
//! ```
//!
//! The signature is over `Sig_structure = ["Signature1", protected,
//! external_aad, payload]`, where external_aad is the structure's domain tag.

use super::{Signer, VerifyError};
use crate::limits::MAX_SIGNED;
use crate::wire::KeyId;

const PROTECTED: [u8; 4] = [0x43, 0xA1, 0x01, 0x27];
const HEAD: [u8; 2] = [0xD2, 0x84];
const KID_HEAD: [u8; 3] = [0xA1, 0x04, 0x50];
const SIG_HEAD: [u8; 2] = [0x58, 0x40];

/// Bytes a COSE_Sign1 adds around a payload of 256..=65535 bytes (one less
/// for 24..=255 bytes).
pub const COSE_OVERHEAD: usize = 2 + 4 + 3 + 16 + 3 + 2 + 64;

/// Length of the COSE_Sign1 around a payload of `payload_len` bytes (24..=65535).
pub const fn sign1_len(payload_len: usize) -> usize {
    payload_len + COSE_OVERHEAD - if payload_len < 256 { 1 } else { 0 }
}

/// A COSE_Sign1 split into its parts, borrowed from the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sign1<'a> {
    /// The key id from the unprotected header.
    pub key_id: KeyId,
    /// The signed payload.
    pub payload: &'a [u8],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

fn bstr_head(len: usize, out: &mut [u8]) -> usize {
    if len < 24 {
        out[0] = 0x40 | len as u8;
        1
    } else if len < 256 {
        out[0] = 0x58;
        out[1] = len as u8;
        2
    } else {
        out[0] = 0x59;
        out[1..3].copy_from_slice(&(len as u16).to_be_bytes());
        3
    }
}

/// Writes the Sig_structure for `payload` under `domain` into `out`.
fn sig_structure(domain: &[u8], payload: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    out[n] = 0x84;
    n += 1;
    out[n] = 0x6A;
    n += 1;
    out[n..n + 10].copy_from_slice(b"Signature1");
    n += 10;
    out[n..n + 4].copy_from_slice(&PROTECTED);
    n += 4;
    n += bstr_head(domain.len(), &mut out[n..]);
    out[n..n + domain.len()].copy_from_slice(domain);
    n += domain.len();
    n += bstr_head(payload.len(), &mut out[n..]);
    out[n..n + payload.len()].copy_from_slice(payload);
    n + payload.len()
}

const TBS_MAX: usize = MAX_SIGNED + 64;

/// Signs `payload` (24..=`MAX_SIGNED - COSE_OVERHEAD` bytes) and writes the
/// COSE_Sign1 into `out`; returns its length.
pub(crate) fn sign<S: Signer + ?Sized>(
    signer: &mut S,
    domain: &[u8],
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, super::SignError> {
    debug_assert!(payload.len() >= 24 && payload.len() + COSE_OVERHEAD <= MAX_SIGNED);
    debug_assert!(domain.len() < 24);
    let total = sign1_len(payload.len());
    if out.len() < total {
        return Err(super::SignError::Failed(0));
    }
    let mut tbs = [0u8; TBS_MAX];
    let tbs_len = sig_structure(domain, payload, &mut tbs);
    let signature = signer.sign(&tbs[..tbs_len])?;
    let mut n = 0;
    for part in [
        &HEAD[..],
        &PROTECTED[..],
        &KID_HEAD[..],
        &signer.key_id()[..],
    ] {
        out[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    n += bstr_head(payload.len(), &mut out[n..]);
    out[n..n + payload.len()].copy_from_slice(payload);
    n += payload.len();
    out[n..n + 2].copy_from_slice(&SIG_HEAD);
    n += 2;
    out[n..n + 64].copy_from_slice(&signature);
    Ok(n + 64)
}

/// Splits a COSE_Sign1 whose payload must be `payload_len` bytes, checking
/// every fixed byte. Does not check the signature.
pub(crate) fn parse(bytes: &[u8], payload_len: usize) -> Result<Sign1<'_>, VerifyError> {
    if bytes.len() != sign1_len(payload_len) {
        return Err(VerifyError::Malformed);
    }
    let mut head = [0u8; 3];
    let head_len = bstr_head(payload_len, &mut head);
    let at = 25 + head_len;
    let fixed_ok = bytes[0..2] == HEAD
        && bytes[2..6] == PROTECTED
        && bytes[6..9] == KID_HEAD
        && bytes[25..at] == head[..head_len];
    let sig_at = at + payload_len;
    if !fixed_ok || bytes[sig_at..sig_at + 2] != SIG_HEAD {
        return Err(VerifyError::Malformed);
    }
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&bytes[9..25]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&bytes[sig_at + 2..]);
    Ok(Sign1 {
        key_id,
        payload: &bytes[at..sig_at],
        signature,
    })
}

/// Checks a parsed COSE_Sign1's signature under `public_key` and `domain`.
pub(crate) fn verify(
    sign1: &Sign1<'_>,
    domain: &[u8],
    public_key: &[u8; 32],
) -> Result<(), VerifyError> {
    if sign1.key_id != super::key_id(public_key) {
        return Err(VerifyError::UnknownKey);
    }
    let mut tbs = [0u8; TBS_MAX];
    if sign1.payload.len() + 64 > TBS_MAX {
        return Err(VerifyError::Malformed);
    }
    let n = sig_structure(domain, sign1.payload, &mut tbs);
    super::verify_signature(public_key, &tbs[..n], &sign1.signature)
}
