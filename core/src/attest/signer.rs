//! The signing key behind a trait, so firmware can plug in a secure element.

use super::{sha256_parts, VerifyError, KEY_ID_DOMAIN};
use crate::wire::{Digest, KeyId};

/// Why a signer could not sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The key is not available now (a secure element is busy or absent).
    Unavailable,
    /// The signer failed; the platform's own code is in `.0`.
    Failed(u32),
}

/// Why a key could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not an Ed25519 key of the expected form.
    Rejected,
    /// The public key does not belong to the seed.
    Mismatch,
    /// The system random source failed while generating a key.
    NoRandomness,
}

impl SignError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]).
    pub fn code(self) -> u32 {
        crate::codes::signer(&self)
    }
}

impl KeyError {
    /// The number of this error in the library's shared code space
    /// ([`crate::codes`]).
    pub fn code(self) -> u32 {
        crate::codes::key(self)
    }
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

    /// A hardware attestation report made for `nonce` (the evidence's
    /// [`hardware_report_nonce`](super::hardware_report_nonce)), named in
    /// the evidence the agent is about to sign: its kind and the SHA-256
    /// of its bytes, which the signer keeps to hand to whoever verifies
    /// the evidence. A vendor plugs its report in here, beside the device
    /// key (a TPM, a GPU's confidential-computing firmware); the default
    /// is none.
    fn hardware_report(&mut self, nonce: &Digest) -> super::HardwareReport {
        let _ = nonce;
        super::HardwareReport::NONE
    }
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
    fn hardware_report(&mut self, nonce: &Digest) -> super::HardwareReport {
        (**self).hardware_report(nonce)
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
    if crate::crypto::ed25519_verify(public_key, message, signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The default signer: an Ed25519 key in memory (through ring, or with
/// feature `rustcrypto` alone through `ed25519-dalek`).
pub struct Ed25519Signer {
    pair: crate::crypto::KeyPair,
    public: [u8; 32],
    key_id: KeyId,
}

impl core::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    fn wrap(pair: crate::crypto::KeyPair) -> Self {
        let public = pair.public_key();
        // Computed once: every signature's COSE header carries it.
        let key_id = key_id(&public);
        Ed25519Signer {
            pair,
            public,
            key_id,
        }
    }

    /// A signer from a 32-byte seed (the RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        crate::crypto::KeyPair::from_seed(seed)
            .map(Self::wrap)
            .ok_or(KeyError::Rejected)
    }

    /// A signer from a seed and its public key, checking that they match.
    pub fn from_seed_and_public_key(
        seed: &[u8; 32],
        public_key: &[u8; 32],
    ) -> Result<Self, KeyError> {
        match Self::from_seed(seed) {
            Ok(signer) if signer.public == *public_key => Ok(signer),
            _ => Err(KeyError::Mismatch),
        }
    }

    /// A signer from a PKCS#8 v2 document (what [`Ed25519Signer::generate`]
    /// returns). With ring only: a firmware without it keeps the seed.
    #[cfg(feature = "ring")]
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        crate::crypto::KeyPair::from_pkcs8(pkcs8)
            .map(Self::wrap)
            .ok_or(KeyError::Rejected)
    }

    /// Generates a new key from the system's random source. Returns the signer
    /// and its PKCS#8 v2 document, which the host stores to load it again.
    #[cfg(all(feature = "std", feature = "ring"))]
    pub fn generate() -> Result<(Self, std::vec::Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::NoRandomness)?;
        let signer = Self::from_pkcs8(doc.as_ref())?;
        Ok((signer, doc.as_ref().to_vec()))
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], SignError> {
        Ok(self.pair.sign(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::unhex;

    /// RFC 8032 §7.1, test 1 (empty message).
    #[test]
    fn rfc8032_test_vector_one() {
        let seed: [u8; 32] =
            unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public: [u8; 32] =
            unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let expected: [u8; 64] = unhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        );
        let mut signer = Ed25519Signer::from_seed(&seed).unwrap();
        assert_eq!(signer.public_key(), public);
        let sig = signer.sign(b"").unwrap();
        assert_eq!(sig, expected);
        assert_eq!(verify_signature(&public, b"", &sig), Ok(()));
        let mut bad = sig;
        bad[0] ^= 1;
        assert_eq!(
            verify_signature(&public, b"", &bad),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify_signature(&public, b"x", &sig),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn seed_and_public_key_must_match() {
        let seed = [1u8; 32];
        let public = Ed25519Signer::from_seed(&seed).unwrap().public_key();
        let ok = Ed25519Signer::from_seed_and_public_key(&seed, &public).unwrap();
        assert_eq!(ok.public_key(), public);
        let other = Ed25519Signer::from_seed(&[2u8; 32]).unwrap().public_key();
        assert_eq!(
            Ed25519Signer::from_seed_and_public_key(&seed, &other).unwrap_err(),
            KeyError::Mismatch
        );
    }

    #[cfg(all(feature = "std", feature = "ring"))]
    #[test]
    fn generated_key_round_trips_through_pkcs8() {
        let (mut a, pkcs8) = Ed25519Signer::generate().unwrap();
        let mut b = Ed25519Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.key_id(), b.key_id());
        // Ed25519 is deterministic: the same key signs the same bytes alike.
        assert_eq!(a.sign(b"job").unwrap(), b.sign(b"job").unwrap());
        let (c, _) = Ed25519Signer::generate().unwrap();
        assert_ne!(a.public_key(), c.public_key());
    }

    #[cfg(feature = "ring")]
    #[test]
    fn garbage_pkcs8_is_rejected() {
        assert_eq!(
            Ed25519Signer::from_pkcs8(&[0u8; 85]).unwrap_err(),
            KeyError::Rejected
        );
        assert_eq!(
            Ed25519Signer::from_pkcs8(&[]).unwrap_err(),
            KeyError::Rejected
        );
    }

    #[test]
    fn key_id_is_domain_tagged_truncated_sha256() {
        let signer = Ed25519Signer::from_seed(&[3u8; 32]).unwrap();
        let pk = signer.public_key();
        let full = crate::attest::sha256_parts(&[b"tessera/key-id/v1", &pk]);
        assert_eq!(signer.key_id()[..], full[..16]);
        assert_eq!(signer.key_id(), key_id(&pk));
        // Through `&mut S` the cached id is the one used.
        let mut s = signer;
        let by_ref: &mut Ed25519Signer = &mut s;
        assert_eq!(Signer::key_id(&by_ref), key_id(&pk));
        let dbg = std::format!("{:?}", s);
        assert!(dbg.starts_with("Ed25519Signer"));
    }
}
