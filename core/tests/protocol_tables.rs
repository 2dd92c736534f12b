//! The byte tables of `docs/PROTOCOL.md` ("Attestation"), derived from the
//! encoders themselves: each field is set alone to a value with no zero byte,
//! and the bytes that change give its offset and size. The test fails when the
//! document's tables differ from the derived ones; `TESSERA_BLESS=1` rewrites
//! them in place (between their `<!-- table:NAME -->` markers).
#![cfg(feature = "std")]

use tessera_core::attest::{
    ChainState, DeviceCapabilities, DeviceType, Ed25519Signer, Evidence, Receipt, ReceiptBatch,
    ReceiptStatus, Signer, BATCH_PAYLOAD_LEN, EVIDENCE_LEN, EVIDENCE_PAYLOAD_LEN, RECEIPT_LEN,
    RECEIPT_PAYLOAD_LEN,
};
use tessera_core::wire::{FailReason, Usage};

/// One row: field name, encoding, meaning, and how to set it to a value with
/// no zero byte.
type Field<T> = (&'static str, &'static str, &'static str, fn(&mut T));

/// Offset and size of the bytes that differ between `base` and `changed`.
fn span(base: &[u8], changed: &[u8]) -> (usize, usize) {
    let first = (0..base.len())
        .find(|&i| base[i] != changed[i])
        .expect("a change");
    let last = (0..base.len())
        .rfind(|&i| base[i] != changed[i])
        .expect("a change");
    // Every byte in the span changed: the test values have no zero byte.
    assert!((first..=last).all(|i| base[i] != changed[i]));
    (first, last + 1 - first)
}

fn table<T: Clone>(
    base: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    fields: &[Field<T>],
    total: usize,
    version: &str,
) -> String {
    let base_bytes = encode(base);
    assert_eq!(base_bytes.len(), total);
    let mut out =
        String::from("| Offset | Size | Field | Encoding | Meaning |\n|---:|---:|---|---|---|\n");
    out += &format!("| 0 | 1 | `version` | u8 | Layout version, {version}. |\n");
    let mut next = 1;
    for (name, encoding, meaning, set) in fields {
        let mut t = base.clone();
        set(&mut t);
        let (offset, size) = span(&base_bytes, &encode(&t));
        assert_eq!(offset, next, "{name}: fields must tile the payload");
        next = offset + size;
        out += &format!("| {offset} | {size} | `{name}` | {encoding} | {meaning} |\n");
    }
    assert_eq!(next, total, "the fields cover the payload");
    out += &format!("| | **{total}** | | | Payload length. |\n");
    out
}

fn evidence_table() -> String {
    let base = Evidence {
        challenge: [0; 32],
        public_key: [0; 32],
        agent_version: [0; 3],
        boot_id: [0; 16],
        issued_at: 0,
        chain: ChainState::default(),
        capabilities: DeviceCapabilities::default(),
        enc_key: [0; 32],
        hardware_report: tessera_core::attest::HardwareReport::NONE,
    };
    let fields: &[Field<Evidence>] = &[
        ("challenge", "32 bytes", "The coordinator's challenge nonce this evidence answers.", |e| e.challenge = [0xFF; 32]),
        ("public_key", "32 bytes", "The device's Ed25519 public key; it also signs this evidence.", |e| e.public_key = [0xFF; 32]),
        ("agent_version", "3 × u16", "Agent software version: major, minor, patch.", |e| e.agent_version = [0xFFFF; 3]),
        ("boot_id", "16 bytes", "Random id chosen at each start of the agent.", |e| e.boot_id = [0xFF; 16]),
        ("issued_at", "u64", "When the evidence was made, µs in the host's time base.", |e| e.issued_at = u64::MAX),
        ("next_sequence", "u64", "The provider's receipt chain when the evidence was made: the sequence its next receipt will carry (1 before the first).", |e| e.chain.next_sequence = u64::MAX),
        ("prev_hash", "32 bytes", "The chain's last receipt hash (zeros before the first receipt).", |e| e.chain.prev_hash = [0xFF; 32]),
        ("name", "64 bytes", "Device name, UTF-8, zero-padded; no non-zero byte after the first zero.", |e| {
            e.capabilities.name.clear();
            e.capabilities.name.push_str(&"x".repeat(64)).expect("64 bytes");
        }),
        ("vendor_id", "u32", "PCI vendor id.", |e| e.capabilities.vendor_id = u32::MAX),
        ("device_id", "u32", "Vendor's device id.", |e| e.capabilities.device_id = u32::MAX),
        ("driver_version", "u32", "Driver version, vendor-encoded.", |e| e.capabilities.driver_version = u32::MAX),
        ("api_version", "u32", "Vulkan API version the device supports.", |e| e.capabilities.api_version = u32::MAX),
        ("device_type", "u8", "0 other, 1 integrated GPU, 2 discrete GPU, 3 virtual GPU, 4 CPU; others are malformed.", |e| e.capabilities.device_type = DeviceType::Cpu),
        ("features", "u32", "Feature bits (see Messages, `features`).", |e| e.capabilities.features = u32::MAX),
        ("device_local_bytes", "u64", "Bytes of the largest device-local heap.", |e| e.capabilities.device_local_bytes = u64::MAX),
        ("host_visible_bytes", "u64", "Bytes of the largest host-visible heap.", |e| e.capabilities.host_visible_bytes = u64::MAX),
        ("max_workgroup_size", "3 × u32", "Largest workgroup size in x, y, z.", |e| e.capabilities.max_workgroup_size = [u32::MAX; 3]),
        ("max_workgroup_count", "3 × u32", "Most workgroups in one dispatch in x, y, z.", |e| e.capabilities.max_workgroup_count = [u32::MAX; 3]),
        ("max_invocations", "u32", "Most invocations in one workgroup.", |e| e.capabilities.max_invocations = u32::MAX),
        ("max_shared_memory", "u32", "Bytes of workgroup shared memory.", |e| e.capabilities.max_shared_memory = u32::MAX),
        ("max_storage_buffer_range", "u64", "Largest storage buffer binding, bytes.", |e| e.capabilities.max_storage_buffer_range = u64::MAX),
        ("subgroup_size", "u32", "Subgroup size.", |e| e.capabilities.subgroup_size = u32::MAX),
        ("copy_mbps", "u32", "Measured copy-kernel bandwidth, MB/s (0: not measured).", |e| e.capabilities.copy_mbps = u32::MAX),
        ("fma_mflops", "u32", "Measured FMA throughput, MFLOP/s (0: not measured).", |e| e.capabilities.fma_mflops = u32::MAX),
        ("enc_key", "32 bytes", "The provider's X25519 public key for this session, to which requesters seal jobs (\"End-to-end sealing\"); zeros: it takes no sealed jobs.", |e| e.enc_key = [0xFF; 32]),
        ("hardware_report_kind", "u16", "Kind of hardware attestation report (\"Hardware attestation reports\"); 0 none.", |e| e.hardware_report.kind.0 = u16::MAX),
        ("hardware_report_hash", "32 bytes", "SHA-256 of the report's bytes; zeros when the kind is 0 (anything else is malformed).", |e| e.hardware_report.hash = [0xFF; 32]),
    ];
    table(
        &base,
        |e| e.encode_payload().to_vec(),
        fields,
        EVIDENCE_PAYLOAD_LEN,
        "3 (version 2 had no session key and no hardware report; version 1 no chain position)",
    )
}

fn receipt_table() -> String {
    let base = Receipt {
        status: ReceiptStatus::Completed,
        job: 0,
        requester_nonce: [0; 32],
        kernel_hash: [0; 32],
        input_root: [0; 32],
        output_root: [0; 32],
        output_len: 0,
        result_hash: [0; 32],
        result_seal: [0; 32],
        usage: Usage::default(),
        price: 0,
        started_at: 0,
        ended_at: 0,
        evidence_hash: [0; 32],
        key_id: [0; 16],
        sequence: 0,
        prev_hash: [0; 32],
    };
    let fields: &[Field<Receipt>] = &[
        ("status", "u8", "0 completed; else the failure reason: 1 kernel rejected, 2 timeout (the kernel ran out its time; charged the quote), 3 deadline exceeded (before the kernel ran), 4 device lost, 5 out of memory, 6 input integrity, 7 host. Others are malformed.", |r| r.status = ReceiptStatus::Failed(FailReason::Host)),
        ("job", "u64", "The job id from the assignment.", |r| r.job = u64::MAX),
        ("requester_nonce", "32 bytes", "The requester's nonce from the assignment.", |r| r.requester_nonce = [0xFF; 32]),
        ("kernel_hash", "32 bytes", "Kernel hash of what was dispatched, buffer layout included.", |r| r.kernel_hash = [0xFF; 32]),
        ("input_root", "32 bytes", "Merkle root over the chunks of every input buffer, in buffer order.", |r| r.input_root = [0xFF; 32]),
        ("output_root", "32 bytes", "Merkle root over the chunks of every output buffer, in buffer order (the empty root when there is no output).", |r| r.output_root = [0xFF; 32]),
        ("output_len", "u64", "Total output bytes.", |r| r.output_len = u64::MAX),
        ("result_hash", "32 bytes", "Result hash: the same on every honest replica.", |r| r.result_hash = [0xFF; 32]),
        ("result_seal", "32 bytes", "Result seal: unique to this device's key.", |r| r.result_seal = [0xFF; 32]),
        ("gpu_time_us", "u64", "Usage: GPU time, µs, from GPU timestamps.", |r| r.usage.gpu_time_us = u64::MAX),
        ("dispatches", "u32", "Usage: dispatch commands submitted.", |r| r.usage.dispatches = u32::MAX),
        ("bytes_in", "u64", "Usage: bytes received (kernel and inputs).", |r| r.usage.bytes_in = u64::MAX),
        ("bytes_out", "u64", "Usage: bytes returned (outputs).", |r| r.usage.bytes_out = u64::MAX),
        ("price", "u64", "Price charged, in the network's smallest unit: for status 2 the accepted quote, for other failures 0.", |r| r.price = u64::MAX),
        ("started_at", "u64", "When the job started, µs in the host's time base.", |r| r.started_at = u64::MAX),
        ("ended_at", "u64", "When the job ended, µs in the host's time base.", |r| r.ended_at = u64::MAX),
        ("evidence_hash", "32 bytes", "SHA-256 of the signed evidence the coordinator accepted in the session that offered the job.", |r| r.evidence_hash = [0xFF; 32]),
        ("key_id", "16 bytes", "The signing key's id; must equal the COSE header's.", |r| r.key_id = [0xFF; 16]),
        ("sequence", "u64", "Position in this key's receipt chain, from 1.", |r| r.sequence = u64::MAX),
        ("prev_hash", "32 bytes", "SHA-256 of this key's previous signed receipt; zeros for the first.", |r| r.prev_hash = [0xFF; 32]),
    ];
    table(
        &base,
        |r| r.encode_payload().to_vec(),
        fields,
        RECEIPT_PAYLOAD_LEN,
        "1",
    )
}

fn batch_table() -> String {
    let base = ReceiptBatch {
        key_id: [0; 16],
        first_sequence: 0,
        count: 0,
        root: [0; 32],
    };
    let fields: &[Field<ReceiptBatch>] = &[
        ("key_id", "16 bytes", "The signing key's id; must equal the COSE header's and every receipt payload's.", |b| b.key_id = [0xFF; 16]),
        ("first_sequence", "u64", "The `sequence` of the batch's first receipt; receipt `i` of the batch has `first_sequence + i`.", |b| b.first_sequence = u64::MAX),
        ("count", "u32", "Receipts in the batch, 1 to 256; others are malformed.", |b| b.count = u32::MAX),
        ("root", "32 bytes", "RFC 9162 Merkle tree hash over the leaves `SHA-256(0x00 ‖ payload_i)`, `i` = 0 .. count − 1, in sequence order.", |b| b.root = [0xFF; 32]),
    ];
    table(
        &base,
        |b| b.encode_payload().to_vec(),
        fields,
        BATCH_PAYLOAD_LEN,
        "1",
    )
}

/// The COSE_Sign1 envelope, checked against real signed evidence and receipts.
fn cose_table() -> String {
    let mut signer = Ed25519Signer::from_seed(&[1; 32]).expect("seed");
    let mut ev = [0u8; EVIDENCE_LEN];
    Evidence {
        challenge: [0; 32],
        public_key: signer.public_key(),
        agent_version: [0; 3],
        boot_id: [0; 16],
        issued_at: 0,
        chain: ChainState::default(),
        capabilities: DeviceCapabilities::default(),
        enc_key: [0; 32],
        hardware_report: tessera_core::attest::HardwareReport::NONE,
    }
    .sign(&mut signer, &mut ev)
    .expect("sign");
    let mut rc = [0u8; RECEIPT_LEN];
    Receipt {
        status: ReceiptStatus::Completed,
        job: 0,
        requester_nonce: [0; 32],
        kernel_hash: [0; 32],
        input_root: [0; 32],
        output_root: [0; 32],
        output_len: 0,
        result_hash: [0; 32],
        result_seal: [0; 32],
        usage: Usage::default(),
        price: 0,
        started_at: 0,
        ended_at: 0,
        evidence_hash: [0; 32],
        key_id: signer.key_id(),
        sequence: 1,
        prev_hash: ChainState::default().prev_hash,
    }
    .sign(&mut signer, &mut rc)
    .expect("sign");

    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // (part, evidence length, receipt length, fixed bytes?)
    let e_head = 3; // 59 01 20: two length bytes for 288 bytes
    let r_head = 3; // 59 01 5E: two length bytes for 350 bytes
    let rows: [(&str, usize, usize, bool); 8] = [
        ("tag 18 (COSE_Sign1), array of 4", 2, 2, true),
        ("protected: bstr of `{1: -8}` (alg: EdDSA)", 4, 4, true),
        ("unprotected: map of 1, key 4 (kid), bstr of 16", 3, 3, true),
        ("key id", 16, 16, false),
        ("payload bstr head", e_head, r_head, true),
        ("payload", EVIDENCE_PAYLOAD_LEN, RECEIPT_PAYLOAD_LEN, false),
        ("signature bstr head (64 bytes)", 2, 2, true),
        ("Ed25519 signature over the Sig_structure", 64, 64, false),
    ];
    let mut out = String::from(
        "| Evidence offset | Receipt offset | Size (evidence / receipt) | Bytes | Part |\n|---:|---:|---|---|---|\n",
    );
    let (mut eo, mut ro) = (0, 0);
    for (part, el, rl, fixed) in rows {
        let bytes = if fixed {
            let e = hex(&ev[eo..eo + el]);
            let r = hex(&rc[ro..ro + rl]);
            if e == r {
                format!("`{e}`")
            } else {
                format!("`{e}` / `{r}`")
            }
        } else {
            String::from("")
        };
        let size = if el == rl {
            format!("{el}")
        } else {
            format!("{el} / {rl}")
        };
        out += &format!("| {eo} | {ro} | {size} | {bytes} | {part} |\n");
        eo += el;
        ro += rl;
    }
    assert_eq!((eo, ro), (EVIDENCE_LEN, RECEIPT_LEN));
    out += &format!("| | | **{EVIDENCE_LEN} / {RECEIPT_LEN}** | | Total length. |\n");
    out
}

fn protocol_md() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md")
}

/// Checks (or, under `TESSERA_BLESS=1`, writes) the table between the
/// `<!-- table:NAME -->` and `<!-- /table:NAME -->` markers.
fn check_table(name: &str, table: &str) {
    let path = protocol_md();
    let doc = std::fs::read_to_string(&path).expect("docs/PROTOCOL.md");
    let open = format!("<!-- table:{name} -->\n");
    let close = format!("<!-- /table:{name} -->");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in PROTOCOL.md"))
        + open.len();
    let end = start + doc[start..].find(&close).expect("closing marker");
    if std::env::var_os("TESSERA_BLESS").is_some_and(|v| v == "1") {
        let new = format!("{}{}{}", &doc[..start], table, &doc[end..]);
        std::fs::write(&path, new).expect("write PROTOCOL.md");
        return;
    }
    assert_eq!(
        &doc[start..end],
        table,
        "docs/PROTOCOL.md table {name} is out of date (TESSERA_BLESS=1 rewrites it)"
    );
}

/// One test for the four tables: blessing rewrites one file.
#[test]
fn protocol_tables_are_the_encoders() {
    check_table("cose-sign1", &cose_table());
    check_table("evidence-payload", &evidence_table());
    check_table("receipt-payload", &receipt_table());
    check_table("batch-payload", &batch_table());
}
