//! Device evidence: who the device is and what it can do, signed over the
//! coordinator's challenge so it cannot be replayed from an earlier session.

use super::cose::{self, sign1_len};
use super::{ChainState, Reader, SignError, Signer, VerifyError, Writer, EVIDENCE_DOMAIN};
use crate::wire::{Digest, Nonce};

/// Bytes of the evidence payload.
pub const EVIDENCE_PAYLOAD_LEN: usize =
    1 + 32 + 32 + 6 + 16 + 8 + 8 + 32 + CAPABILITIES_LEN + 32 + 2 + 32;
/// Bytes of signed evidence (COSE_Sign1).
pub const EVIDENCE_LEN: usize = sign1_len(EVIDENCE_PAYLOAD_LEN);
const CAPABILITIES_LEN: usize = 64 + 4 * 4 + 1 + 4 + 8 + 8 + 12 + 12 + 4 + 4 + 8 + 4 + 4 + 4;
const EVIDENCE_VERSION: u8 = 3;
/// Domain tag of the nonce a hardware attestation report binds.
pub const HARDWARE_NONCE_DOMAIN: &[u8] = b"tessera/hw-nonce/v1";

/// What kind of hardware attestation report the evidence names
/// (`docs/PROTOCOL.md`, "Hardware attestation reports"): a `u16` on the
/// wire, so kinds this version does not name still decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardwareReportKind(pub u16);

impl HardwareReportKind {
    /// No report: the evidence stands on the device key alone.
    pub const NONE: HardwareReportKind = HardwareReportKind(0);
    /// An NVIDIA GPU confidential-computing attestation report, made with
    /// the hardware nonce as its nonce.
    pub const NVIDIA_CC: HardwareReportKind = HardwareReportKind(1);
    /// A TPM 2.0 quote (`TPM2_Quote`) whose qualifying data is the
    /// hardware nonce.
    pub const TPM2_QUOTE: HardwareReportKind = HardwareReportKind(2);
    /// An AMD SEV-SNP attestation report whose `REPORT_DATA` starts with
    /// the hardware nonce (the rest zero).
    pub const SEV_SNP: HardwareReportKind = HardwareReportKind(3);
    /// An Intel TDX quote whose `REPORTDATA` starts with the hardware nonce
    /// (the rest zero).
    pub const TDX: HardwareReportKind = HardwareReportKind(4);
    /// The first of the kinds a vendor may use privately (0x8000 and up).
    pub const VENDOR_FIRST: HardwareReportKind = HardwareReportKind(0x8000);
}

/// The evidence's slot for a hardware attestation report: its kind and
/// the SHA-256 of its bytes. The report itself travels beside the evidence
/// (see [`Evidence::check_hardware_report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardwareReport {
    /// The report's kind; [`HardwareReportKind::NONE`] with a zero hash
    /// when there is none.
    pub kind: HardwareReportKind,
    /// SHA-256 of the report's bytes.
    pub hash: Digest,
}

impl HardwareReport {
    /// No report.
    pub const NONE: HardwareReport = HardwareReport {
        kind: HardwareReportKind::NONE,
        hash: [0; 32],
    };
}

/// Why a hardware attestation report was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareReportError {
    /// The evidence names no report.
    Absent,
    /// The report's bytes are not the ones the evidence names (hash).
    HashMismatch,
    /// The verifier has no check for the report's kind.
    UnsupportedKind,
    /// The vendor's check refused the report: not genuine, not made for
    /// this nonce, or against the verifier's policy.
    Rejected,
}

/// A vendor's check of a hardware attestation report: its signature
/// chain up to the vendor's root, its measurements against a policy, and
/// that it was made for `nonce` (see [`Evidence::hardware_report_nonce`]).
/// Tessera ships the slot and this hook, not a vendor's check.
pub trait HardwareReportVerifier {
    /// Accepts `report` of `kind` made for `nonce`, or says why not
    /// ([`HardwareReportError::UnsupportedKind`] for a kind it does not
    /// check).
    fn verify(
        &self,
        kind: HardwareReportKind,
        report: &[u8],
        nonce: &Digest,
    ) -> Result<(), HardwareReportError>;
}

/// Kind of device, as Vulkan reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum DeviceType {
    /// Unknown or other.
    #[default]
    Other = 0,
    /// A GPU sharing memory with the host.
    IntegratedGpu = 1,
    /// A GPU with its own memory.
    DiscreteGpu = 2,
    /// A GPU in a virtual machine.
    VirtualGpu = 3,
    /// A CPU implementation (lavapipe, say).
    Cpu = 4,
}

impl DeviceType {
    fn from_u8(v: u8) -> Option<DeviceType> {
        Some(match v {
            0 => DeviceType::Other,
            1 => DeviceType::IntegratedGpu,
            2 => DeviceType::DiscreteGpu,
            3 => DeviceType::VirtualGpu,
            4 => DeviceType::Cpu,
            _ => return None,
        })
    }
}

/// What the device is and can do; filled by the Vulkan dispatcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCapabilities {
    /// Device name, UTF-8, at most 64 bytes.
    pub name: crate::bounded::BoundedString<64>,
    /// PCI vendor id.
    pub vendor_id: u32,
    /// Vendor's device id.
    pub device_id: u32,
    /// Driver version, vendor-encoded.
    pub driver_version: u32,
    /// Vulkan API version the device supports.
    pub api_version: u32,
    /// Kind of device.
    pub device_type: DeviceType,
    /// Feature bits ([`crate::wire::features`]).
    pub features: u32,
    /// Bytes of device-local memory (largest device-local heap).
    pub device_local_bytes: u64,
    /// Bytes of host-visible memory (largest host-visible heap).
    pub host_visible_bytes: u64,
    /// Largest workgroup size in x, y, z.
    pub max_workgroup_size: [u32; 3],
    /// Most workgroups in one dispatch in x, y, z.
    pub max_workgroup_count: [u32; 3],
    /// Most invocations in one workgroup.
    pub max_invocations: u32,
    /// Bytes of workgroup shared memory.
    pub max_shared_memory: u32,
    /// Largest storage buffer binding, in bytes.
    pub max_storage_buffer_range: u64,
    /// Subgroup size.
    pub subgroup_size: u32,
    /// Measured copy-kernel bandwidth, MB/s (0: not measured).
    pub copy_mbps: u32,
    /// Measured FMA throughput, MFLOP/s (0: not measured).
    pub fma_mflops: u32,
}

/// Device evidence, the signed payload's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The coordinator's challenge this evidence answers.
    pub challenge: Nonce,
    /// The device's Ed25519 public key (it also signs this evidence).
    pub public_key: [u8; 32],
    /// Agent software version: major, minor, patch.
    pub agent_version: [u16; 3],
    /// Random id chosen at each boot of the agent.
    pub boot_id: [u8; 16],
    /// When the evidence was made, microseconds in the host's time base.
    pub issued_at: u64,
    /// The provider's receipt chain when the evidence was made: the
    /// sequence its next receipt will carry and the hash of its last one.
    /// A coordinator without history anchors the provider's chain here, on
    /// a signed statement.
    pub chain: ChainState,
    /// The device's capabilities.
    pub capabilities: DeviceCapabilities,
    /// The provider's X25519 public key for this session, to which
    /// requesters seal jobs (`docs/PROTOCOL.md`, "End-to-end sealing"); 32
    /// zero bytes when the provider takes no sealed jobs.
    pub enc_key: [u8; 32],
    /// A hardware attestation report's slot, bound to this challenge
    /// through [`Evidence::hardware_report_nonce`].
    pub hardware_report: HardwareReport,
}

impl Evidence {
    /// The fixed-width payload (`docs/PROTOCOL.md`, "Evidence").
    pub fn encode_payload(&self) -> [u8; EVIDENCE_PAYLOAD_LEN] {
        let mut buf = [0u8; EVIDENCE_PAYLOAD_LEN];
        let mut w = Writer::new(&mut buf);
        w.u8(EVIDENCE_VERSION);
        w.bytes(&self.challenge);
        w.bytes(&self.public_key);
        for v in self.agent_version {
            w.u16(v);
        }
        w.bytes(&self.boot_id);
        w.u64(self.issued_at);
        w.u64(self.chain.next_sequence);
        w.bytes(&self.chain.prev_hash);
        let c = &self.capabilities;
        let mut name = [0u8; 64];
        name[..c.name.len()].copy_from_slice(c.name.as_bytes());
        w.bytes(&name);
        w.u32(c.vendor_id);
        w.u32(c.device_id);
        w.u32(c.driver_version);
        w.u32(c.api_version);
        w.u8(c.device_type as u8);
        w.u32(c.features);
        w.u64(c.device_local_bytes);
        w.u64(c.host_visible_bytes);
        for v in c
            .max_workgroup_size
            .iter()
            .chain(c.max_workgroup_count.iter())
        {
            w.u32(*v);
        }
        w.u32(c.max_invocations);
        w.u32(c.max_shared_memory);
        w.u64(c.max_storage_buffer_range);
        w.u32(c.subgroup_size);
        w.u32(c.copy_mbps);
        w.u32(c.fma_mflops);
        w.bytes(&self.enc_key);
        w.u16(self.hardware_report.kind.0);
        w.bytes(&self.hardware_report.hash);
        debug_assert_eq!(w.pos, EVIDENCE_PAYLOAD_LEN);
        buf
    }

    /// Parses a payload; `Malformed` on a wrong length, version, device type
    /// or a name that is not UTF-8.
    pub fn decode_payload(payload: &[u8]) -> Result<Evidence, VerifyError> {
        if payload.len() != EVIDENCE_PAYLOAD_LEN {
            return Err(VerifyError::Malformed);
        }
        let mut r = Reader::new(payload);
        if r.u8() != EVIDENCE_VERSION {
            return Err(VerifyError::Malformed);
        }
        let challenge = r.take();
        let public_key = r.take();
        let agent_version = [r.u16(), r.u16(), r.u16()];
        let boot_id = r.take();
        let issued_at = r.u64();
        let chain = ChainState {
            next_sequence: r.u64(),
            prev_hash: r.take(),
        };
        let raw_name: [u8; 64] = r.take();
        let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(64);
        if raw_name[name_len..].iter().any(|&b| b != 0) {
            return Err(VerifyError::Malformed);
        }
        let name_str =
            core::str::from_utf8(&raw_name[..name_len]).map_err(|_| VerifyError::Malformed)?;
        let mut name = crate::bounded::BoundedString::new();
        name.push_str(name_str)
            .map_err(|_| VerifyError::Malformed)?;
        let vendor_id = r.u32();
        let device_id = r.u32();
        let driver_version = r.u32();
        let api_version = r.u32();
        let device_type = DeviceType::from_u8(r.u8()).ok_or(VerifyError::Malformed)?;
        let features = r.u32();
        let device_local_bytes = r.u64();
        let host_visible_bytes = r.u64();
        let max_workgroup_size = [r.u32(), r.u32(), r.u32()];
        let max_workgroup_count = [r.u32(), r.u32(), r.u32()];
        let capabilities = DeviceCapabilities {
            name,
            vendor_id,
            device_id,
            driver_version,
            api_version,
            device_type,
            features,
            device_local_bytes,
            host_visible_bytes,
            max_workgroup_size,
            max_workgroup_count,
            max_invocations: r.u32(),
            max_shared_memory: r.u32(),
            max_storage_buffer_range: r.u64(),
            subgroup_size: r.u32(),
            copy_mbps: r.u32(),
            fma_mflops: r.u32(),
        };
        let enc_key = r.take();
        let hardware_report = HardwareReport {
            kind: HardwareReportKind(r.u16()),
            hash: r.take(),
        };
        if hardware_report.kind == HardwareReportKind::NONE && hardware_report.hash != [0; 32] {
            return Err(VerifyError::Malformed);
        }
        Ok(Evidence {
            challenge,
            public_key,
            agent_version,
            boot_id,
            issued_at,
            chain,
            capabilities,
            enc_key,
            hardware_report,
        })
    }

    /// The nonce a hardware attestation report must be made for: SHA-256
    /// of the domain tag, the challenge, the device key and the session
    /// encryption key, so a report binds the same challenge as the
    /// evidence and the key requesters seal to.
    pub fn hardware_report_nonce(&self) -> Digest {
        hardware_report_nonce(&self.challenge, &self.public_key, &self.enc_key)
    }

    /// Checks the hardware attestation report the evidence names: `report`
    /// must hash to the slot's hash, and `verifier` (the vendor's check)
    /// must accept it as made for [`Evidence::hardware_report_nonce`].
    /// Check the evidence itself first ([`Evidence::verify`]).
    pub fn check_hardware_report(
        &self,
        report: &[u8],
        verifier: &dyn HardwareReportVerifier,
    ) -> Result<(), HardwareReportError> {
        if self.hardware_report.kind == HardwareReportKind::NONE {
            return Err(HardwareReportError::Absent);
        }
        if super::sha256(report) != self.hardware_report.hash {
            return Err(HardwareReportError::HashMismatch);
        }
        verifier.verify(
            self.hardware_report.kind,
            report,
            &self.hardware_report_nonce(),
        )
    }

    /// Signs the evidence with `signer` into `out` (at least [`EVIDENCE_LEN`]
    /// bytes); returns the length written. The signer's public key must be
    /// `self.public_key`.
    pub fn sign<S: Signer + ?Sized>(
        &self,
        signer: &mut S,
        out: &mut [u8],
    ) -> Result<usize, SignError> {
        cose::sign(signer, EVIDENCE_DOMAIN, &self.encode_payload(), out)
    }

    /// Verifies signed evidence: well-formed, signed by the public key it
    /// carries, and answering `challenge`. Returns the evidence.
    pub fn verify(bytes: &[u8], challenge: &Nonce) -> Result<Evidence, VerifyError> {
        let evidence = Evidence::open(bytes)?;
        if &evidence.challenge != challenge {
            return Err(VerifyError::WrongNonce);
        }
        Ok(evidence)
    }

    /// Verifies signed evidence's form and signature only, for a third party
    /// that did not issue the challenge: the returned evidence says which
    /// challenge it answers, and a verifier decides whether that is fresh.
    pub fn open(bytes: &[u8]) -> Result<Evidence, VerifyError> {
        let sign1 = cose::parse(bytes, EVIDENCE_PAYLOAD_LEN)?;
        let evidence = Evidence::decode_payload(sign1.payload)?;
        cose::verify(&sign1, EVIDENCE_DOMAIN, &evidence.public_key)?;
        Ok(evidence)
    }

    /// The evidence hash bound into receipts: SHA-256 of the signed bytes.
    pub fn hash(signed: &[u8]) -> Digest {
        super::sha256(signed)
    }
}

/// The nonce a hardware attestation report is made for (see
/// [`Evidence::hardware_report_nonce`]); a provider computes it from the
/// challenge before its evidence exists.
pub fn hardware_report_nonce(
    challenge: &Nonce,
    public_key: &[u8; 32],
    enc_key: &[u8; 32],
) -> Digest {
    super::sha256_parts(&[HARDWARE_NONCE_DOMAIN, challenge, public_key, enc_key])
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::attest::cose;

    fn signed(s: &mut crate::attest::Ed25519Signer, e: &Evidence) -> [u8; EVIDENCE_LEN] {
        let mut out = [0u8; EVIDENCE_LEN];
        assert_eq!(e.sign(s, &mut out).unwrap(), EVIDENCE_LEN);
        out
    }

    #[test]
    fn round_trip() {
        let mut s = signer(1);
        let e = evidence(s.public_key(), [0xC0; 32]);
        assert_eq!(Evidence::decode_payload(&e.encode_payload()), Ok(e.clone()));
        let bytes = signed(&mut s, &e);
        assert_eq!(Evidence::verify(&bytes, &[0xC0; 32]), Ok(e));
        assert_eq!(Evidence::hash(&bytes), crate::attest::sha256(&bytes));
    }

    #[test]
    fn a_full_64_byte_name_and_an_empty_one_round_trip() {
        let mut s = signer(1);
        for name in [
            "",
            "0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            let mut e = evidence(s.public_key(), [1; 32]);
            e.capabilities.name.clear();
            e.capabilities.name.push_str(name).unwrap();
            let bytes = signed(&mut s, &e);
            assert_eq!(Evidence::verify(&bytes, &[1; 32]), Ok(e));
        }
    }

    #[test]
    fn another_challenge_is_a_wrong_nonce() {
        let mut s = signer(1);
        let e = evidence(s.public_key(), [1; 32]);
        let bytes = signed(&mut s, &e);
        assert_eq!(
            Evidence::verify(&bytes, &[2; 32]),
            Err(VerifyError::WrongNonce)
        );
    }

    #[test]
    fn every_flipped_byte_is_caught_with_its_reason() {
        let mut s = signer(1);
        let e = evidence(s.public_key(), [1; 32]);
        let bytes = signed(&mut s, &e);
        let payload_at = 28;
        let sig_at = payload_at + EVIDENCE_PAYLOAD_LEN;
        let pk_at = payload_at + 33;
        let name_at = payload_at + 1 + 32 + 32 + 6 + 16 + 8 + 8 + 32;
        for i in 0..EVIDENCE_LEN {
            let mut t = bytes;
            t[i] ^= 0x01;
            let got = Evidence::verify(&t, &[1; 32]);
            let expected = if i < 9 || (25..payload_at).contains(&i) || i == payload_at {
                // Fixed COSE bytes, or the payload's version.
                VerifyError::Malformed
            } else if i < 25 || (pk_at..pk_at + 32).contains(&i) {
                // The header's key id, or the key the payload carries.
                VerifyError::UnknownKey
            } else if (name_at + 14..name_at + 64).contains(&i) {
                // A byte after the name's terminating zero (a flip of the
                // zero itself just lengthens the name).
                VerifyError::Malformed
            } else if (payload_at + 322..payload_at + 354).contains(&i) {
                // A hardware report hash without a report.
                VerifyError::Malformed
            } else if i < sig_at {
                VerifyError::BadSignature
            } else if i < sig_at + 2 {
                VerifyError::Malformed
            } else {
                VerifyError::BadSignature
            };
            assert_eq!(got, Err(expected), "byte {i}");
        }
    }

    #[test]
    fn truncated_or_extended_is_malformed() {
        let mut s = signer(1);
        let e = evidence(s.public_key(), [1; 32]);
        let bytes = signed(&mut s, &e);
        for len in [0, 28, EVIDENCE_LEN - 1] {
            assert_eq!(
                Evidence::verify(&bytes[..len], &[1; 32]),
                Err(VerifyError::Malformed)
            );
        }
        let mut longer = [0u8; EVIDENCE_LEN + 1];
        longer[..EVIDENCE_LEN].copy_from_slice(&bytes);
        assert_eq!(
            Evidence::verify(&longer, &[1; 32]),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn evidence_signed_by_another_key_than_it_names_fails() {
        let mut other = signer(2);
        let e = evidence(signer(1).public_key(), [1; 32]);
        let bytes = signed(&mut other, &e);
        assert_eq!(
            Evidence::verify(&bytes, &[1; 32]),
            Err(VerifyError::UnknownKey)
        );
        // Same key id in the header, but the signature is another key's.
        let mut payload_only = [0u8; EVIDENCE_LEN];
        let mut pretender = signer(2);
        cose::sign(
            &mut pretender,
            EVIDENCE_DOMAIN,
            &e.encode_payload(),
            &mut payload_only,
        )
        .unwrap();
        payload_only[9..25].copy_from_slice(&crate::attest::key_id(&e.public_key));
        assert_eq!(
            Evidence::verify(&payload_only, &[1; 32]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_bad_name_version_or_device_type_is_malformed_even_when_signed() {
        let mut s = signer(1);
        let e = evidence(s.public_key(), [1; 32]);
        let name_at = 1 + 32 + 32 + 6 + 16 + 8 + 8 + 32;
        // A bad name, versions 1, 2 and 4, device type 5, a report hash
        // with report kind 0.
        for (at, value) in [
            (name_at, 0xFF),
            (0, 1),
            (0, 2),
            (0, 4),
            (name_at + 64 + 16, 5),
            (322, 1),
        ] {
            let mut payload = e.encode_payload();
            payload[at] = value;
            assert_eq!(
                Evidence::decode_payload(&payload),
                Err(VerifyError::Malformed)
            );
            let mut out = [0u8; EVIDENCE_LEN];
            cose::sign(&mut s, EVIDENCE_DOMAIN, &payload, &mut out).unwrap();
            assert_eq!(
                Evidence::verify(&out, &[1; 32]),
                Err(VerifyError::Malformed)
            );
        }
    }
}
