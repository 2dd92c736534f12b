//! The attestation test vectors in `tests/vectors/`: every vector is rebuilt
//! here from fixed inputs and must equal the committed JSON, and every vector
//! is then run, from its JSON alone, through the verifiers: the valid ones must
//! verify to their readable form, the tampered ones must fail with their
//! `expect_error`.
//!
//! `TESSERA_BLESS=1 cargo test -p tessera-core --test attest_vectors` rewrites
//! the files after an intended change. `ci/verify_vectors.py` checks the same
//! files with an independent implementation.
#![cfg(feature = "std")]

use serde_json::{json, Value};
use tessera_core::attest::{
    batch_leaf, batched_link, kernel_hash, result_hash, result_seal, sha256, sign_batch,
    verify_output_chunk, write_batched, BatchPath, BatchedReceipt, ChainState, DeviceCapabilities,
    DeviceType, Ed25519Signer, Evidence, HardwareReport, HardwareReportError, HardwareReportKind,
    HardwareReportVerifier, Receipt, ReceiptBatch, ReceiptStatus, ReceiptVerifier, Signer,
    VerifyError, BATCHED_RECEIPT_MAX_LEN, BATCH_LEN, EVIDENCE_LEN, RECEIPT_LEN,
    RECEIPT_PAYLOAD_LEN,
};
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::merkle;
use tessera_core::wire::{features, BufferSpec, Digest, FailReason, Usage};

// ---------------------------------------------------------------- helpers --

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn unhex_n<const N: usize>(v: &Value) -> [u8; N] {
    unhex(v.as_str().expect("hex string"))
        .try_into()
        .expect("hex of the right length")
}

fn error_name(e: VerifyError) -> &'static str {
    match e {
        VerifyError::Malformed => "Malformed",
        VerifyError::BadSignature => "BadSignature",
        VerifyError::UnknownKey => "UnknownKey",
        VerifyError::WrongNonce => "WrongNonce",
        VerifyError::Replayed => "Replayed",
        VerifyError::OutOfOrder => "OutOfOrder",
        VerifyError::BrokenChain => "BrokenChain",
        VerifyError::ChunkProofMismatch => "ChunkProofMismatch",
        other => panic!("no vector name for {other:?}"),
    }
}

/// The documented data generator: byte `i` is `(i * 31 + 7) mod 251`.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Key A's seed is the bytes 0, 1, .., 31; key B's is 32, 33, .., 63.
fn seed(key: &str) -> [u8; 32] {
    let base = match key {
        "key-a" => 0u8,
        "key-b" => 32,
        _ => panic!("no key {key}"),
    };
    core::array::from_fn(|i| base + i as u8)
}

fn signer(key: &str) -> Ed25519Signer {
    Ed25519Signer::from_seed(&seed(key)).expect("seed")
}

fn public_key(key: &str) -> [u8; 32] {
    signer(key).public_key()
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[at] ^= 0x01;
    v
}

fn chain_json(c: ChainState) -> Value {
    json!({ "next_sequence": c.next_sequence, "prev_hash": hex(&c.prev_hash) })
}

fn chain_from(v: &Value) -> ChainState {
    ChainState {
        next_sequence: v["next_sequence"].as_u64().expect("next_sequence"),
        prev_hash: unhex_n(&v["prev_hash"]),
    }
}

// ------------------------------------------------------------------- keys --

fn build_keys() -> Value {
    let mut out = vec![];
    for key in ["key-a", "key-b"] {
        let s = signer(key);
        out.push(json!({
            "name": key,
            "seed": hex(&seed(key)),
            "public_key": hex(&s.public_key()),
            "key_id": hex(&s.key_id()),
            "hex": hex(&s.public_key()),
        }));
    }
    Value::Array(out)
}

// --------------------------------------------------------------- evidence --

const CHALLENGE: [u8; 32] = [0xC4; 32];

/// Key B's evidence names a hardware report: these bytes stand for one (a
/// TPM quote), and the vector carries them so a checker recomputes the
/// slot's hash and the nonce the report binds.
const SAMPLE_REPORT: &[u8] = b"a TPM 2.0 quote over the hardware nonce stands here";

/// The session encryption key the sample evidence states: the X25519 key
/// of `e2e.json`'s "sealed-inputs" recipient (DeriveKeyPair of 32 bytes
/// 0x11).
fn sample_enc_key() -> [u8; 32] {
    unhex_n(&json!(
        "1a239249ea74403babc01f32df9931a16f71ac8972c461d69fed15640e310639"
    ))
}

fn sample_evidence(key: &str) -> Evidence {
    let mut name = tessera_core::bounded::BoundedString::new();
    name.push_str("Tessera Test GPU").expect("short name");
    Evidence {
        challenge: CHALLENGE,
        public_key: public_key(key),
        agent_version: [0, 1, 0],
        boot_id: core::array::from_fn(|i| 0xB0 + i as u8),
        issued_at: 1_764_000_000_000_000,
        chain: ChainState {
            next_sequence: 4,
            prev_hash: core::array::from_fn(|i| 0x40 + i as u8),
        },
        capabilities: DeviceCapabilities {
            name,
            vendor_id: 0x10DE,
            device_id: 0x2684,
            driver_version: 0x8C20_0000,
            api_version: (1 << 22) | (3 << 12) | 280,
            device_type: DeviceType::DiscreteGpu,
            features: features::FLOAT16
                | features::INT8
                | features::INT64
                | features::ROBUST_BUFFER_ACCESS,
            device_local_bytes: 24 << 30,
            host_visible_bytes: 256 << 20,
            max_workgroup_size: [1024, 1024, 64],
            max_workgroup_count: [2_147_483_647, 65535, 65535],
            max_invocations: 1024,
            max_shared_memory: 49152,
            max_storage_buffer_range: 4_294_967_295,
            subgroup_size: 32,
            copy_mbps: 912_000,
            fma_mflops: 82_600_000,
        },
        enc_key: sample_enc_key(),
        hardware_report: if key == "key-b" {
            HardwareReport {
                kind: HardwareReportKind::TPM2_QUOTE,
                hash: sha256(SAMPLE_REPORT),
            }
        } else {
            HardwareReport::NONE
        },
    }
}

fn evidence_json(e: &Evidence) -> Value {
    let c = &e.capabilities;
    json!({
        "version": 3,
        "challenge": hex(&e.challenge),
        "public_key": hex(&e.public_key),
        "agent_version": e.agent_version,
        "boot_id": hex(&e.boot_id),
        "issued_at": e.issued_at,
        "chain": {
            "next_sequence": e.chain.next_sequence,
            "prev_hash": hex(&e.chain.prev_hash),
        },
        "capabilities": {
            "name": c.name.as_str(),
            "vendor_id": c.vendor_id,
            "device_id": c.device_id,
            "driver_version": c.driver_version,
            "api_version": c.api_version,
            "device_type": c.device_type as u8,
            "features": c.features,
            "device_local_bytes": c.device_local_bytes,
            "host_visible_bytes": c.host_visible_bytes,
            "max_workgroup_size": c.max_workgroup_size,
            "max_workgroup_count": c.max_workgroup_count,
            "max_invocations": c.max_invocations,
            "max_shared_memory": c.max_shared_memory,
            "max_storage_buffer_range": c.max_storage_buffer_range,
            "subgroup_size": c.subgroup_size,
            "copy_mbps": c.copy_mbps,
            "fma_mflops": c.fma_mflops,
        },
        "enc_key": hex(&e.enc_key),
        "hardware_report": {
            "kind": e.hardware_report.kind.0,
            "hash": hex(&e.hardware_report.hash),
        },
    })
}

fn sign_evidence(e: &Evidence, key: &str) -> Vec<u8> {
    let mut out = [0u8; EVIDENCE_LEN];
    let n = e.sign(&mut signer(key), &mut out).expect("sign");
    out[..n].to_vec()
}

/// The signed evidence of key A that the receipts name.
fn evidence_a() -> Vec<u8> {
    sign_evidence(&sample_evidence("key-a"), "key-a")
}

fn build_evidence() -> Value {
    let e = sample_evidence("key-a");
    let good = evidence_a();
    let sig: [u8; 64] = good[EVIDENCE_LEN - 64..].try_into().expect("64");
    let mut out = vec![json!({
        "name": "evidence-a",
        "key": "key-a",
        "challenge": hex(&CHALLENGE),
        "evidence": evidence_json(&e),
        "key_id": hex(&signer("key-a").key_id()),
        "signature": hex(&sig),
        "hash": hex(&sha256(&good)),
        "hex": hex(&good),
    })];
    let e_b = sample_evidence("key-b");
    let good_b = sign_evidence(&e_b, "key-b");
    let sig_b: [u8; 64] = good_b[EVIDENCE_LEN - 64..].try_into().expect("64");
    out.push(json!({
        "name": "evidence-b",
        "key": "key-b",
        "challenge": hex(&CHALLENGE),
        "evidence": evidence_json(&e_b),
        "key_id": hex(&signer("key-b").key_id()),
        "signature": hex(&sig_b),
        "hash": hex(&sha256(&good_b)),
        "hex": hex(&good_b),
        "hardware_report_bytes": hex(SAMPLE_REPORT),
        "hardware_report_nonce": hex(&e_b.hardware_report_nonce()),
    }));

    let mut tampered = |name: &str, tamper: &str, challenge: [u8; 32], bytes: &[u8], err| {
        out.push(json!({
            "name": name,
            "tamper": tamper,
            "challenge": hex(&challenge),
            "hex": hex(bytes),
            "expect_error": error_name(err),
        }));
    };
    tampered(
        "evidence-a-wrong-challenge",
        "evidence-a checked against another challenge",
        [0xC5; 32],
        &good,
        VerifyError::WrongNonce,
    );
    // Byte 28 + 87 is the first byte of issued_at.
    tampered(
        "evidence-a-flipped-issued-at",
        "bit 0 of byte 115 (issued_at) flipped",
        CHALLENGE,
        &flip(&good, 115),
        VerifyError::BadSignature,
    );
    tampered(
        "evidence-a-flipped-signature",
        "bit 0 of byte 400 (signature) flipped",
        CHALLENGE,
        &flip(&good, 400),
        VerifyError::BadSignature,
    );
    // Byte 28 + 322 is the first byte of the hardware report's hash.
    tampered(
        "evidence-a-report-hash-without-report",
        "bit 0 of byte 350 (hardware report hash, kind 0) flipped",
        CHALLENGE,
        &flip(&good, 350),
        VerifyError::Malformed,
    );
    tampered(
        "evidence-a-truncated",
        "last byte removed",
        CHALLENGE,
        &good[..EVIDENCE_LEN - 1],
        VerifyError::Malformed,
    );
    tampered(
        "evidence-a-flipped-public-key",
        "bit 0 of byte 61 (the payload's public key) flipped",
        CHALLENGE,
        &flip(&good, 61),
        VerifyError::UnknownKey,
    );
    let by_b = sign_evidence(&e, "key-b");
    tampered(
        "evidence-a-signed-by-key-b",
        "key A's evidence signed by key B (header key id B)",
        CHALLENGE,
        &by_b,
        VerifyError::UnknownKey,
    );
    let mut forged = by_b.clone();
    forged[9..25].copy_from_slice(&signer("key-a").key_id());
    tampered(
        "evidence-a-signed-by-key-b-claiming-key-a",
        "key A's evidence signed by key B, header key id rewritten to A's",
        CHALLENGE,
        &forged,
        VerifyError::BadSignature,
    );
    let receipt = receipts().remove(0).1;
    tampered(
        "receipt-1-as-evidence",
        "receipt-1 presented as evidence",
        CHALLENGE,
        &receipt,
        VerifyError::Malformed,
    );
    Value::Array(out)
}

// --------------------------------------------------------------- receipts --

/// What was dispatched, in the form `kernel_hash` takes.
struct Kernel {
    spirv_root: Digest,
    entry_point: &'static str,
    specialization: Vec<(u32, u32)>,
    push_constants: Vec<u8>,
    grid: [u32; 3],
    buffers: Vec<BufferSpec>,
}

impl Kernel {
    fn sample(job: u64) -> Kernel {
        Kernel {
            spirv_root: merkle::root_of(&data(Kernel::spirv_len(job))),
            entry_point: "main",
            specialization: vec![(0, 256), (1, job as u32)],
            push_constants: (0..16).map(|i| i * 3 + job as u8).collect(),
            grid: [64, job as u32, 1],
            buffers: layout(job),
        }
    }
    /// Bytes of job `job`'s SPIR-V: the generator's first ones.
    fn spirv_len(job: u64) -> usize {
        1000 + 4 * job as usize
    }
    fn hash(&self) -> Digest {
        kernel_hash(
            &self.spirv_root,
            self.entry_point,
            &self.specialization,
            &self.push_constants,
            self.grid,
            &self.buffers,
        )
    }
    fn json(&self) -> Value {
        json!({
            "spirv_len": Kernel::spirv_len(u64::from(self.grid[1])),
            "spirv_root": hex(&self.spirv_root),
            "entry_point": self.entry_point,
            "specialization": self.specialization.iter().map(|(i, v)| json!([i, v])).collect::<Vec<_>>(),
            "push_constants": hex(&self.push_constants),
            "grid": self.grid,
            "buffers": self.buffers.iter().map(|b| json!({
                "binding": b.binding,
                "len": b.len,
                "init_len": b.init_len,
                "readback": b.readback,
            })).collect::<Vec<_>>(),
        })
    }
    /// Bytes sent as input: the buffers' `init_len`, summed.
    fn input_len(&self) -> usize {
        self.buffers.iter().map(|b| b.init_len as usize).sum()
    }
    /// Bytes read back: the read-back buffers' `len`, summed.
    fn output_len(&self) -> usize {
        self.buffers
            .iter()
            .filter(|b| b.readback)
            .map(|b| b.len as usize)
            .sum()
    }
    /// The input buffers' contents: the generator's first `input_len()`
    /// bytes, cut by `init_len` in buffer order.
    fn input_root(&self) -> Digest {
        let all = data(self.input_len());
        let lens: Vec<usize> = self.buffers.iter().map(|b| b.init_len as usize).collect();
        merkle::root_of_buffers(split(&all, &lens))
    }
    /// The read-back buffers' contents: the generator's first `output_len()`
    /// bytes, cut by `len` in buffer order.
    fn output_root(&self) -> Digest {
        let all = data(self.output_len());
        let lens: Vec<usize> = self
            .buffers
            .iter()
            .filter(|b| b.readback)
            .map(|b| b.len as usize)
            .collect();
        merkle::root_of_buffers(split(&all, &lens))
    }
}

/// `all` cut into consecutive pieces of `lens` bytes.
fn split<'a>(all: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let mut at = 0;
    lens.iter()
        .map(|l| {
            at += l;
            &all[at - l..at]
        })
        .collect()
}

/// The buffer layout of each job of the chain: (binding, len, init_len,
/// readback). Job 1 has a partly initialized input and one output; job 2 one
/// buffer updated in place; job 3 two outputs, the first with a short last
/// chunk, so its output tree has more leaves than `output_len` has whole
/// chunks, and bindings with gaps (0, 2, 5).
fn layout(job: u64) -> Vec<BufferSpec> {
    const C: u64 = CHUNK_SIZE as u64;
    let spec: &[(u32, u64, u64, bool)] = match job {
        1 => &[(0, 32_768, 20_000, false), (1, 3 * C + 100, 0, true)],
        2 => &[(0, C, C, true)],
        3 => &[
            (0, 100, 100, false),
            (2, 3 * C + 100, 0, true),
            (5, 2 * C - 100, 0, true),
        ],
        _ => &[(0, 4096, 4096, false), (1, 4096, 0, true)],
    };
    spec.iter()
        .map(|&(binding, len, init_len, readback)| BufferSpec {
            binding,
            len,
            init_len,
            readback,
        })
        .collect()
}

/// The offer a job of the chain was accepted on, as the coordinator saw it:
/// what the receipt's price is checked against.
#[derive(Clone, Copy)]
struct Offer {
    max_price: u64,
    /// The provider's quote (`OfferAccept.price`).
    quote: u64,
    deadline_ms: u32,
}

impl Offer {
    /// Job 5 runs out its time: its offer gave it 2 s.
    fn of(job: u64) -> Offer {
        Offer {
            max_price: 1000,
            quote: 7 * job + 3,
            deadline_ms: if job == 5 { 2_000 } else { 60_000 },
        }
    }
    fn json(&self) -> Value {
        json!({
            "max_price": self.max_price,
            "quote": self.quote,
            "deadline_ms": self.deadline_ms,
        })
    }
}

/// A receipt of key A for `job`; inputs and outputs come from the job's
/// layout (`Kernel::input_root`, `Kernel::output_root`); a failed job has
/// no output. The price follows the rules a coordinator checks: a completed
/// job is charged within the maximum (here its quote), a timed-out one its
/// quote, any other failure 0. A timed-out job is metered to its deadline
/// (the offer arrived 200 ms before the start) and its timer fired 250 µs
/// after it. The usage counts the kernel and the initial data in, and the
/// output out (`docs/PROTOCOL.md`, "Outcome, usage, receipt and
/// acknowledgement").
fn sample_receipt(job: u64, status: ReceiptStatus, chain: ChainState) -> Receipt {
    let key = signer("key-a");
    let k = Kernel::sample(job);
    let kernel = k.hash();
    let input_len = k.input_len();
    let input_root = k.input_root();
    let (output_root, output_len) = match status {
        ReceiptStatus::Completed => (k.output_root(), k.output_len()),
        ReceiptStatus::Failed(_) => (merkle::empty_root(), 0),
    };
    let result = result_hash(&kernel, &input_root, &output_root, output_len as u64);
    let offer = Offer::of(job);
    let started_at = 1_764_000_001_000_000 + 10_000_000 * job;
    let (gpu_time_us, dispatches, price) = match status {
        ReceiptStatus::Completed => (1500 * job, job as u32, offer.quote),
        ReceiptStatus::Failed(FailReason::Timeout) => {
            (offer.deadline_ms as u64 * 1000 - 200_000, 0, offer.quote)
        }
        ReceiptStatus::Failed(_) => (1500 * job, job as u32, 0),
    };
    Receipt {
        status,
        job,
        requester_nonce: core::array::from_fn(|i| (job as u8).wrapping_mul(16) ^ i as u8),
        kernel_hash: kernel,
        input_root,
        output_root,
        output_len: output_len as u64,
        result_hash: result,
        result_seal: result_seal(&key.public_key(), job, &result),
        usage: Usage {
            gpu_time_us,
            dispatches,
            // The kernel and the initial data, as the agent counts them.
            bytes_in: (Kernel::spirv_len(job) + input_len) as u64,
            bytes_out: output_len as u64,
        },
        price,
        started_at,
        ended_at: started_at + gpu_time_us + 250,
        evidence_hash: sha256(&evidence_a()),
        key_id: key.key_id(),
        sequence: chain.next_sequence,
        prev_hash: chain.prev_hash,
    }
}

fn status_name(s: ReceiptStatus) -> String {
    match s {
        ReceiptStatus::Completed => "Completed".into(),
        ReceiptStatus::Failed(r) => format!("Failed({r:?})"),
    }
}

fn receipt_json(r: &Receipt) -> Value {
    json!({
        "version": 1,
        "status": r.status.code(),
        "status_name": status_name(r.status),
        "job": r.job,
        "requester_nonce": hex(&r.requester_nonce),
        "kernel_hash": hex(&r.kernel_hash),
        "input_root": hex(&r.input_root),
        "output_root": hex(&r.output_root),
        "output_len": r.output_len,
        "result_hash": hex(&r.result_hash),
        "result_seal": hex(&r.result_seal),
        "usage": {
            "gpu_time_us": r.usage.gpu_time_us,
            "dispatches": r.usage.dispatches,
            "bytes_in": r.usage.bytes_in,
            "bytes_out": r.usage.bytes_out,
        },
        "price": r.price,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "evidence_hash": hex(&r.evidence_hash),
        "key_id": hex(&r.key_id),
        "sequence": r.sequence,
        "prev_hash": hex(&r.prev_hash),
    })
}

fn sign_receipt(r: &Receipt, key: &str) -> Vec<u8> {
    let mut out = [0u8; RECEIPT_LEN];
    let n = r.sign(&mut signer(key), &mut out).expect("sign");
    out[..n].to_vec()
}

/// Jobs of the valid chain and how each ended; `layout` gives their buffers.
const JOBS: [(u64, ReceiptStatus); 5] = [
    (1, ReceiptStatus::Completed),
    (2, ReceiptStatus::Completed),
    (3, ReceiptStatus::Completed),
    (4, ReceiptStatus::Failed(FailReason::DeviceLost)),
    (5, ReceiptStatus::Failed(FailReason::Timeout)),
];

/// The valid chain of key A: receipts 1, 2, 3, the failed job 4 and the
/// timed-out job 5, each with the chain state before it.
fn receipts() -> Vec<(Receipt, Vec<u8>, ChainState)> {
    let mut chain = ChainState::default();
    let mut out = vec![];
    for (job, status) in JOBS {
        let r = sample_receipt(job, status, chain);
        let signed = sign_receipt(&r, "key-a");
        out.push((r, signed.clone(), chain));
        chain.advance(Receipt::hash(&signed));
    }
    out
}

/// A tampered receipt vector: what its verification is given, and the
/// error it must fail with.
fn tampered_json(
    name: &str,
    tamper: &str,
    key: &str,
    before: ChainState,
    nonce: Option<[u8; 32]>,
    bytes: &[u8],
    err: VerifyError,
) -> Value {
    json!({
        "name": name,
        "tamper": tamper,
        "public_key": hex(&public_key(key)),
        "chain_before": chain_json(before),
        "expected_nonce": nonce.map(|n| hex(&n)),
        "hex": hex(bytes),
        "expect_error": error_name(err),
    })
}

fn build_receipts() -> Value {
    let chain = receipts();
    let pk_a = hex(&public_key("key-a"));
    let mut out = vec![];
    for (r, signed, before) in &chain {
        let name = match r.status {
            ReceiptStatus::Completed => format!("receipt-{}", r.sequence),
            ReceiptStatus::Failed(FailReason::Timeout) => format!("receipt-{}-timeout", r.sequence),
            ReceiptStatus::Failed(_) => format!("receipt-{}-failed-job", r.sequence),
        };
        let sig: [u8; 64] = signed[RECEIPT_LEN - 64..].try_into().expect("64");
        out.push(json!({
            "name": name,
            "key": "key-a",
            "public_key": pk_a,
            "chain_before": chain_json(*before),
            "expected_nonce": hex(&r.requester_nonce),
            "input_len": Kernel::sample(r.job).input_len(),
            "kernel": Kernel::sample(r.job).json(),
            "offer": Offer::of(r.job).json(),
            "receipt": receipt_json(r),
            "signature": hex(&sig),
            "hash": hex(&Receipt::hash(signed)),
            "hex": hex(signed),
        }));
    }
    let after = |i: usize| {
        let mut c = chain[i].2;
        c.advance(Receipt::hash(&chain[i].1));
        c
    };
    let mut tampered = |name: &str,
                        tamper: &str,
                        key: &str,
                        before: ChainState,
                        nonce: Option<[u8; 32]>,
                        bytes: &[u8],
                        err| {
        out.push(tampered_json(name, tamper, key, before, nonce, bytes, err));
    };
    let r1 = &chain[0].1;
    let r2 = &chain[1].1;
    let r3 = &chain[2].1;
    tampered(
        "receipt-2-flipped-payload-byte",
        "bit 0 of byte 40 (requester nonce) flipped",
        "key-a",
        after(0),
        None,
        &flip(r2, 40),
        VerifyError::BadSignature,
    );
    tampered(
        "receipt-2-flipped-signature-byte",
        "bit 0 of byte 443 (last signature byte) flipped",
        "key-a",
        after(0),
        None,
        &flip(r2, 443),
        VerifyError::BadSignature,
    );
    tampered(
        "receipt-1-wrong-key",
        "receipt-1 checked against key B",
        "key-b",
        ChainState::default(),
        None,
        r1,
        VerifyError::UnknownKey,
    );
    tampered(
        "receipt-2-replayed",
        "receipt-2 presented again after it",
        "key-a",
        after(1),
        None,
        r2,
        VerifyError::Replayed,
    );
    tampered(
        "receipt-3-gap",
        "receipt-3 right after receipt-1 (receipt-2 missing)",
        "key-a",
        after(0),
        None,
        r3,
        VerifyError::OutOfOrder,
    );
    let broken = sample_receipt(
        2,
        ReceiptStatus::Completed,
        ChainState {
            next_sequence: 2,
            prev_hash: sha256(b"not receipt-1"),
        },
    );
    tampered(
        "receipt-2-broken-prev-hash",
        "a validly signed sequence 2 whose prev hash is SHA-256(\"not receipt-1\")",
        "key-a",
        after(0),
        None,
        &sign_receipt(&broken, "key-a"),
        VerifyError::BrokenChain,
    );
    tampered(
        "receipt-2-wrong-requester-nonce",
        "receipt-2 checked against another requester nonce",
        "key-a",
        after(0),
        Some([0x77; 32]),
        r2,
        VerifyError::WrongNonce,
    );
    tampered(
        "receipt-1-truncated",
        "last byte removed",
        "key-a",
        ChainState::default(),
        None,
        &r1[..RECEIPT_LEN - 1],
        VerifyError::Malformed,
    );
    let mut other_kid = chain[0].0;
    other_kid.key_id = signer("key-b").key_id();
    tampered(
        "receipt-1-payload-names-key-b",
        "signed by key A, payload key id is key B's",
        "key-a",
        ChainState::default(),
        None,
        &sign_receipt(&other_kid, "key-a"),
        VerifyError::UnknownKey,
    );
    let mut by_b = sign_receipt(&chain[0].0, "key-b");
    by_b[9..25].copy_from_slice(&signer("key-a").key_id());
    tampered(
        "receipt-1-signed-by-key-b-claiming-key-a",
        "receipt-1's payload signed by key B, header key id rewritten to A's",
        "key-a",
        ChainState::default(),
        None,
        &by_b,
        VerifyError::BadSignature,
    );
    tampered(
        "evidence-a-as-receipt",
        "evidence-a presented as a receipt",
        "key-a",
        ChainState::default(),
        None,
        &evidence_a(),
        VerifyError::Malformed,
    );
    Value::Array(out)
}

// ----------------------------------------------------------------- merkle --

fn leaves(buffers: &[&[u8]]) -> Vec<Digest> {
    buffers
        .iter()
        .flat_map(|b| b.chunks(CHUNK_SIZE).map(merkle::leaf_hash))
        .collect()
}

fn build_merkle() -> Value {
    let mut out = vec![];
    let sizes: [(&str, Vec<usize>); 10] = [
        ("root-0-chunks", vec![0]),
        ("root-1-byte", vec![1]),
        ("root-1-chunk", vec![CHUNK_SIZE]),
        ("root-2-chunks", vec![2 * CHUNK_SIZE]),
        ("root-3-chunks", vec![3 * CHUNK_SIZE]),
        ("root-5-chunks", vec![5 * CHUNK_SIZE]),
        ("root-8-chunks", vec![8 * CHUNK_SIZE]),
        ("root-3-chunks-short-last", vec![2 * CHUNK_SIZE + 1000]),
        ("root-4-chunks-short-last", vec![3 * CHUNK_SIZE + 100]),
        ("root-two-buffers", vec![CHUNK_SIZE + 10, 3]),
    ];
    for (name, lens) in sizes {
        let total: usize = lens.iter().sum();
        let all = data(total);
        let bufs = split(&all, &lens);
        let ls = leaves(&bufs);
        let root = merkle::root_of_buffers(bufs.iter().copied());
        if lens.len() == 1 {
            assert_eq!(root, merkle::root_of(&all));
        }
        out.push(json!({
            "name": name,
            "length": total,
            "buffers": lens,
            "leaves": ls.iter().map(|l| hex(l)).collect::<Vec<_>>(),
            "root": hex(&root),
            "hex": hex(&root),
        }));
    }

    // Proofs: `buffers` are the read-back buffers' lengths (their contents
    // the generator's bytes, cut in order); `leaf_count` is the exact tree
    // size a verifier derives from that layout.
    let proof_json = |name: &str,
                      lens: &[usize],
                      index: u64,
                      p: &merkle::Proof,
                      err: Option<VerifyError>,
                      tamper: Option<&str>,
                      chunk_flip: Option<usize>,
                      chunk_index: u64| {
        let all = data(lens.iter().sum());
        let bufs = split(&all, lens);
        let ls = leaves(&bufs);
        let path: Vec<u8> = p.path.iter().flatten().copied().collect();
        let mut v = json!({
            "name": name,
            "length": all.len(),
            "buffers": lens,
            "leaf_count": merkle::output_leaf_count(&readback_layout(lens)),
            "root": hex(&merkle::root_of_buffers(bufs.iter().copied())),
            "chunk_index": chunk_index,
            "leaf_hash": hex(&ls[chunk_index as usize]),
            "index": index,
            "tree_size": p.tree_size,
            "path": p.path.iter().map(|d| hex(d)).collect::<Vec<_>>(),
            "hex": hex(&path),
        });
        if let Some(off) = chunk_flip {
            v["chunk_flip"] = json!(off);
            v.as_object_mut().expect("object").remove("leaf_hash");
        }
        if let Some(t) = tamper {
            v["tamper"] = json!(t);
        }
        if let Some(e) = err {
            v["expect_error"] = json!(error_name(e));
        }
        v
    };
    let cases: [(&[usize], u64); 11] = [
        (&[CHUNK_SIZE], 0),
        (&[5 * CHUNK_SIZE], 0),
        (&[5 * CHUNK_SIZE], 2),
        (&[5 * CHUNK_SIZE], 4),
        (&[8 * CHUNK_SIZE], 3),
        (&[8 * CHUNK_SIZE], 7),
        (&[3 * CHUNK_SIZE + 100], 1),
        (&[3 * CHUNK_SIZE + 100], 3),
        (&[2 * CHUNK_SIZE + 1000], 2),
        (&[CHUNK_SIZE + 10, 3], 1),
        (&[CHUNK_SIZE + 10, 3], 2),
    ];
    for (lens, index) in cases {
        let all = data(lens.iter().sum());
        let ls = leaves(&split(&all, lens));
        let p = merkle::prove(&ls, index).expect("index in range");
        let name = if lens.len() == 1 {
            format!("proof-{}-of-{}-leaves-{}-bytes", index, ls.len(), all.len())
        } else {
            format!(
                "proof-{}-of-{}-leaves-{}-buffers",
                index,
                ls.len(),
                lens.len()
            )
        };
        out.push(proof_json(&name, lens, index, &p, None, None, None, index));
    }

    // Bad proofs, all ChunkProofMismatch.
    let lens = [5 * CHUNK_SIZE];
    let ls = leaves(&[&data(lens[0])]);
    let good2 = merkle::prove(&ls, 2).expect("in range");
    let mut flipped = good2.clone();
    flipped.path[1][0] ^= 0x01;
    let bad = Some(VerifyError::ChunkProofMismatch);
    out.push(proof_json(
        "bad-proof-flipped-path-byte",
        &lens,
        2,
        &flipped,
        bad,
        Some("bit 0 of the first byte of path[1] flipped"),
        None,
        2,
    ));
    out.push(proof_json(
        "bad-proof-wrong-chunk",
        &lens,
        2,
        &good2,
        bad,
        Some("chunk 3 presented with chunk 2's proof"),
        None,
        3,
    ));
    out.push(proof_json(
        "bad-proof-flipped-chunk-byte",
        &lens,
        2,
        &good2,
        bad,
        Some("bit 0 of byte 100 of chunk 2 flipped"),
        Some(100),
        2,
    ));
    let mut wrong_index = good2.clone();
    wrong_index.index = 3;
    out.push(proof_json(
        "bad-proof-wrong-index",
        &lens,
        3,
        &wrong_index,
        bad,
        Some("chunk 2's proof claiming index 3"),
        None,
        2,
    ));
    let mut short = good2.clone();
    short.path.pop();
    out.push(proof_json(
        "bad-proof-path-too-short",
        &lens,
        2,
        &short,
        bad,
        Some("last path entry removed"),
        None,
        2,
    ));
    let mut misplaced = merkle::prove(&ls, 4).expect("in range");
    misplaced.index = 1;
    misplaced.tree_size = 2;
    out.push(proof_json(
        "bad-proof-misplaced-by-tree-size",
        &lens,
        1,
        &misplaced,
        bad,
        Some("chunk 4's path (which alone leads to the root) read as leaf 1 of a 2-leaf tree"),
        None,
        4,
    ));
    // Two read-back buffers, 8202 and 3 bytes: three leaves, while 8205
    // bytes in one buffer would be two. The last leaf's path also reads as
    // leaf 1 of a 2-leaf tree; only the layout's exact count refuses it.
    let lens = [CHUNK_SIZE + 10, 3];
    let all = data(lens.iter().sum());
    let ls = leaves(&split(&all, &lens));
    let mut misplaced = merkle::prove(&ls, 2).expect("in range");
    misplaced.index = 1;
    misplaced.tree_size = 2;
    out.push(proof_json(
        "bad-proof-misplaced-across-buffers",
        &lens,
        1,
        &misplaced,
        bad,
        Some("leaf 2 (buffer 1's only chunk) and its path read as leaf 1 of a 2-leaf tree, a size the output length alone allows"),
        None,
        2,
    ));
    Value::Array(out)
}

/// A layout of read-back buffers of `lens` bytes.
fn readback_layout(lens: &[usize]) -> Vec<BufferSpec> {
    lens.iter()
        .enumerate()
        .map(|(i, &l)| BufferSpec {
            binding: i as u32,
            len: l as u64,
            init_len: 0,
            readback: true,
        })
        .collect()
}

// ----------------------------------------------------- the vector runners --

/// Runs each evidence vector through `Evidence::verify`.
/// A verifier without any vendor's check.
struct NoVendor;

impl HardwareReportVerifier for NoVendor {
    fn verify(
        &self,
        _: HardwareReportKind,
        _: &[u8],
        _: &[u8; 32],
    ) -> Result<(), HardwareReportError> {
        Err(HardwareReportError::UnsupportedKind)
    }
}

fn run_evidence(vectors: &Value) -> usize {
    let mut n = 0;
    for v in vectors.as_array().expect("array") {
        let bytes = unhex(v["hex"].as_str().expect("hex"));
        let challenge = unhex_n(&v["challenge"]);
        let got = Evidence::verify(&bytes, &challenge);
        match v.get("expect_error") {
            Some(e) => {
                assert_eq!(
                    got.map(|_| ()).map_err(error_name),
                    Err(e.as_str().expect("name")),
                    "{}",
                    v["name"]
                );
            }
            None => {
                let e = got.unwrap_or_else(|e| panic!("{}: {e:?}", v["name"]));
                assert_eq!(evidence_json(&e), v["evidence"], "{}", v["name"]);
                assert_eq!(hex(&Evidence::hash(&bytes)), v["hash"], "{}", v["name"]);
                if let Some(report) = v.get("hardware_report_bytes") {
                    let report = unhex(report.as_str().expect("hex"));
                    let nonce = unhex_n(&v["hardware_report_nonce"]);
                    assert_eq!(e.hardware_report_nonce(), nonce, "{}", v["name"]);
                    // A vendor's check that accepts a report of its kind
                    // made for the nonce it is given.
                    struct Vendor([u8; 32]);
                    impl HardwareReportVerifier for Vendor {
                        fn verify(
                            &self,
                            kind: HardwareReportKind,
                            _report: &[u8],
                            nonce: &[u8; 32],
                        ) -> Result<(), HardwareReportError> {
                            if kind != HardwareReportKind::TPM2_QUOTE {
                                return Err(HardwareReportError::UnsupportedKind);
                            }
                            if nonce != &self.0 {
                                return Err(HardwareReportError::Rejected);
                            }
                            Ok(())
                        }
                    }
                    assert_eq!(e.check_hardware_report(&report, &Vendor(nonce)), Ok(()));
                    assert_eq!(
                        e.check_hardware_report(&report[1..], &Vendor(nonce)),
                        Err(HardwareReportError::HashMismatch)
                    );
                    assert_eq!(
                        e.check_hardware_report(&report, &Vendor([0; 32])),
                        Err(HardwareReportError::Rejected)
                    );
                } else {
                    assert_eq!(
                        e.check_hardware_report(b"", &NoVendor),
                        Err(HardwareReportError::Absent)
                    );
                }
            }
        }
        n += 1;
    }
    n
}

/// Runs each receipt vector through a `ReceiptVerifier` at its chain state.
/// A receipt vector's bytes, a verifier at its chain position for its key,
/// and the requester nonce to check, if any.
fn receipt_context(v: &Value) -> (Vec<u8>, ReceiptVerifier, Option<[u8; 32]>) {
    let bytes = unhex(v["hex"].as_str().expect("hex"));
    let verifier = ReceiptVerifier::new(unhex_n(&v["public_key"]), chain_from(&v["chain_before"]));
    let nonce = v["expected_nonce"]
        .as_str()
        .map(|_| unhex_n(&v["expected_nonce"]));
    (bytes, verifier, nonce)
}

/// A receipt vector's verdict: a tampered one must fail with its
/// `expect_error` (`None`); a valid one must verify to its readable form
/// and move the chain to its `hash` (the receipt).
fn checked(
    v: &Value,
    got: Result<Receipt, VerifyError>,
    verifier: &ReceiptVerifier,
) -> Option<Receipt> {
    if let Some(e) = v.get("expect_error") {
        assert_eq!(
            got.map(|_| ()).map_err(error_name),
            Err(e.as_str().expect("name")),
            "{}",
            v["name"]
        );
        return None;
    }
    let r = got.unwrap_or_else(|e| panic!("{}: {e:?}", v["name"]));
    assert_eq!(receipt_json(&r), v["receipt"], "{}", v["name"]);
    assert_eq!(verifier.chain().prev_hash, unhex_n::<32>(&v["hash"]));
    Some(r)
}

fn run_receipts(vectors: &Value) -> usize {
    let mut n = 0;
    for v in vectors.as_array().expect("array") {
        let (bytes, mut verifier, nonce) = receipt_context(v);
        let got = verifier.verify_next(&bytes, nonce.as_ref());
        match checked(v, got, &verifier) {
            None => {}
            Some(r) => {
                // The price rules a coordinator checks against the offer.
                let offer = &v["offer"];
                let quote = offer["quote"].as_u64().expect("quote");
                let max_price = offer["max_price"].as_u64().expect("max_price");
                let deadline_us = offer["deadline_ms"].as_u64().expect("deadline_ms") * 1000;
                assert!(quote <= max_price, "{}", v["name"]);
                match r.status {
                    ReceiptStatus::Completed => assert!(r.price <= max_price),
                    ReceiptStatus::Failed(FailReason::Timeout) => {
                        assert_eq!(r.price, quote, "{}", v["name"]);
                        assert!(r.usage.gpu_time_us <= deadline_us, "{}", v["name"]);
                    }
                    ReceiptStatus::Failed(_) => assert_eq!(r.price, 0, "{}", v["name"]),
                }
            }
        }
        n += 1;
    }
    n
}

/// Runs each Merkle vector: roots through `root_of_buffers`, proofs through
/// `verify_output_chunk` against a receipt with that output, with the leaf
/// count derived from the vector's buffer lengths.
fn run_merkle(vectors: &Value) -> usize {
    let mut n = 0;
    for v in vectors.as_array().expect("array") {
        let len = v["length"].as_u64().expect("length") as usize;
        let all = data(len);
        let lens: Vec<usize> = v["buffers"]
            .as_array()
            .expect("buffers")
            .iter()
            .map(|l| l.as_u64().expect("len") as usize)
            .collect();
        let bufs = split(&all, &lens);
        let root = merkle::root_of_buffers(bufs.iter().copied());
        assert_eq!(hex(&root), v["root"], "{}", v["name"]);
        if v.get("path").is_none() {
            n += 1;
            continue;
        }
        let leaf_count = merkle::output_leaf_count(&readback_layout(&lens));
        assert_eq!(v["leaf_count"], leaf_count, "{}", v["name"]);
        let mut receipt = receipts()[0].0;
        receipt.output_root = root;
        receipt.output_len = len as u64;
        let chunk_index = v["chunk_index"].as_u64().expect("chunk_index") as usize;
        let mut chunk = bufs
            .iter()
            .flat_map(|b| b.chunks(CHUNK_SIZE))
            .nth(chunk_index)
            .expect("chunk")
            .to_vec();
        if let Some(off) = v.get("chunk_flip") {
            chunk[off.as_u64().expect("offset") as usize] ^= 0x01;
        }
        let mut path = tessera_core::bounded::BoundedVec::new();
        for d in v["path"].as_array().expect("path") {
            path.push(unhex_n::<32>(d)).expect("path fits");
        }
        let proof = merkle::Proof {
            index: v["index"].as_u64().expect("index"),
            tree_size: v["tree_size"].as_u64().expect("tree_size"),
            path,
        };
        let got = verify_output_chunk(&receipt, leaf_count, &chunk, &proof);
        match v.get("expect_error") {
            Some(e) => assert_eq!(
                got.map_err(error_name),
                Err(e.as_str().expect("name")),
                "{}",
                v["name"]
            ),
            None => assert_eq!(got, Ok(()), "{}", v["name"]),
        }
        n += 1;
    }
    n
}

// ------------------------------------------------------------------ tests --

fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Keys first in this order, the rest alphabetically, `hex` last: the name
/// and what is tampered read first.
fn key_rank(key: &str) -> (u8, &str) {
    match key {
        "name" => (0, ""),
        "tamper" => (1, ""),
        "expect_error" => (2, ""),
        "hex" => (4, ""),
        other => (3, other),
    }
}

/// Pretty JSON with two-space indents, keys in `key_rank` order, and arrays
/// of numbers on one line.
fn write_json(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| " ".repeat(n);
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| key_rank(k));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                out.push_str(&serde_json::to_string(k).expect("key"));
                out.push_str(": ");
                write_json(&map[k.as_str()], indent + 2, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(items) if items.iter().all(|x| x.is_number()) => {
            out.push_str(&serde_json::to_string(v).expect("array").replace(',', ", "));
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, x) in items.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                write_json(x, indent + 2, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        leaf => out.push_str(&serde_json::to_string(leaf).expect("leaf")),
    }
}

/// Compares a rebuilt vector file with the committed one, byte for byte, or
/// rewrites it under `TESSERA_BLESS=1`. Returns the committed vectors.
fn committed(file: &str, rebuilt: Value) -> Value {
    let path = vectors_dir().join(file);
    let mut text = String::new();
    write_json(&rebuilt, 0, &mut text);
    text.push('\n');
    if std::env::var_os("TESSERA_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(vectors_dir()).expect("mkdir");
        std::fs::write(&path, &text).expect("write");
    }
    let on_disk_text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TESSERA_BLESS=1 writes it)", path.display()));
    let on_disk: Value = serde_json::from_str(&on_disk_text).expect("valid JSON");
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x["name"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&on_disk), names(&rebuilt), "{file}: vector names");
    for (a, b) in on_disk
        .as_array()
        .unwrap()
        .iter()
        .zip(rebuilt.as_array().unwrap())
    {
        assert_eq!(
            a, b,
            "{file}: vector {} differs from the rebuilt one",
            a["name"]
        );
    }
    assert!(
        on_disk_text == text,
        "{file}: same vectors, other formatting (TESSERA_BLESS=1 rewrites it)"
    );
    on_disk
}

#[test]
fn key_vectors() {
    let v = committed("keys.json", build_keys());
    for k in v.as_array().unwrap() {
        let seed: [u8; 32] = unhex_n(&k["seed"]);
        let pk: [u8; 32] = unhex_n(&k["public_key"]);
        let s = Ed25519Signer::from_seed_and_public_key(&seed, &pk).expect("matching key");
        assert_eq!(hex(&s.key_id()), k["key_id"]);
    }
}

#[test]
fn evidence_vectors() {
    let v = committed("evidence.json", build_evidence());
    assert_eq!(run_evidence(&v), v.as_array().unwrap().len());
}

#[test]
fn receipt_vectors() {
    let v = committed("receipts.json", build_receipts());
    assert_eq!(run_receipts(&v), v.as_array().unwrap().len());
    // The valid ones form one chain when verified in a row.
    let mut verifier = ReceiptVerifier::new(public_key("key-a"), ChainState::default());
    for (_, signed, _) in receipts() {
        verifier.verify_next(&signed, None).expect("chain");
    }
    assert_eq!(verifier.chain().next_sequence, 6);
}

#[test]
fn merkle_vectors() {
    let v = committed("merkle.json", build_merkle());
    assert_eq!(run_merkle(&v), v.as_array().unwrap().len());
}

// ------------------------------------------------------- batched receipts --

/// The batched-receipt chain of key A: job 1 signed alone, jobs 2, 3 and 4
/// (4 failed) in a batch of three, job 5 (timed out) in a batch of one.
/// Each: the receipt, its signed form, whether batched, the chain before it
/// and its link.
fn batch_chain() -> Vec<(Receipt, Vec<u8>, bool, ChainState, Digest)> {
    let mut chain = ChainState::default();
    let mut out = vec![];
    let first = sample_receipt(1, ReceiptStatus::Completed, chain);
    let signed = sign_receipt(&first, "key-a");
    let link = Receipt::hash(&signed);
    out.push((first, signed, false, chain, link));
    chain.advance(link);
    for jobs in [&JOBS[1..4], &JOBS[4..5]] {
        let mut payloads = vec![];
        let mut befores = vec![];
        for &(job, status) in jobs {
            let r = sample_receipt(job, status, chain);
            let p = r.encode_payload();
            befores.push(chain);
            chain.advance(batched_link(&p));
            payloads.push((r, p));
        }
        let leaves: Vec<Digest> = payloads.iter().map(|(_, p)| batch_leaf(p)).collect();
        let mut statement = [0u8; BATCH_LEN];
        let first = payloads[0].0.sequence;
        let mut paths = vec![BatchPath::new(); leaves.len()];
        sign_batch(
            &mut signer("key-a"),
            first,
            &leaves,
            &mut paths,
            &mut statement,
        )
        .expect("sign");
        for (i, (r, p)) in payloads.into_iter().enumerate() {
            let mut buf = [0u8; BATCHED_RECEIPT_MAX_LEN];
            let n = write_batched(&statement, i as u32, &paths[i], &p, &mut buf).expect("fits");
            out.push((r, buf[..n].to_vec(), true, befores[i], batched_link(&p)));
        }
    }
    out
}

fn statement_json(b: &ReceiptBatch) -> Value {
    json!({
        "version": 1,
        "key_id": hex(&b.key_id),
        "first_sequence": b.first_sequence,
        "count": b.count,
        "root": hex(&b.root),
    })
}

fn build_batches() -> Value {
    let chain = batch_chain();
    let pk_a = hex(&public_key("key-a"));
    let mut out = vec![];
    for (r, signed, batched, before, link) in &chain {
        let name = match r.status {
            ReceiptStatus::Completed => format!("receipt-{}", r.sequence),
            ReceiptStatus::Failed(FailReason::Timeout) => format!("receipt-{}-timeout", r.sequence),
            ReceiptStatus::Failed(_) => format!("receipt-{}-failed-job", r.sequence),
        };
        let mut v = json!({
            "name": format!("{}-{name}", if *batched { "batched" } else { "alone" }),
            "form": if *batched { "batched" } else { "alone" },
            "key": "key-a",
            "public_key": pk_a,
            "chain_before": chain_json(*before),
            "expected_nonce": hex(&r.requester_nonce),
            "input_len": Kernel::sample(r.job).input_len(),
            "kernel": Kernel::sample(r.job).json(),
            "offer": Offer::of(r.job).json(),
            "receipt": receipt_json(r),
            "hash": hex(link),
            "hex": hex(signed),
        });
        if *batched {
            let parts = BatchedReceipt::parse(signed).expect("batched");
            let statement =
                ReceiptBatch::verify(parts.batch, &public_key("key-a")).expect("statement");
            v["statement"] = statement_json(&statement);
            v["index"] = json!(parts.index);
            v["path"] = json!(parts.path.chunks(32).map(hex).collect::<Vec<_>>());
        }
        out.push(v);
    }
    let after = |i: usize| {
        let mut c = chain[i].3;
        c.advance(chain[i].4);
        c
    };
    let mut tampered = |name: &str,
                        tamper: &str,
                        key: &str,
                        before: ChainState,
                        nonce: Option<[u8; 32]>,
                        bytes: &[u8],
                        err| {
        let mut v = tampered_json(name, tamper, key, before, nonce, bytes, err);
        v["form"] = json!("batched");
        out.push(v);
    };
    // Receipt 3 is the middle of the batch of three: index 1, path of 2.
    let b3 = &chain[2].1;
    let payload_at = b3.len() - RECEIPT_PAYLOAD_LEN;
    tampered(
        "batched-3-flipped-payload-byte",
        "bit 0 of payload byte 40 (requester nonce) flipped",
        "key-a",
        after(1),
        None,
        &flip(b3, payload_at + 40),
        VerifyError::BadSignature,
    );
    tampered(
        "batched-3-flipped-path-byte",
        "bit 0 of the first audit path byte flipped",
        "key-a",
        after(1),
        None,
        &flip(b3, BATCH_LEN + 5),
        VerifyError::BadSignature,
    );
    tampered(
        "batched-3-flipped-statement-signature",
        "bit 0 of the statement's last signature byte flipped",
        "key-a",
        after(1),
        None,
        &flip(b3, BATCH_LEN - 1),
        VerifyError::BadSignature,
    );
    let mut moved = b3.clone();
    moved[BATCH_LEN..BATCH_LEN + 4].copy_from_slice(&0u32.to_le_bytes());
    tampered(
        "batched-3-at-index-0",
        "index rewritten from 1 to 0: sequence 3 is not the batch's first",
        "key-a",
        after(1),
        None,
        &moved,
        VerifyError::Malformed,
    );
    let mut past = b3.clone();
    past[BATCH_LEN..BATCH_LEN + 4].copy_from_slice(&3u32.to_le_bytes());
    tampered(
        "batched-3-index-past-the-batch",
        "index rewritten from 1 to 3 in a batch of 3",
        "key-a",
        after(1),
        None,
        &past,
        VerifyError::Malformed,
    );
    tampered(
        "batched-3-wrong-key",
        "batched receipt 3 checked against key B",
        "key-b",
        after(1),
        None,
        b3,
        VerifyError::UnknownKey,
    );
    tampered(
        "batched-3-replayed",
        "batched receipt 3 presented again after it",
        "key-a",
        after(2),
        None,
        b3,
        VerifyError::Replayed,
    );
    tampered(
        "batched-4-gap",
        "batched receipt 4 right after receipt 2 (3 missing)",
        "key-a",
        after(1),
        None,
        &chain[3].1,
        VerifyError::OutOfOrder,
    );
    let mut forked = after(1);
    forked.prev_hash = sha256(b"not the chain");
    tampered(
        "batched-3-broken-prev-hash",
        "batched receipt 3 against a chain whose last link is SHA-256(\"not the chain\")",
        "key-a",
        forked,
        None,
        b3,
        VerifyError::BrokenChain,
    );
    tampered(
        "batched-3-wrong-requester-nonce",
        "batched receipt 3 checked against another requester nonce",
        "key-a",
        after(1),
        Some([0x77; 32]),
        b3,
        VerifyError::WrongNonce,
    );
    tampered(
        "batched-3-truncated",
        "last byte removed",
        "key-a",
        after(1),
        None,
        &b3[..b3.len() - 1],
        VerifyError::Malformed,
    );
    tampered(
        "alone-receipt-1-as-batched",
        "receipt 1, signed alone (444 bytes), presented as batched",
        "key-a",
        ChainState::default(),
        None,
        &chain[0].1,
        VerifyError::Malformed,
    );
    // A statement of no receipts, signed by key A, with receipt 5's payload.
    let empty = ReceiptBatch {
        key_id: signer("key-a").key_id(),
        first_sequence: 5,
        count: 0,
        root: [0; 32],
    };
    let mut bytes = vec![0u8; BATCH_LEN];
    empty.sign(&mut signer("key-a"), &mut bytes).expect("sign");
    let b5 = &chain[4].1;
    bytes.extend_from_slice(&b5[BATCH_LEN..]);
    tampered(
        "batched-5-statement-of-no-receipts",
        "receipt 5 under a statement with count 0, signed by key A",
        "key-a",
        after(3),
        None,
        &bytes,
        VerifyError::Malformed,
    );
    Value::Array(out)
}

fn run_batches(vectors: &Value) -> usize {
    let mut n = 0;
    for v in vectors.as_array().expect("array") {
        let (bytes, mut verifier, nonce) = receipt_context(v);
        let got = match v["form"].as_str() {
            Some("batched") => verifier.verify_next_batched(&bytes, nonce.as_ref(), &mut None),
            _ => verifier.verify_next(&bytes, nonce.as_ref()),
        };
        checked(v, got, &verifier);
        n += 1;
    }
    n
}

#[test]
fn batched_receipt_vectors() {
    let v = committed("receipt_batches.json", build_batches());
    assert_eq!(run_batches(&v), v.as_array().unwrap().len());
    // The valid ones form one chain, alone and batched, verified in a row
    // with one statement slot (the batch's signature checked once).
    let mut verifier = ReceiptVerifier::new(public_key("key-a"), ChainState::default());
    let mut slot = None;
    for (_, signed, batched, _, _) in batch_chain() {
        if batched {
            verifier
                .verify_next_batched(&signed, None, &mut slot)
                .expect("chain");
        } else {
            verifier.verify_next(&signed, None).expect("chain");
        }
    }
    assert_eq!(verifier.chain().next_sequence, 6);
}

// ------------------------------------------------------ end-to-end sealing --

/// Sealed streams (`docs/PROTOCOL.md`, "End-to-end sealing").
#[cfg(feature = "e2e")]
mod sealed {
    use super::*;
    use tessera_core::e2e;

    /// The `info` of a vector's context, from its fields.
    fn vector_info(v: &Value) -> Vec<u8> {
        let device_key = unhex_n(&v["device_key"]);
        if v["direction"] == 0 {
            e2e::provider_info(&device_key).to_vec()
        } else {
            e2e::requester_info(&device_key, &unhex_n(&v["requester_enc"])).to_vec()
        }
    }

    /// One context sealed from fixed key material: the recipient's key pair
    /// and the ephemeral key come from their IKMs (HPKE's DeriveKeyPair), so
    /// the encapsulated key and every sealed byte are fixed. Its streams
    /// are one job's: exported under the job bytes (the nonce, and for
    /// outputs the salt after it).
    fn sealed_vector(
        name: &str,
        direction: e2e::Direction,
        recipient_ikm: [u8; 32],
        ephemeral_ikm: [u8; 32],
        streams: &[(u32, usize)],
    ) -> Value {
        let keys = e2e::KeyPair::derive(&recipient_ikm);
        let nonce = [0x5a; 32];
        let salt = [0x5b; e2e::OUTPUT_SALT_LEN];
        // Stands for a job's binding ("End-to-end sealing"): any 32 bytes.
        let binding = [0x5d; 32];
        let device_key = public_key("key-a");
        let requester_enc = [0x5c; 32];
        let mut v = json!({
            "name": name,
            "direction": direction as u8,
            "recipient_ikm": hex(&recipient_ikm),
            "recipient_public_key": hex(keys.public()),
            "ephemeral_ikm": hex(&ephemeral_ikm),
            "device_key": hex(&device_key),
        });
        let (job, n) = if direction == e2e::Direction::ToRequester {
            v["requester_enc"] = hex(&requester_enc).into();
            e2e::job_bytes(&nonce, &binding, Some(&salt))
        } else {
            e2e::job_bytes(&nonce, &binding, None)
        };
        let info = vector_info(&v);
        let (enc, sender) = e2e::Sender::new(keys.public(), &info, &ephemeral_ikm).expect("sender");
        let streams: Vec<Value> = streams
            .iter()
            .map(|&(stream, len)| {
                let plain = data(len);
                let sealed = sender
                    .stream(&job[..n], stream, len as u64)
                    .and_then(|k| k.seal(&plain))
                    .expect("seal");
                json!({"stream": stream, "plain_len": len, "sealed": hex(&sealed)})
            })
            .collect();
        v["info"] = hex(&info).into();
        v["job"] = hex(&job[..n]).into();
        v["enc"] = hex(&enc).into();
        v["streams"] = streams.into();
        v
    }

    fn build_e2e() -> Value {
        let inputs = sealed_vector(
            "sealed-inputs",
            e2e::Direction::ToProvider,
            [0x11; 32],
            [0x22; 32],
            // The kernel (stream 0) and a buffer of two segments, the last of
            // 100 bytes.
            &[(0, 40), (1, e2e::SEGMENT_PLAIN_LEN + 100)],
        );
        let outputs = sealed_vector(
            "sealed-outputs",
            e2e::Direction::ToRequester,
            [0x33; 32],
            [0x44; 32],
            &[(0, 1), (3, 300)],
        );
        // Tampered: the same inputs with their first two segments swapped in
        // stream 1, one byte of the kernel flipped, the kernel one byte short.
        let mut swapped = inputs.clone();
        let s1 = unhex(inputs["streams"][1]["sealed"].as_str().unwrap());
        let mut s1_swapped = s1[e2e::SEGMENT_LEN..].to_vec();
        s1_swapped.extend_from_slice(&s1[..e2e::SEGMENT_LEN]);
        swapped["name"] = "sealed-segments-reordered".into();
        swapped["streams"] = json!([{"stream": 1, "plain_len": inputs["streams"][1]["plain_len"], "sealed": hex(&s1_swapped)}]);
        swapped["expect_error"] = "Forged".into();
        let mut flipped = inputs.clone();
        let mut k = unhex(inputs["streams"][0]["sealed"].as_str().unwrap());
        k[3] ^= 0x80;
        flipped["name"] = "sealed-byte-flipped".into();
        flipped["streams"] = json!([{"stream": 0, "plain_len": 40, "sealed": hex(&k)}]);
        flipped["expect_error"] = "Forged".into();
        let mut short = inputs.clone();
        let k = unhex(inputs["streams"][0]["sealed"].as_str().unwrap());
        short["name"] = "sealed-stream-short".into();
        short["streams"] =
            json!([{"stream": 0, "plain_len": 40, "sealed": hex(&k[..k.len() - 1])}]);
        short["expect_error"] = "BadLength".into();
        let mut other_stream = inputs.clone();
        other_stream["name"] = "sealed-stream-renumbered".into();
        other_stream["streams"] =
            json!([{"stream": 5, "plain_len": 40, "sealed": inputs["streams"][0]["sealed"]}]);
        other_stream["expect_error"] = "Forged".into();
        json!([
            inputs,
            outputs,
            swapped,
            flipped,
            short,
            other_stream,
            sealed_job_vector()
        ])
    }

    /// A whole sealed job ("Sealed jobs"), every key and ephemeral from
    /// fixed bytes: the provider's session key, the requester's context,
    /// the assignment as sent, the provider's sealed outputs, and what its
    /// receipt binds (the sealed kernel hash, the keyed result hash).
    fn sealed_job_vector() -> Value {
        use tessera_core::wire::{JobAssign, KernelSpec};
        let provider = e2e::KeyPair::derive(&[0x11; 32]);
        let requester = e2e::KeyPair::derive(&[0x33; 32]);
        let device_key = public_key("key-a");
        let nonce = [0x5a; 32];
        let result_key = [0x77; 32];
        let kernel = data(64);
        let push = data(8);
        let input = data(300);
        let buffers =
            e2e::sealed_layout(&[(0, 300, 300, false), (1, 0, 200, true)]).expect("layout");
        let out_len = buffers[1].len;
        let plain = e2e::PlainJob {
            entry_point: "main",
            specialization: &[],
            grid: [2, 1, 1],
            buffers: &buffers,
            kernel: &kernel,
            push_constants: &push,
            inputs: &[&input, &[]],
            seal_kernel: true,
        };
        let recipient = e2e::Recipient {
            enc_key: *provider.public(),
            device_key,
        };
        let ctx = e2e::RequesterContext::new(&recipient, &[0x22; 32]).expect("context");
        let sealed =
            e2e::seal_job(&ctx, &nonce, requester.public(), &result_key, &plain).expect("seal");
        let mut entry = tessera_core::bounded::BoundedString::new();
        entry.push_str("main").expect("short");
        let assign = JobAssign {
            job: 12,
            requester_nonce: nonce,
            kernel: KernelSpec {
                len: sealed.kernel.len() as u32,
                root: merkle::root_of_buffers([sealed.kernel.as_slice()]),
                entry_point: entry,
                specialization: tessera_core::bounded::BoundedVec::new(),
                push_constants: tessera_core::bounded::BoundedVec::from_slice(
                    &sealed.push_constants,
                )
                .expect("sealed push constants fit"),
                grid: [2, 1, 1],
            },
            buffers: tessera_core::bounded::BoundedVec::from_slice(&buffers).expect("2"),
            inputs_root: merkle::root_of_buffers(sealed.inputs.iter().map(|v| v.as_slice())),
            sealing: Some(sealed.sealing),
        };
        let receiver = e2e::provider_context(&provider, &device_key, ctx.enc()).expect("context");
        let opened =
            e2e::open_job(&receiver, &assign, &sealed.kernel, &sealed.inputs).expect("opens");
        let out_ctx =
            e2e::OutputContext::new(requester.public(), &device_key, ctx.enc(), &[0x44; 32])
                .expect("output context");
        // The run's read-back buffer in full: its first 200 bytes are the
        // output in the clear.
        let output = data(out_len as usize);
        let (sealed_out, result_hash) = opened
            .seal_outputs(&assign, vec![output.clone()], &out_ctx, &[0x45; 16])
            .expect("seals");
        let s = &sealed.sealing;
        json!({
            "name": "sealed-job",
            "provider_ikm": hex(&[0x11; 32]),
            "requester_ikm": hex(&[0x33; 32]),
            "requester_context_ikm": hex(&[0x22; 32]),
            "output_context_ikm": hex(&[0x44; 32]),
            "device_key": hex(&device_key),
            "requester_nonce": hex(&nonce),
            "result_key": hex(&result_key),
            "kernel_plain": hex(&kernel),
            "push_constants_plain": hex(&push),
            "inputs_plain": [hex(&input), ""],
            "outputs_plain": [hex(&output[..200])],
            "assignment": {
                "kernel": {
                    "spirv_root": hex(&assign.kernel.root),
                    "entry_point": "main",
                    "specialization": [],
                    "push_constants": hex(&sealed.push_constants),
                    "grid": [2, 1, 1],
                    "buffers": buffers.iter().map(|b| json!({
                        "binding": b.binding, "len": b.len, "init_len": b.init_len,
                        "readback": b.readback,
                    })).collect::<Vec<_>>(),
                },
                "kernel_len": assign.kernel.len,
                "inputs_root": hex(&assign.inputs_root),
                "sealing": {
                    "enc": hex(&s.enc),
                    "requester_key": hex(&s.requester_key),
                    "kernel_sealed": s.kernel_sealed,
                    "result_key": hex(&s.result_key),
                    "result_key_tag": hex(&s.result_key_tag),
                },
            },
            "kernel_sent": hex(&sealed.kernel),
            "inputs_sent": sealed.inputs.iter().map(|v| hex(v)).collect::<Vec<_>>(),
            "outputs_sent": sealed_out.iter().map(|v| hex(v)).collect::<Vec<_>>(),
            "binding": hex(&e2e::assignment_binding(&assign).expect("sealed")),
            "kernel_hash": hex(&assign.kernel_hash()),
            "result_hash": hex(&result_hash),
        })
    }

    /// Opens every stream of an e2e vector from its JSON alone (the recipient's
    /// IKM, the encapsulated key and the info), as its recipient would.
    fn open_e2e(v: &Value) -> Result<(), e2e::SealError> {
        let keys = e2e::KeyPair::derive(&unhex_n(&v["recipient_ikm"]));
        assert_eq!(hex(keys.public()), v["recipient_public_key"]);
        let info = unhex(v["info"].as_str().unwrap());
        let job = unhex(v["job"].as_str().unwrap());
        let receiver = e2e::Receiver::new(&keys, &unhex_n(&v["enc"]), &info)?;
        for s in v["streams"].as_array().unwrap() {
            let len = s["plain_len"].as_u64().unwrap();
            let key = receiver.stream(&job, s["stream"].as_u64().unwrap() as u32, len)?;
            let plain = key.open(&unhex(s["sealed"].as_str().unwrap()))?;
            assert_eq!(plain.as_slice(), data(len as usize).as_slice());
        }
        Ok(())
    }

    #[test]
    fn e2e_vectors() {
        let v = committed("e2e.json", build_e2e());
        for vector in v.as_array().unwrap() {
            if vector["name"] == "sealed-job" {
                continue;
            }
            assert_eq!(hex(&vector_info(vector)), vector["info"]);
            let got = open_e2e(vector);
            match vector["expect_error"].as_str() {
                None => assert_eq!(got, Ok(()), "{}", vector["name"]),
                Some(e) => assert_eq!(
                    got.err().map(|e| format!("{e:?}")).as_deref(),
                    Some(e),
                    "{}",
                    vector["name"]
                ),
            }
        }
    }
}
