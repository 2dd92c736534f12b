//! `tessera_core::job`: assignments built from a description, and every rule
//! `check_receipt` holds a receipt to, on the committed receipt vectors
//! (`tests/vectors/receipts.json`): each valid receipt passes against the
//! job rebuilt from its vector, and each rule, broken once, is reported as
//! itself.

use serde_json::Value;
use tessera_core::attest::{result_hash, result_seal, Evidence, Receipt, ReceiptStatus};
use tessera_core::job::{
    check_receipt, Buffer, BuildError, Description, Expected, Outcome, ReceiptCheckError, Reported,
    Terms,
};
use tessera_core::limits::{CHUNK_SIZE, MAX_BUFFERS, MAX_PUSH_CONSTANTS};
use tessera_core::merkle::{self, empty_root, leaf_hash};
use tessera_core::wire::{Digest, FailReason, JobAssign, JobId};

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

fn num(v: &Value) -> u64 {
    v.as_u64().expect("a number")
}

/// The vectors' data generator: byte i is (i * 31 + 7) mod 251.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// `all` cut in pieces of `lens`, in order.
fn split<'a>(all: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let mut at = 0;
    lens.iter()
        .map(|l| {
            at += l;
            &all[at - l..at]
        })
        .collect()
}

fn vectors(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("vectors file");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    v.as_array().expect("an array").clone()
}

/// One valid receipt vector with the job, as the coordinator that sent it
/// would hold it.
struct Case {
    name: String,
    receipt: Receipt,
    key: [u8; 32],
    assign: JobAssign,
    evidence: Digest,
    terms: Terms,
    outcome: Outcome,
    received: Option<Digest>,
}

impl Case {
    /// The honest provider's view: its UsageReport says what its receipt
    /// says.
    fn expected(&self) -> Expected<'_> {
        Expected {
            assign: &self.assign,
            provider_key: &self.key,
            evidence: std::slice::from_ref(&self.evidence),
            terms: self.terms,
            reported: Reported {
                usage: self.receipt.usage,
                price: self.receipt.price,
            },
            outcome: self.outcome,
            received_output_root: self.received,
        }
    }

    fn check(&self) -> Result<(), ReceiptCheckError> {
        check_receipt(&self.receipt, &self.expected())
    }

    /// Recomputes the result hash and seal after an output field changed,
    /// so that only the rule under test breaks.
    fn reseal(&mut self) {
        let r = &mut self.receipt;
        r.result_hash = result_hash(&r.kernel_hash, &r.input_root, &r.output_root, r.output_len);
        r.result_seal = result_seal(&self.key, r.job, &r.result_hash);
    }
}

/// Every valid receipt vector, its job rebuilt from the vector: the kernel
/// and the inputs from the generator, the assignment by `Description`.
fn cases() -> Vec<Case> {
    let evidence = vectors("evidence.json")
        .into_iter()
        .find(|v| v["name"] == "evidence-a")
        .map(|v| Evidence::hash(&unhex(v["hex"].as_str().expect("hex"))))
        .expect("evidence-a");
    vectors("receipts.json")
        .into_iter()
        .filter(|v| v.get("expect_error").is_none())
        .map(|v| {
            let key = unhex_n::<32>(&v["public_key"]);
            let bytes = unhex(v["hex"].as_str().expect("hex"));
            let receipt = Receipt::verify(&bytes, &key).expect("a valid vector verifies");
            let k = &v["kernel"];
            let kernel = data(num(&k["spirv_len"]) as usize);
            let layout = k["buffers"].as_array().expect("buffers");
            let init_lens: Vec<usize> = layout
                .iter()
                .map(|b| num(&b["init_len"]) as usize)
                .collect();
            let inputs = data(num(&v["input_len"]) as usize);
            let inits = split(&inputs, &init_lens);
            let buffers: Vec<Buffer<'_>> = layout
                .iter()
                .zip(&inits)
                .map(|(b, init)| Buffer {
                    binding: num(&b["binding"]) as u32,
                    init,
                    len: num(&b["len"]),
                    readback: b["readback"].as_bool().expect("bool"),
                })
                .collect();
            let specialization: Vec<(u32, u32)> = k["specialization"]
                .as_array()
                .expect("list")
                .iter()
                .map(|p| (num(&p[0]) as u32, num(&p[1]) as u32))
                .collect();
            let push_constants = unhex(k["push_constants"].as_str().expect("hex"));
            let grid = k["grid"].as_array().expect("grid");
            let description = Description {
                kernel: &kernel,
                entry_point: k["entry_point"].as_str().expect("entry point"),
                specialization: &specialization,
                push_constants: &push_constants,
                grid: [0, 1, 2].map(|i| num(&grid[i]) as u32),
                buffers: &buffers,
                nonce: unhex_n(&v["expected_nonce"]),
            };
            let assign = description.assign(receipt.job).expect("fits an assignment");
            assert_eq!(assign.kernel.root, unhex_n::<32>(&k["spirv_root"]));
            let offer = &v["offer"];
            let terms = Terms {
                max_price: num(&offer["max_price"]),
                deadline_ms: num(&offer["deadline_ms"]) as u32,
                quote: Some(num(&offer["quote"])),
            };
            let (outcome, received) = match receipt.status {
                ReceiptStatus::Completed => {
                    let out_lens: Vec<usize> = layout
                        .iter()
                        .filter(|b| b["readback"].as_bool() == Some(true))
                        .map(|b| num(&b["len"]) as usize)
                        .collect();
                    let outputs = data(out_lens.iter().sum());
                    let root = merkle::root_of_buffers(split(&outputs, &out_lens));
                    (
                        Outcome::Completed {
                            output_len: outputs.len() as u64,
                            output_root: root,
                        },
                        Some(root),
                    )
                }
                ReceiptStatus::Failed(reason) => (Outcome::Failed { reason }, None),
            };
            Case {
                name: v["name"].as_str().expect("name").to_string(),
                receipt,
                key,
                assign,
                evidence,
                terms,
                outcome,
                received,
            }
        })
        .collect()
}

fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

#[test]
fn every_valid_receipt_vector_passes_against_its_rebuilt_job() {
    let cases = cases();
    assert_eq!(cases.len(), 5, "three completed, a failure and a timeout");
    for c in &cases {
        // The assignment built from the description is the one the
        // receipt binds: kernel, dispatch, layout and inputs.
        assert_eq!(c.assign.kernel_hash(), c.receipt.kernel_hash, "{}", c.name);
        assert_eq!(c.assign.inputs_root, c.receipt.input_root, "{}", c.name);
        assert_eq!(c.check(), Ok(()), "{}", c.name);
        // Without the outputs (a third party), the same.
        let mut without = c.expected();
        without.received_output_root = None;
        assert_eq!(check_receipt(&c.receipt, &without), Ok(()), "{}", c.name);
    }
    let statuses: Vec<ReceiptStatus> = cases.iter().map(|c| c.receipt.status).collect();
    assert!(statuses.contains(&ReceiptStatus::Completed));
    assert!(statuses.contains(&ReceiptStatus::Failed(FailReason::DeviceLost)));
    assert!(statuses.contains(&ReceiptStatus::Failed(FailReason::Timeout)));
}

const COMPLETED: &str = "receipt-3";
const FAILED: &str = "receipt-4-failed-job";
const TIMED_OUT: &str = "receipt-5-timeout";

#[test]
fn another_job_is_refused() {
    let mut c = case(COMPLETED);
    c.receipt.job += 1;
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::Job {
            assigned: 3,
            receipt: 4
        })
    );
}

#[test]
fn evidence_not_verified_for_the_key_is_refused() {
    let c = case(COMPLETED);
    let mut e = c.expected();
    let other = [0x5A; 32];
    e.evidence = std::slice::from_ref(&other);
    assert_eq!(
        check_receipt(&c.receipt, &e),
        Err(ReceiptCheckError::EvidenceNotVerified)
    );
    // Any of several verified documents will do.
    let several = [other, c.evidence];
    e.evidence = &several;
    assert_eq!(check_receipt(&c.receipt, &e), Ok(()));
}

#[test]
fn another_requester_nonce_is_refused() {
    let mut c = case(COMPLETED);
    c.receipt.requester_nonce[0] ^= 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::RequesterNonce));
}

#[test]
fn another_kernel_or_layout_is_refused() {
    let mut c = case(COMPLETED);
    c.receipt.kernel_hash[0] ^= 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::KernelHash));
    // The layout is bound too: the same receipt is not a job whose first
    // buffer is a byte longer, or bound elsewhere.
    let mut c = case(COMPLETED);
    c.assign.buffers[0].len += 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::KernelHash));
    let mut c = case(COMPLETED);
    c.assign.buffers[0].binding = 9;
    assert_eq!(c.check(), Err(ReceiptCheckError::KernelHash));
}

#[test]
fn other_inputs_are_refused() {
    let mut c = case(COMPLETED);
    c.receipt.input_root[0] ^= 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::InputRoot));
}

#[test]
fn usage_or_price_other_than_reported_is_refused() {
    let c = case(COMPLETED);
    let mut e = c.expected();
    e.reported.usage.gpu_time_us += 1;
    let err = check_receipt(&c.receipt, &e).expect_err("refused");
    assert!(matches!(err, ReceiptCheckError::UsageDiffers { .. }));
    assert!(
        err.to_string()
            .contains("gpu_time_us 4500, dispatches 3, bytes_in 1112, bytes_out 40960"),
        "{err}"
    );
    let mut e = c.expected();
    e.reported.price += 1;
    let err = check_receipt(&c.receipt, &e).expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::PriceDiffers {
            reported: 25,
            receipt: 24
        }
    );
    assert_eq!(
        err.to_string(),
        "the receipt charges 24, the price reported with it is 25"
    );
}

#[test]
fn an_inconsistent_result_hash_or_seal_is_refused() {
    let mut c = case(COMPLETED);
    c.receipt.result_hash[0] ^= 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::ResultHash));
    let mut c = case(COMPLETED);
    c.receipt.result_seal[0] ^= 1;
    assert_eq!(c.check(), Err(ReceiptCheckError::ResultSeal));
    // Another key's seal of the same result: not this provider's.
    let c = case(COMPLETED);
    let other_key = [7u8; 32];
    let mut e = c.expected();
    e.provider_key = &other_key;
    assert_eq!(
        check_receipt(&c.receipt, &e),
        Err(ReceiptCheckError::ResultSeal)
    );
}

#[test]
fn a_status_other_than_the_outcome_reported_is_refused() {
    // Completed receipt, Failed message.
    let mut c = case(COMPLETED);
    c.outcome = Outcome::Failed {
        reason: FailReason::DeviceLost,
    };
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::StatusDiffers {
            receipt: ReceiptStatus::Completed,
            reported: Some(FailReason::DeviceLost)
        }
    );
    assert_eq!(
        err.to_string(),
        "the receipt says the job completed, the provider reported it failed (DeviceLost)"
    );
    // Failure receipt, Completed message.
    let mut c = case(FAILED);
    c.outcome = Outcome::Completed {
        output_len: 0,
        output_root: empty_root(),
    };
    assert!(matches!(
        c.check(),
        Err(ReceiptCheckError::StatusDiffers { reported: None, .. })
    ));
    // Failure receipt, another reason in the Failed message.
    let mut c = case(FAILED);
    c.outcome = Outcome::Failed {
        reason: FailReason::Host,
    };
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::StatusDiffers {
            receipt: ReceiptStatus::Failed(FailReason::DeviceLost),
            reported: Some(FailReason::Host)
        })
    );
}

#[test]
fn an_output_root_other_than_the_outputs_received_is_refused() {
    let mut c = case(COMPLETED);
    c.received = Some([0x11; 32]);
    assert_eq!(c.check(), Err(ReceiptCheckError::OutputRoot));
}

#[test]
fn an_output_other_than_completed_stated_is_refused() {
    let mut c = case(COMPLETED);
    c.outcome = Outcome::Completed {
        output_len: 40_960,
        output_root: [0x11; 32],
    };
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::CompletedDiffers {
            reported_len: 40_960,
            receipt_len: 40_960
        })
    );
    let mut c = case(COMPLETED);
    let Outcome::Completed { output_root, .. } = c.outcome else {
        panic!("a completed case")
    };
    c.outcome = Outcome::Completed {
        output_len: 40_959,
        output_root,
    };
    assert!(matches!(
        c.check(),
        Err(ReceiptCheckError::CompletedDiffers {
            reported_len: 40_959,
            ..
        })
    ));
}

#[test]
fn an_output_length_other_than_the_layouts_is_refused() {
    // Receipt, Completed and usage agree on one byte less than the
    // read-back buffers hold.
    let mut c = case(COMPLETED);
    c.receipt.output_len -= 1;
    c.receipt.usage.bytes_out -= 1;
    c.reseal();
    c.outcome = Outcome::Completed {
        output_len: c.receipt.output_len,
        output_root: c.receipt.output_root,
    };
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::OutputLen {
            assigned: 40_960,
            receipt: 40_959
        }
    );
    assert!(err.to_string().contains("40959"), "{err}");
}

#[test]
fn a_failure_receipt_stating_an_output_is_refused() {
    let mut c = case(FAILED);
    c.receipt.output_len = 5;
    c.receipt.usage.bytes_out = 5;
    c.reseal();
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::FailureOutput { output_len: 5 })
    );
    let mut c = case(FAILED);
    c.receipt.output_root = merkle::root_of(b"an output");
    c.reseal();
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::FailureOutput { output_len: 0 })
    );
}

#[test]
fn usage_bytes_other_than_the_job_moved_are_refused() {
    // Job 3: a 1012-byte kernel and 100 bytes of initial data.
    for name in [COMPLETED, FAILED] {
        let mut c = case(name);
        c.receipt.usage.bytes_in += 1 << 20;
        let err = c.check().expect_err("refused");
        assert!(
            matches!(err, ReceiptCheckError::BytesIn { receipt, .. } if receipt == c.assign.bytes_in() + (1 << 20)),
            "{name}: {err}"
        );
    }
    let mut c = case(COMPLETED);
    c.receipt.usage.bytes_in = 100;
    let err = c.check().expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the receipt's usage counts 100 bytes in, the assignment sent 1112 (kernel and initial data)"
    );
    let mut c = case(COMPLETED);
    c.receipt.usage.bytes_out += 1;
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::BytesOut {
            output_len: 40_960,
            receipt: 40_961
        })
    );
    // A failure returns nothing.
    let mut c = case(TIMED_OUT);
    c.receipt.usage.bytes_out = 1;
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::BytesOut {
            output_len: 0,
            receipt: 1
        })
    );
}

#[test]
fn a_completed_job_over_the_maximum_is_refused() {
    let mut c = case(COMPLETED);
    c.terms.max_price = c.receipt.price - 1;
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::OverMaximum {
            price: 24,
            max_price: 23
        }
    );
    assert_eq!(
        err.to_string(),
        "price 24 is over the requester's maximum 23"
    );
    // At the maximum is fine.
    c.terms.max_price = c.receipt.price;
    assert_eq!(c.check(), Ok(()));
}

#[test]
fn a_timed_out_job_is_charged_exactly_the_quote() {
    let mut c = case(TIMED_OUT);
    let quote = c.terms.quote.expect("the vector's quote");
    c.terms.quote = Some(quote + 1);
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::TimeoutPrice {
            quote: 39,
            price: 38
        }
    );
    assert!(
        err.to_string()
            .contains("charged the accepted quote 39, the receipt charges 38"),
        "{err}"
    );
    // Below the quote is as wrong as above it.
    c.terms.quote = Some(quote - 1);
    assert!(matches!(
        c.check(),
        Err(ReceiptCheckError::TimeoutPrice { .. })
    ));
    // A checker that never saw the quote holds the price to the maximum.
    c.terms.quote = None;
    assert_eq!(c.check(), Ok(()));
    c.terms.max_price = 37;
    assert_eq!(
        c.check(),
        Err(ReceiptCheckError::OverMaximum {
            price: 38,
            max_price: 37
        })
    );
}

#[test]
fn a_timed_out_job_is_metered_to_its_deadline_at_most() {
    // The vector meters 1,800,000 us under a 2,000 ms deadline.
    let mut c = case(TIMED_OUT);
    c.terms.deadline_ms = 1800;
    assert_eq!(c.check(), Ok(()), "exactly at the deadline");
    c.terms.deadline_ms = 1799;
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::TimeoutMetered {
            deadline_ms: 1799,
            gpu_time_us: 1_800_000
        }
    );
    assert_eq!(
        err.to_string(),
        "a timed-out job is metered to its deadline (1799 ms), the receipt meters 1800000 us"
    );
}

#[test]
fn any_other_failure_is_charged_nothing() {
    // The provider reports the same price it signs: the rule refuses it.
    let mut c = case(FAILED);
    c.receipt.price = 7;
    let err = c.check().expect_err("refused");
    assert_eq!(
        err,
        ReceiptCheckError::FailurePrice {
            reason: FailReason::DeviceLost,
            price: 7
        }
    );
    assert!(
        err.to_string()
            .contains("(DeviceLost) is charged 0, the receipt charges 7"),
        "{err}"
    );
}

fn sample<'a>(kernel: &'a [u8], buffers: &'a [Buffer<'a>]) -> Description<'a> {
    Description {
        kernel,
        entry_point: "main",
        specialization: &[(0, 64)],
        push_constants: &[1, 2, 3, 4],
        grid: [4, 2, 1],
        buffers,
        nonce: [9; 32],
    }
}

#[test]
fn an_assignment_carries_the_roots_and_layout_of_its_description() {
    let kernel: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
    let first: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    let buffers = [
        Buffer {
            binding: 3,
            init: &first,
            len: 30_000,
            readback: false,
        },
        Buffer {
            binding: 0,
            init: &[],
            len: 100,
            readback: true,
        },
        Buffer {
            binding: 1,
            init: &[7; 5],
            len: 5,
            readback: true,
        },
    ];
    let d = sample(&kernel, &buffers);
    let mut handed: Vec<(u8, u32, Digest)> = Vec::new();
    let a = d
        .assign_with(77, |c| handed.push((c.stream, c.index, c.digest)))
        .expect("fits");
    assert_eq!(a.job, 77);
    assert_eq!(a.requester_nonce, [9; 32]);
    assert_eq!(a.kernel.len, 12_000);
    assert_eq!(a.kernel.root, merkle::root_of(&kernel));
    assert_eq!(
        a.inputs_root,
        merkle::root_of_buffers([&first[..], &[][..], &[7u8; 5][..]])
    );
    let layout: Vec<(u32, u64, u64, bool)> = a
        .buffers
        .iter()
        .map(|b| (b.binding, b.len, b.init_len, b.readback))
        .collect();
    assert_eq!(
        layout,
        vec![
            (3, 30_000, 20_000, false),
            (0, 100, 0, true),
            (1, 5, 5, true)
        ]
    );
    assert_eq!(a.bytes_in(), 12_000 + 20_000 + 5);
    assert_eq!(a.bytes_out(), 105);
    // The chunks as sent: the kernel, then each buffer with data; the empty
    // buffer has no stream. The same chunks, hashed once, went into the
    // roots.
    let chunks: Vec<(u8, u32, Digest)> = d
        .input_chunks()
        .map(|c| {
            assert!(c.data.len() <= CHUNK_SIZE);
            assert_eq!(c.digest, leaf_hash(c.data));
            (c.stream, c.index, c.digest)
        })
        .collect();
    let order: Vec<(u8, u32)> = chunks.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(order, vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (3, 0)]);
    assert_eq!(chunks, handed);
    let message = d.input_chunks().nth(5).expect("6 chunks").message(77);
    assert_eq!(
        (message.job, message.stream, message.data),
        (77, 3, &[7u8; 5][..])
    );
}

#[test]
fn a_description_over_the_wire_capacities_makes_no_assignment() {
    let kernel = [0u8; 8];
    let buffer = Buffer {
        binding: 0,
        init: &[1; 4],
        len: 4,
        readback: true,
    };
    let nine = [buffer; MAX_BUFFERS + 1];
    let mut hashed = 0;
    assert_eq!(
        sample(&kernel, &nine).assign_with(1, |_| hashed += 1),
        Err(BuildError::TooManyBuffers { count: 9 })
    );
    assert_eq!(
        hashed, 0,
        "nothing is hashed for a job that cannot be assigned"
    );
    let one = [buffer];
    let long_name = "x".repeat(65);
    let mut d = sample(&kernel, &one);
    d.entry_point = &long_name;
    assert_eq!(d.assign(1), Err(BuildError::EntryPointTooLong { len: 65 }));
    let push = [0u8; MAX_PUSH_CONSTANTS + 1];
    let mut d = sample(&kernel, &one);
    d.push_constants = &push;
    let err = d.assign(1).expect_err("refused");
    assert_eq!(err, BuildError::PushConstantsTooLong { len: 129 });
    assert!(err.to_string().contains("129"), "{err}");
    let spec = [(0u32, 0u32); 17];
    let mut d = sample(&kernel, &one);
    d.specialization = &spec;
    assert_eq!(
        d.assign(1),
        Err(BuildError::TooManySpecializationConstants { count: 17 })
    );
}

/// The test kit's jobs are built by the same code.
#[test]
fn the_test_kits_jobs_are_built_by_the_module() {
    let j = tessera_core::testkit::JobDescription {
        kernel: vec![1, 2, 3, 4],
        entry_point: "main".into(),
        grid: [1, 1, 1],
        push_constants: vec![5; 8],
        buffers: vec![(vec![6; 9000], 9000, false), (Vec::new(), 64, true)],
        bindings: vec![2, 0],
        nonce: [3; 32],
    };
    let buffers = [
        Buffer {
            binding: 2,
            init: &j.buffers[0].0,
            len: 9000,
            readback: false,
        },
        Buffer {
            binding: 0,
            init: &[],
            len: 64,
            readback: true,
        },
    ];
    let d = Description {
        kernel: &j.kernel,
        entry_point: "main",
        specialization: &[],
        push_constants: &j.push_constants,
        grid: [1, 1, 1],
        buffers: &buffers,
        nonce: [3; 32],
    };
    let id: JobId = 12;
    assert_eq!(j.assign(id), d.assign(id).expect("fits"));
    assert_eq!(j.input_frames(id).len(), d.input_chunks().count());
}
