//! The signing key behind a trait, so firmware can plug in a secure element.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use super::{sha256_parts, VerifyError, KEY_ID_DOMAIN};
use crate::wire::KeyId;

/// Why a signer could not sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The key is not available now (a secure element is busy or absent).
    Unavailable,
    /// The signer failed; the platform's own code is in `.0`.
    Failed(u32),
}

/// Why a key could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes are not an Ed25519 key of the expected form.
    Rejected,
    /// The public key does not belong to the seed.
    Mismatch,
    /// The system random source failed while generating a key.
    NoRandomness,
}

/// A device signing key: Ed25519, held in memory or in a secure element.
///
/// Implementations must sign with the Ed25519 private key matching
/// [`Signer::public_key`]; verifiers check every signature with that key.
pub trait Signer {
    /// The Ed25519 public key.
    fn public_key(&self) -> [u8; 32];

    /// The key identifier sent in `Hello` and in every COSE header.
    fn key_id(&self) -> KeyId {
        key_id(&self.public_key())
    }

    /// Signs `message` (a COSE `Sig_structure`) and returns the signature.
    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError>;
}

impl<S: Signer + ?Sized> Signer for &mut S {
    fn public_key(&self) -> [u8; 32] {
        (**self).public_key()
    }
    fn key_id(&self) -> KeyId {
        (**self).key_id()
    }
    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        (**self).sign(message)
    }
}

/// The key identifier of a public key: the first 16 bytes of
/// SHA-256("tessera/key-id/v1" ‖ public key).
pub fn key_id(public_key: &[u8; 32]) -> KeyId {
    let d = sha256_parts(&[KEY_ID_DOMAIN, public_key]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Checks an Ed25519 signature.
pub fn verify_signature(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), VerifyError> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// The default signer: an Ed25519 key in memory, through ring.
pub struct Ed25519Signer {
    pair: Ed25519KeyPair,
    public: [u8; 32],
}

impl core::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("key_id", &key_id(&self.public))
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    fn wrap(pair: Ed25519KeyPair) -> Self {
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ed25519Signer { pair, public }
    }

    /// A signer from a 32-byte seed (the RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Self::wrap)
            .map_err(|_| KeyError::Rejected)
    }

    /// A signer from a seed and its public key, checking that they match.
    pub fn from_seed_and_public_key(
        seed: &[u8; 32],
        public_key: &[u8; 32],
    ) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_seed_and_public_key(seed, public_key)
            .map(Self::wrap)
            .map_err(|_| KeyError::Mismatch)
    }

    /// A signer from a PKCS#8 v2 document (what [`Ed25519Signer::generate`] returns).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(Self::wrap)
            .map_err(|_| KeyError::Rejected)
    }

    /// Generates a new key from the system's random source. Returns the signer
    /// and its PKCS#8 v2 document, which the host stores to load it again.
    #[cfg(feature = "std")]
    pub fn generate() -> Result<(Self, std::vec::Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::NoRandomness)?;
        let signer = Self::from_pkcs8(doc.as_ref())?;
        Ok((signer, doc.as_ref().to_vec()))
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        let sig = self.pair.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        Ok(out)
    }
}
