//! HPKE contexts, each job's AES-256-GCM key and its streams (feature `e2e`).

use core::fmt;

use hpke::aead::{AeadCtxR, AeadCtxS, ExportOnlyAead};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use ring::aead::{Aad, LessSafeKey, Nonce as AeadNonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

use super::{
    sealed_len, segments, SealError, KEY_LEN, MAX_JOB_BYTES, SEGMENT_LEN, SEGMENT_PLAIN_LEN,
    TAG_LEN,
};

type Kem = X25519HkdfSha256;

/// Exporter context label of a job's key and base nonce (one direction).
const JOB_LABEL: &[u8; 15] = b"tessera/e2e/job";
const NONCE_LEN: usize = 12;

/// An X25519 key pair: a provider's session key, or a requester's key for
/// its outputs. The secret is zeroed when the pair is dropped.
pub struct KeyPair {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; KEY_LEN],
}

impl KeyPair {
    /// The pair HPKE's `DeriveKeyPair` makes from `ikm` (32 random bytes
    /// from the host; RFC 9180, section 7.1.3).
    pub fn derive(ikm: &[u8; 32]) -> KeyPair {
        let (secret, public) = Kem::derive_keypair(ikm);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        KeyPair {
            secret,
            public: bytes,
        }
    }

    /// A fresh pair from the system's random source.
    #[cfg(feature = "std")]
    pub fn generate() -> Result<KeyPair, SealError> {
        let mut ikm = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ikm)
            .map_err(|_| SealError::Random)?;
        let pair = KeyPair::derive(&ikm);
        ikm.zeroize();
        Ok(pair)
    }

    /// The public key, which a sender seals to.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The sender's side of a context (one serves many jobs), from which each
/// job's key is exported.
pub struct Sender {
    ctx: AeadCtxS<ExportOnlyAead, HkdfSha256, Kem>,
}

impl Sender {
    /// Sets up a context sealing to `recipient` (HPKE `SetupBaseS`), the
    /// ephemeral key derived from `ikm_e` (32 random bytes, never used
    /// twice). Returns the encapsulated key the recipient needs and the
    /// context.
    pub fn new(
        recipient: &[u8; KEY_LEN],
        info: &[u8],
        ikm_e: &[u8; 32],
    ) -> Result<([u8; KEY_LEN], Sender), SealError> {
        let pk =
            <Kem as hpke::Kem>::PublicKey::from_bytes(recipient).map_err(|_| SealError::BadKey)?;
        let mut rng = IkmRng::new(ikm_e);
        let (enc, ctx) = hpke::setup_sender::<ExportOnlyAead, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &pk,
            info,
            &mut rng,
        )
        .map_err(|_| SealError::BadKey)?;
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(&enc.to_bytes());
        Ok((out, Sender { ctx }))
    }

    /// A fresh context sealing to `recipient`, its ephemeral key from the
    /// system's random source.
    #[cfg(feature = "std")]
    pub fn generate(
        recipient: &[u8; KEY_LEN],
        info: &[u8],
    ) -> Result<([u8; KEY_LEN], Sender), SealError> {
        let mut ikm = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ikm)
            .map_err(|_| SealError::Random)?;
        let out = Sender::new(recipient, info, &ikm);
        ikm.zeroize();
        out
    }

    /// The key sealing the streams of the job `job` ([`super::job_bytes`]),
    /// exported once for all of them.
    pub fn job_key(&self, job: &[u8]) -> Result<JobKey, SealError> {
        export_job(|c, out| self.ctx.export(c, out).is_ok(), job)
    }

    /// The key sealing stream `stream` of `plain_len` bytes of the job
    /// `job` alone ([`Sender::job_key`], then [`JobKey::stream`]).
    pub fn stream(&self, job: &[u8], stream: u32, plain_len: u64) -> Result<StreamKey, SealError> {
        self.job_key(job)?.stream(stream, plain_len)
    }

    /// HPKE's `Export` (RFC 9180, section 5.3), for checks against its
    /// vectors.
    pub fn export(&self, context: &[u8], out: &mut [u8]) -> Result<(), SealError> {
        self.ctx
            .export(context, out)
            .map_err(|_| SealError::BadLength)
    }
}

/// The recipient's side of a context.
pub struct Receiver {
    ctx: AeadCtxR<ExportOnlyAead, HkdfSha256, Kem>,
}

impl Receiver {
    /// Sets up the context a sender made with `enc` (HPKE `SetupBaseR`).
    pub fn new(keys: &KeyPair, enc: &[u8; KEY_LEN], info: &[u8]) -> Result<Receiver, SealError> {
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::BadKey)?;
        let ctx = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
            &OpModeR::Base,
            &keys.secret,
            &enc,
            info,
        )
        .map_err(|_| SealError::BadKey)?;
        Ok(Receiver { ctx })
    }

    /// The key opening the streams of the job `job` ([`super::job_bytes`]),
    /// exported once for all of them.
    pub fn job_key(&self, job: &[u8]) -> Result<JobKey, SealError> {
        export_job(|c, out| self.ctx.export(c, out).is_ok(), job)
    }

    /// The key opening stream `stream` of `plain_len` bytes of the job
    /// `job` alone ([`Receiver::job_key`], then [`JobKey::stream`]).
    pub fn stream(&self, job: &[u8], stream: u32, plain_len: u64) -> Result<StreamKey, SealError> {
        self.job_key(job)?.stream(stream, plain_len)
    }

    /// HPKE's `Export` (RFC 9180, section 5.3), for checks against its
    /// vectors.
    pub fn export(&self, context: &[u8], out: &mut [u8]) -> Result<(), SealError> {
        self.ctx
            .export(context, out)
            .map_err(|_| SealError::BadLength)
    }
}

/// The exporter context of a job's key: the label, then the job bytes
/// ([`super::job_bytes`]). Returns the buffer and how much of it is used;
/// `None` for job bytes over [`MAX_JOB_BYTES`].
fn job_context(job: &[u8]) -> Option<([u8; JOB_LABEL.len() + MAX_JOB_BYTES], usize)> {
    let mut c = [0u8; JOB_LABEL.len() + MAX_JOB_BYTES];
    if job.len() > MAX_JOB_BYTES {
        return None;
    }
    c[..JOB_LABEL.len()].copy_from_slice(JOB_LABEL);
    c[JOB_LABEL.len()..JOB_LABEL.len() + job.len()].copy_from_slice(job);
    Some((c, JOB_LABEL.len() + job.len()))
}

fn export_job(export: impl Fn(&[u8], &mut [u8]) -> bool, job: &[u8]) -> Result<JobKey, SealError> {
    let (context, n) = job_context(job).ok_or(SealError::BadLength)?;
    let mut okm = [0u8; 32 + NONCE_LEN];
    let key = if export(&context[..n], &mut okm) {
        UnboundKey::new(&AES_256_GCM, &okm[..32]).map_err(|_| SealError::BadLength)
    } else {
        Err(SealError::BadLength)
    };
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[32..]);
    okm.zeroize();
    Ok(JobKey {
        key: LessSafeKey::new(key?),
        nonce,
    })
}

/// One job's AES-256-GCM key and base nonce in one direction, exported
/// once: every stream of the job is sealed under it, each at its own
/// nonces ([`JobKey::stream`]).
pub struct JobKey {
    key: LessSafeKey,
    nonce: [u8; NONCE_LEN],
}

impl JobKey {
    /// The key of stream `stream` of `plain_len` bytes: the job's key, its
    /// base nonce XOR the big-endian stream number in the first four bytes
    /// (a segment's index goes in the last eight, [`StreamKey`]), so no two
    /// segments of the job share a nonce. Each stream number seals one
    /// plaintext under a job key: sealing a second one under the same
    /// number would reuse its nonces. `BadLength` for a length whose sealed
    /// length is past `u64`.
    pub fn stream(&self, stream: u32, plain_len: u64) -> Result<StreamKey, SealError> {
        // Checked here, so every segment arithmetic below stays in range.
        sealed_len(plain_len).ok_or(SealError::BadLength)?;
        let mut nonce = self.nonce;
        for (b, s) in nonce[..4].iter_mut().zip(stream.to_be_bytes()) {
            *b ^= s;
        }
        Ok(StreamKey {
            key: self.key.clone(),
            nonce,
            plain_len,
        })
    }
}

/// One stream's AES-256-GCM key and base nonce ([`JobKey::stream`]), and
/// its plaintext length (bound into every segment, so a stream cut short
/// or run long does not open).
pub struct StreamKey {
    key: LessSafeKey,
    nonce: [u8; NONCE_LEN],
    plain_len: u64,
}

impl StreamKey {
    /// Plaintext bytes of the stream.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// Sealed bytes of the stream.
    pub fn sealed_len(&self) -> u64 {
        // In range: checked when the key was made.
        self.plain_len + segments(self.plain_len) * TAG_LEN as u64
    }

    /// Segments of the stream.
    pub fn segments(&self) -> u64 {
        segments(self.plain_len)
    }

    /// Plaintext bytes of segment `index`; `BadLength` past the end.
    pub fn segment_plain_len(&self, index: u64) -> Result<usize, SealError> {
        let start = index
            .checked_mul(SEGMENT_PLAIN_LEN as u64)
            .filter(|&s| s < self.plain_len)
            .ok_or(SealError::BadLength)?;
        Ok((self.plain_len - start).min(SEGMENT_PLAIN_LEN as u64) as usize)
    }

    fn nonce(&self, index: u64) -> AeadNonce {
        // RFC 9180's ComputeNonce: the stream's base nonce XOR the
        // big-endian index (its last eight bytes: the stream number is in
        // the first four).
        let mut n = self.nonce;
        for (b, i) in n[NONCE_LEN - 8..].iter_mut().zip(index.to_be_bytes()) {
            *b ^= i;
        }
        AeadNonce::assume_unique_for_key(n)
    }

    fn aad(&self) -> [u8; 8] {
        self.plain_len.to_le_bytes()
    }

    /// Seals segment `index` in place: `segment` holds its plaintext, then
    /// [`TAG_LEN`] bytes for the tag (so it is the sealed segment's length,
    /// [`SEGMENT_LEN`] for all but the last).
    pub fn seal_segment(&self, index: u64, segment: &mut [u8]) -> Result<(), SealError> {
        let plain = self.segment_plain_len(index)?;
        if segment.len() != plain + TAG_LEN {
            return Err(SealError::BadLength);
        }
        let (data, tag_out) = segment.split_at_mut(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(index), Aad::from(self.aad()), data)
            .map_err(|_| SealError::BadLength)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens sealed segment `index` in place and returns its plaintext (the
    /// front of `segment`). On `Forged` no byte of unauthenticated
    /// plaintext is left in `segment` (ring clears what it decrypted).
    pub fn open_segment<'a>(
        &self,
        index: u64,
        segment: &'a mut [u8],
    ) -> Result<&'a mut [u8], SealError> {
        let plain = self.segment_plain_len(index)?;
        if segment.len() != plain + TAG_LEN {
            return Err(SealError::BadLength);
        }
        self.key
            .open_in_place(self.nonce(index), Aad::from(self.aad()), segment)
            .map_err(|_| SealError::Forged)
    }

    /// The whole stream sealed.
    #[cfg(feature = "std")]
    pub fn seal(&self, plain: &[u8]) -> Result<std::vec::Vec<u8>, SealError> {
        let mut out = std::vec::Vec::with_capacity(self.sealed_len() as usize);
        self.seal_into(plain, &mut out)?;
        Ok(out)
    }

    /// The whole stream sealed at the end of `out` (each segment sealed in
    /// place there). On an error `out` is as it was.
    #[cfg(feature = "std")]
    pub fn seal_into(&self, plain: &[u8], out: &mut std::vec::Vec<u8>) -> Result<(), SealError> {
        if plain.len() as u64 != self.plain_len {
            return Err(SealError::BadLength);
        }
        let start = out.len();
        out.reserve(self.sealed_len() as usize);
        for (i, piece) in plain.chunks(SEGMENT_PLAIN_LEN).enumerate() {
            let at = out.len();
            out.extend_from_slice(piece);
            out.resize(at + piece.len() + TAG_LEN, 0);
            if let Err(e) = self.seal_segment(i as u64, &mut out[at..]) {
                // Plaintext copied in is wiped before it is cut off.
                out[start..].zeroize();
                out.truncate(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The whole stream opened; its plaintext is zeroed when dropped.
    #[cfg(feature = "std")]
    pub fn open(&self, sealed: &[u8]) -> Result<zeroize::Zeroizing<std::vec::Vec<u8>>, SealError> {
        if sealed.len() as u64 != self.sealed_len() {
            return Err(SealError::BadLength);
        }
        // Each segment is opened in place at the end of the output (room
        // for its tag included), then the tag is cut off: no other copy of
        // the plaintext is made.
        let mut out = zeroize::Zeroizing::new(std::vec::Vec::with_capacity(sealed.len()));
        for (i, piece) in sealed.chunks(SEGMENT_LEN).enumerate() {
            let at = out.len();
            out.extend_from_slice(piece);
            let n = self.open_segment(i as u64, &mut out[at..])?.len();
            out.truncate(at + n);
        }
        Ok(out)
    }
}

/// The 32 bytes of `ikm` as randomness, then a SHA-256 stream seeded by
/// them: HPKE's `Encap` asks exactly 32 bytes (X25519's `DeriveKeyPair`
/// input), so the ephemeral key is the one `ikm` derives, as RFC 9180's
/// vectors fix it.
struct IkmRng {
    ikm: [u8; 32],
    block: [u8; 32],
    used: usize,
    counter: u32,
}

impl IkmRng {
    fn new(ikm: &[u8; 32]) -> IkmRng {
        IkmRng {
            ikm: *ikm,
            block: *ikm,
            used: 0,
            counter: 0,
        }
    }
}

impl Drop for IkmRng {
    fn drop(&mut self) {
        self.ikm.zeroize();
        self.block.zeroize();
    }
}

impl RngCore for IkmRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.used == self.block.len() {
                self.counter = self.counter.wrapping_add(1);
                let mut h = crate::crypto::Sha256::new();
                h.update(b"tessera/e2e/ikm");
                h.update(&self.ikm);
                h.update(&self.counter.to_le_bytes());
                self.block = h.finish();
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

impl CryptoRng for IkmRng {}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// A job's bytes: its nonce.
    const JOB: &[u8] = &[0x4E; 32];

    fn hex(s: &str) -> std::vec::Vec<u8> {
        let s: std::string::String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr(s: &str) -> [u8; 32] {
        hex(s).try_into().unwrap()
    }

    /// RFC 9180, appendix A.7.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// export-only AEAD, base mode. Our suite exactly.
    #[test]
    fn rfc9180_a7_base_vectors() {
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let ikm_e = arr("55bc245ee4efda25d38f2d54d5bb6665291b99f8108a8c4b686c2b14893ea5d9");
        let ikm_r = arr("683ae0da1d22181e74ed2e503ebf82840deb1d5e872cade20f4b458d99783e31");
        let pk_rm = arr("194141ca6c3c3beb4792cd97ba0ea1faff09d98435012345766ee33aae2d7664");
        let enc_v = arr("e5e8f9bfff6c2f29791fc351d2c25ce1299aa5eaca78a757c0b4fb4bcd830918");
        let receiver_keys = KeyPair::derive(&ikm_r);
        assert_eq!(receiver_keys.public(), &pk_rm);
        let (enc, sender) = Sender::new(&pk_rm, &info, &ikm_e).unwrap();
        assert_eq!(enc, enc_v);
        let receiver = Receiver::new(&receiver_keys, &enc, &info).unwrap();
        for (context, value) in [
            (
                "",
                "7a36221bd56d50fb51ee65edfd98d06a23c4dc87085aa5866cb7087244bd2a36",
            ),
            (
                "00",
                "d5535b87099c6c3ce80dc112a2671c6ec8e811a2f284f948cec6dd1708ee33f0",
            ),
            (
                "54657374436f6e74657874",
                "ffaabc85a776136ca0c378e5d084c9140ab552b78f039d2e8775f26efff4c70e",
            ),
        ] {
            let mut a = [0u8; 32];
            let mut b = [0u8; 32];
            sender.export(&hex(context), &mut a).unwrap();
            receiver.export(&hex(context), &mut b).unwrap();
            assert_eq!(
                a.as_slice(),
                hex(value).as_slice(),
                "sender export {context}"
            );
            assert_eq!(
                b.as_slice(),
                hex(value).as_slice(),
                "receiver export {context}"
            );
        }
    }

    /// RFC 9180, appendix A.1.1: the same KEM and KDF with AES-128-GCM;
    /// the exports depend only on them, the key schedule and the AEAD id.
    #[test]
    fn rfc9180_a1_key_pair_and_encapsulation() {
        let ikm_e = arr("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234");
        let ikm_r = arr("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037");
        let keys = KeyPair::derive(&ikm_r);
        assert_eq!(
            keys.public(),
            &arr("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
        );
        let (enc, _) = Sender::new(keys.public(), b"", &ikm_e).unwrap();
        assert_eq!(
            enc,
            arr("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(sealed_len(0), Some(0));
        assert_eq!(sealed_len(1), Some(17));
        assert_eq!(sealed_len(65520), Some(65536));
        assert_eq!(sealed_len(65521), Some(65536 + 17));
        assert_eq!(sealed_len(u64::MAX), None);
        for n in [
            0u64,
            1,
            15,
            16,
            65519,
            65520,
            65521,
            131040,
            131041,
            1 << 26,
        ] {
            assert_eq!(plain_len(sealed_len(n).unwrap()), Some(n));
        }
        for bad in [1u64, 16, 65536 + 16, 65536 * 3 + 1] {
            assert_eq!(plain_len(bad), None);
        }
    }

    fn pair() -> (KeyPair, Sender, Receiver) {
        let keys = KeyPair::derive(&[7; 32]);
        let info = provider_info(&[2; 32]);
        let (enc, sender) = Sender::new(keys.public(), &info, &[9; 32]).unwrap();
        let receiver = Receiver::new(&keys, &enc, &info).unwrap();
        (keys, sender, receiver)
    }

    #[test]
    fn streams_round_trip_and_each_segment_opens_alone() {
        let (_keys, sender, receiver) = pair();
        let plain: std::vec::Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        let sealed = sender
            .stream(JOB, 1, plain.len() as u64)
            .unwrap()
            .seal(&plain)
            .unwrap();
        assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64).unwrap());
        let key = receiver.stream(JOB, 1, plain.len() as u64).unwrap();
        assert_eq!(key.open(&sealed).unwrap().as_slice(), plain.as_slice());
        let mut second = sealed[SEGMENT_LEN..2 * SEGMENT_LEN].to_vec();
        assert_eq!(
            key.open_segment(1, &mut second).unwrap(),
            &plain[SEGMENT_PLAIN_LEN..2 * SEGMENT_PLAIN_LEN]
        );
    }

    #[test]
    fn the_streams_of_one_job_key_never_share_a_nonce() {
        let (_keys, sender, receiver) = pair();
        let (sealing, opening) = (sender.job_key(JOB).unwrap(), receiver.job_key(JOB).unwrap());
        let plain = [9u8; 64];
        // Streams whose numbers differ in any byte, and the high ones a
        // sealed job uses (result key, push constants).
        let numbers = [
            0u32,
            1,
            2,
            0x100,
            0x1_0000,
            0x100_0000,
            u32::MAX - 1,
            u32::MAX,
        ];
        let sealed: std::vec::Vec<_> = numbers
            .iter()
            .map(|&s| sealing.stream(s, 64).unwrap().seal(&plain).unwrap())
            .collect();
        for (i, a) in sealed.iter().enumerate() {
            for b in &sealed[i + 1..] {
                assert_ne!(a[..64], b[..64], "one key stream under two nonces");
            }
        }
        for (&s, bytes) in numbers.iter().zip(&sealed) {
            assert_eq!(
                opening.stream(s, 64).unwrap().open(bytes).unwrap()[..],
                plain
            );
            let other = opening.stream(s ^ 1, 64).unwrap();
            assert_eq!(other.open(bytes).err(), Some(SealError::Forged));
        }
        // One stream sealed alone is the job key's stream.
        let alone = sender.stream(JOB, 7, 64).unwrap().seal(&plain).unwrap();
        assert_eq!(alone, sealing.stream(7, 64).unwrap().seal(&plain).unwrap());
    }

    #[test]
    fn a_segment_out_of_place_or_changed_does_not_open() {
        let (_keys, sender, receiver) = pair();
        let plain = [5u8; 3 * SEGMENT_PLAIN_LEN];
        let sealed = sender
            .stream(JOB, 2, plain.len() as u64)
            .unwrap()
            .seal(&plain)
            .unwrap();
        let key = receiver.stream(JOB, 2, plain.len() as u64).unwrap();
        // Another place in the stream.
        let mut first = sealed[..SEGMENT_LEN].to_vec();
        assert_eq!(key.open_segment(1, &mut first), Err(SealError::Forged));
        assert!(
            !first.windows(16).any(|w| w == [5u8; 16]),
            "no unauthenticated plaintext is left behind"
        );
        // Another stream of the same job.
        let other = receiver.stream(JOB, 3, plain.len() as u64).unwrap();
        let mut first = sealed[..SEGMENT_LEN].to_vec();
        assert_eq!(other.open_segment(0, &mut first), Err(SealError::Forged));
        // A stream said to be shorter (cut): the length is bound.
        let cut = receiver
            .stream(JOB, 2, 2 * SEGMENT_PLAIN_LEN as u64)
            .unwrap();
        let mut first = sealed[..SEGMENT_LEN].to_vec();
        assert_eq!(cut.open_segment(0, &mut first), Err(SealError::Forged));
        // A flipped bit.
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert_eq!(key.open(&bad).err(), Some(SealError::Forged));
        // A wrong length, a segment past the end.
        assert_eq!(key.open(&sealed[1..]).err(), Some(SealError::BadLength));
        let mut seg = [0u8; SEGMENT_LEN];
        assert_eq!(key.open_segment(3, &mut seg), Err(SealError::BadLength));
        assert_eq!(
            key.open_segment(u64::MAX, &mut seg),
            Err(SealError::BadLength)
        );
    }

    #[test]
    fn another_job_direction_or_provider_opens_nothing() {
        let keys = KeyPair::derive(&[7; 32]);
        let info_a = provider_info(&[2; 32]);
        let (enc, sender) = Sender::new(keys.public(), &info_a, &[9; 32]).unwrap();
        let sealed = sender
            .stream(JOB, 1, 10)
            .unwrap()
            .seal(b"0123456789")
            .unwrap();
        for other in [
            &requester_info(&[2; 32], &enc)[..],
            &provider_info(&[4; 32])[..],
        ] {
            let r = Receiver::new(&keys, &enc, other).unwrap();
            assert_eq!(
                r.stream(JOB, 1, 10).unwrap().open(&sealed).err(),
                Some(SealError::Forged)
            );
        }
        // Another job of the same context.
        let r = Receiver::new(&keys, &enc, &info_a).unwrap();
        assert_eq!(
            r.stream(&[1; 48], 1, 10).unwrap().open(&sealed).err(),
            Some(SealError::Forged)
        );
        assert_eq!(
            r.stream(JOB, 1, 10)
                .unwrap()
                .open(&sealed)
                .unwrap()
                .as_slice(),
            b"0123456789"
        );
        // Job bytes longer than any job's are refused.
        assert!(matches!(
            r.stream(&[1; 81], 1, 10),
            Err(SealError::BadLength)
        ));
        let wrong_keys = KeyPair::derive(&[8; 32]);
        let r = Receiver::new(&wrong_keys, &enc, &info_a).unwrap();
        assert_eq!(
            r.stream(JOB, 1, 10).unwrap().open(&sealed).err(),
            Some(SealError::Forged)
        );
    }

    #[test]
    fn low_order_keys_are_refused() {
        let keys = KeyPair::derive(&[7; 32]);
        assert_eq!(
            Sender::new(&[0; 32], b"", &[9; 32]).err().map(|_| ()),
            Some(())
        );
        assert!(matches!(
            Sender::new(&[0; 32], b"", &[9; 32]),
            Err(SealError::BadKey)
        ));
        assert!(matches!(
            Receiver::new(&keys, &[0; 32], b""),
            Err(SealError::BadKey)
        ));
    }
}
