//! The device key, held as a secure element holds it: the rest of the
//! firmware sees only the public key and a "sign this" operation (the
//! agent's [`Signer`] trait), never the private key.
//!
//! Here the "element" is a module owning a ring `Ed25519KeyPair` made from
//! a seed provisioned into the image. On a product the key is generated
//! inside the chip and never leaves it; this module's two operations are
//! what its driver would forward to it.

use core::sync::atomic::{AtomicU32, Ordering};

use ring::signature::{Ed25519KeyPair, KeyPair};
use tessera_core::attest::{key_id, SignError, Signer};
use tessera_core::wire::KeyId;

use crate::board;

/// The provisioned seed of this example's device key. (Not a secret: the
/// example's key is public. A real element never reveals its seed.)
const PROVISIONED_SEED: [u8; 32] = *b"tessera firmware example key 01!";

/// Signatures made since boot.
static SIGNATURES: AtomicU32 = AtomicU32::new(0);
/// Instructions the last signature took.
static LAST_SIGNATURE_INSTRET: AtomicU32 = AtomicU32::new(0);

/// The key's owner.
pub struct SecureElement {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    key_id: KeyId,
}

/// Why the element could not start.
#[derive(Clone, Copy, Debug)]
pub struct KeyRejected;

impl SecureElement {
    /// Opens the element with its provisioned key.
    pub fn open() -> Result<SecureElement, KeyRejected> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&PROVISIONED_SEED).map_err(|_| KeyRejected)?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(SecureElement {
            key_id: key_id(&public),
            public,
            pair,
        })
    }
}

impl Signer for SecureElement {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        let start = board::instret();
        let signature = self.pair.sign(message);
        let spent = board::instret().wrapping_sub(start);
        let mut out = [0u8; 64];
        out.copy_from_slice(signature.as_ref());
        SIGNATURES.fetch_add(1, Ordering::Relaxed);
        LAST_SIGNATURE_INSTRET.store(u32::try_from(spent).unwrap_or(u32::MAX), Ordering::Relaxed);
        Ok(out)
    }
}

/// What the element reports about its work.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Signatures made since boot.
    pub signatures: u32,
    /// Instructions retired by the last signature.
    pub last_signature_instret: u32,
}

/// The element's counters.
pub fn stats() -> Stats {
    Stats {
        signatures: SIGNATURES.load(Ordering::Relaxed),
        last_signature_instret: LAST_SIGNATURE_INSTRET.load(Ordering::Relaxed),
    }
}
