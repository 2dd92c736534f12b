//! The two primitives the protocol uses, SHA-256 and Ed25519, from one of
//! two backends: ring (feature `ring`, the default) or the RustCrypto crates
//! `sha2` and `ed25519-dalek` (feature `rustcrypto`), for targets ring does
//! not build for (Arm Cortex-M, ring issue 813). Both give the same bytes:
//! the shared vectors are checked with each. With both features on, ring is
//! used.

#[cfg(not(any(feature = "ring", feature = "rustcrypto")))]
compile_error!("tessera-core needs a crypto backend: feature `ring` (default) or `rustcrypto`");

/// An incremental SHA-256.
#[derive(Clone)]
pub(crate) struct Sha256 {
    #[cfg(feature = "ring")]
    ctx: ring::digest::Context,
    #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
    ctx: sha2::Sha256,
}

impl Sha256 {
    pub(crate) fn new() -> Self {
        Sha256 {
            #[cfg(feature = "ring")]
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
            ctx: <sha2::Sha256 as sha2::Digest>::new(),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "ring")]
        self.ctx.update(bytes);
        #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
        sha2::Digest::update(&mut self.ctx, bytes);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        #[cfg(feature = "ring")]
        out.copy_from_slice(self.ctx.finish().as_ref());
        #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
        out.copy_from_slice(&sha2::Digest::finalize(self.ctx));
        out
    }
}

/// Whether `signature` is `public_key`'s Ed25519 signature of `message`
/// (RFC 8032; a signature that is not 64 bytes is not).
pub(crate) fn ed25519_verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    #[cfg(feature = "ring")]
    {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(message, signature)
            .is_ok()
    }
    #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
    {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        // RFC 8032's cofactorless check with a canonical S, as ring does
        // (`verify_strict` would also refuse small-order keys ring takes).
        ed25519_dalek::Verifier::verify(&key, message, &signature).is_ok()
    }
}

/// An Ed25519 key pair in memory.
pub(crate) struct KeyPair {
    #[cfg(feature = "ring")]
    pair: ring::signature::Ed25519KeyPair,
    #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
    key: ed25519_dalek::SigningKey,
}

impl KeyPair {
    /// The pair of a 32-byte seed (the RFC 8032 private key).
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Option<KeyPair> {
        #[cfg(feature = "ring")]
        {
            ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
                .ok()
                .map(|pair| KeyPair { pair })
        }
        #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
        {
            Some(KeyPair {
                key: ed25519_dalek::SigningKey::from_bytes(seed),
            })
        }
    }

    /// The pair of a PKCS#8 v2 document (ring's format, what
    /// `Ed25519Signer::generate` writes).
    #[cfg(feature = "ring")]
    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Option<KeyPair> {
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8)
            .ok()
            .map(|pair| KeyPair { pair })
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        #[cfg(feature = "ring")]
        out.copy_from_slice(ring::signature::KeyPair::public_key(&self.pair).as_ref());
        #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
        out.copy_from_slice(self.key.verifying_key().as_bytes());
        out
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        #[cfg(feature = "ring")]
        out.copy_from_slice(self.pair.sign(message).as_ref());
        #[cfg(all(feature = "rustcrypto", not(feature = "ring")))]
        out.copy_from_slice(&ed25519_dalek::Signer::sign(&self.key, message).to_bytes());
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes of a hex string of `2 * N` digits (test vectors).
    pub(crate) fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    // Run with each backend (ci/test: default features, then `rustcrypto`
    // alone): both must give these bytes and these answers.

    #[test]
    fn sha256_of_abc_in_parts() {
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            h.finish(),
            unhex::<32>("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            Sha256::new().finish(),
            unhex::<32>("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    /// RFC 8032 §7.1, test 2 (one byte), and what verification refuses.
    #[test]
    fn ed25519_rfc8032_and_refusals() {
        let seed: [u8; 32] =
            unhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let public: [u8; 32] =
            unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let expected: [u8; 64] = unhex(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        );
        let pair = KeyPair::from_seed(&seed).unwrap();
        assert_eq!(pair.public_key(), public);
        let sig = pair.sign(&[0x72]);
        assert_eq!(sig, expected);
        assert!(ed25519_verify(&public, &[0x72], &sig));
        assert!(!ed25519_verify(&public, &[0x73], &sig));
        assert!(!ed25519_verify(&public, &[0x72], &sig[..63]));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!ed25519_verify(&public, &[0x72], &flipped));
        // S + L (the group order): the same signature with a non-canonical
        // S, which RFC 8032 and both backends refuse.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleable = sig;
        let mut carry = 0u16;
        for (s, l) in malleable[32..].iter_mut().zip(L) {
            let v = u16::from(*s) + u16::from(l) + carry;
            *s = v as u8;
            carry = v >> 8;
        }
        assert!(!ed25519_verify(&public, &[0x72], &malleable));
    }
}
