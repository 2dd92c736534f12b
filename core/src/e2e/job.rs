//! A whole job sealed end to end (`docs/PROTOCOL.md`, "Sealed jobs"): the
//! requester's side ([`seal_job`], [`open_outputs`]), the provider's
//! ([`open_job`], [`OpenedJob::seal_outputs`]), and the keyed result hash
//! both compute ([`sealed_result_hash`]). Hosted builds with feature `e2e`.

use std::vec::Vec;

use zeroize::{Zeroize, Zeroizing};

use super::{info, output_plain_len, Direction, KeyPair, Receiver, SealError, Sender, KEY_LEN};
use crate::attest::{kernel_hash, RESULT_DOMAIN};
use crate::limits::MAX_PUSH_CONSTANTS;
use crate::merkle::root_of_buffers;
use crate::wire::{BufferSpec, Digest, JobAssign, Nonce, Sealing};

/// Stream number of the sealed result key in the requester's context.
pub const RESULT_KEY_STREAM: u32 = u32::MAX;
/// Stream number of the sealed push constants in the requester's context.
pub const PUSH_CONSTANTS_STREAM: u32 = u32::MAX - 1;
/// Bytes of the result key.
pub const RESULT_KEY_LEN: usize = 32;
/// Most bytes of a sealed job's push constants in the clear: sealed, they
/// fill the assignment's push constants.
pub const MAX_SEALED_PUSH_CONSTANTS: usize = MAX_PUSH_CONSTANTS - super::TAG_LEN;

/// The result hash of a sealed job: HMAC-SHA256 under the requester's
/// result key of the result hash's preimage over the plaintext
/// ("tessera/result/v1" ‖ kernel hash of the job in the clear ‖ root of
/// the plaintext inputs ‖ root of the plaintext outputs ‖ u64 plaintext
/// output length). Replicas given the same result key give the same hash;
/// without the key it says nothing about the plaintext.
pub fn sealed_result_hash(
    result_key: &[u8; RESULT_KEY_LEN],
    plain_kernel_hash: &Digest,
    plain_input_root: &Digest,
    plain_output_root: &Digest,
    plain_output_len: u64,
) -> Digest {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, result_key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(RESULT_DOMAIN);
    ctx.update(plain_kernel_hash);
    ctx.update(plain_input_root);
    ctx.update(plain_output_root);
    ctx.update(&plain_output_len.to_le_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// What the requester seals: the job in the clear.
pub struct PlainJob<'a> {
    /// The SPIR-V module.
    pub kernel: &'a [u8],
    /// The push constants (at most [`MAX_SEALED_PUSH_CONSTANTS`] bytes;
    /// sealed in place).
    pub push_constants: &'a [u8],
    /// Each buffer's initial contents, in buffer order (empty: none).
    pub inputs: &'a [&'a [u8]],
    /// Whether the kernel is sealed too.
    pub seal_kernel: bool,
}

/// A job sealed by its requester: what the coordinator carries.
pub struct SealedJob {
    /// How the job is sealed (goes in `SealedJobAssign`).
    pub sealing: Sealing,
    /// Stream 0 as sent: the sealed kernel, or the kernel in the clear.
    pub kernel: Vec<u8>,
    /// The push constants as sent (the assignment's): sealed, or empty.
    pub push_constants: Vec<u8>,
    /// Each buffer's sealed initial contents (empty where there are none).
    pub inputs: Vec<Vec<u8>>,
}

/// The provider a job is sealed for: its session key and device key, from
/// its verified evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The session encryption key (evidence `enc_key`).
    pub enc_key: [u8; KEY_LEN],
    /// The device's Ed25519 public key (evidence `public_key`).
    pub device_key: [u8; 32],
}

/// Seals `job` for `provider`: the requester's context
/// ([`Direction::ToProvider`], ephemeral key from `ikm_e`), its kernel if
/// asked, each input, the push constants and the `result_key`; outputs
/// will be sealed to `requester_key`.
pub fn seal_job(
    provider: &Recipient,
    nonce: &Nonce,
    requester_key: &[u8; KEY_LEN],
    result_key: &[u8; RESULT_KEY_LEN],
    job: &PlainJob<'_>,
    ikm_e: &[u8; 32],
) -> Result<SealedJob, SealError> {
    if job.push_constants.len() > MAX_SEALED_PUSH_CONSTANTS {
        return Err(SealError::BadLength);
    }
    let context = info(Direction::ToProvider, nonce, &provider.device_key);
    let (enc, sender) = Sender::new(&provider.enc_key, &context, ikm_e)?;
    let key = sender
        .stream(RESULT_KEY_STREAM, RESULT_KEY_LEN as u64)?
        .seal(result_key)?;
    let push_constants = if job.push_constants.is_empty() {
        Vec::new()
    } else {
        sender
            .stream(PUSH_CONSTANTS_STREAM, job.push_constants.len() as u64)?
            .seal(job.push_constants)?
    };
    let kernel = if job.seal_kernel {
        sender
            .stream(0, job.kernel.len() as u64)?
            .seal(job.kernel)?
    } else {
        job.kernel.to_vec()
    };
    let mut inputs = Vec::with_capacity(job.inputs.len());
    for (i, input) in job.inputs.iter().enumerate() {
        inputs.push(if input.is_empty() {
            Vec::new()
        } else {
            sender
                .stream(i as u32 + 1, input.len() as u64)?
                .seal(input)?
        });
    }
    let mut sealed_key = [0u8; RESULT_KEY_LEN];
    let mut tag = [0u8; super::TAG_LEN];
    sealed_key.copy_from_slice(&key[..RESULT_KEY_LEN]);
    tag.copy_from_slice(&key[RESULT_KEY_LEN..]);
    Ok(SealedJob {
        sealing: Sealing {
            enc,
            requester_key: *requester_key,
            kernel_sealed: job.seal_kernel,
            result_key: sealed_key,
            result_key_tag: tag,
        },
        kernel,
        push_constants,
        inputs,
    })
}

/// A sealed job opened by its provider: the plaintext the executor runs
/// (zeroed when dropped), and what sealing the outputs needs.
pub struct OpenedJob {
    /// The SPIR-V module in the clear.
    pub kernel: Zeroizing<Vec<u8>>,
    /// The push constants in the clear.
    pub push_constants: Zeroizing<Vec<u8>>,
    /// Each buffer's initial contents in the clear.
    pub inputs: Vec<Zeroizing<Vec<u8>>>,
    result_key: Zeroizing<[u8; RESULT_KEY_LEN]>,
    plain_kernel_hash: Digest,
    plain_input_root: Digest,
    requester_key: [u8; KEY_LEN],
    outputs_info: [u8; super::INFO_LEN],
}

/// Opens a sealed job with the session's `keys`: its result key, its push
/// constants, its kernel if sealed, and every input stream, as received
/// (`kernel`, `inputs` in buffer order). `SealError::Forged` if any of it
/// does not open.
pub fn open_job(
    keys: &KeyPair,
    device_key: &[u8; 32],
    spec: &JobAssign,
    kernel: &[u8],
    inputs: &[Vec<u8>],
) -> Result<OpenedJob, SealError> {
    let sealing = spec.sealing.as_ref().ok_or(SealError::BadLength)?;
    let context = info(Direction::ToProvider, &spec.requester_nonce, device_key);
    let receiver = Receiver::new(keys, &sealing.enc, &context)?;
    let mut key = [0u8; RESULT_KEY_LEN + super::TAG_LEN];
    key[..RESULT_KEY_LEN].copy_from_slice(&sealing.result_key);
    key[RESULT_KEY_LEN..].copy_from_slice(&sealing.result_key_tag);
    let opened_key = receiver
        .stream(RESULT_KEY_STREAM, RESULT_KEY_LEN as u64)?
        .open(&key)?;
    let mut result_key = Zeroizing::new([0u8; RESULT_KEY_LEN]);
    result_key.copy_from_slice(&opened_key);
    let sealed_push = &spec.kernel.push_constants;
    let push_constants = if sealed_push.is_empty() {
        Zeroizing::new(Vec::new())
    } else {
        let plain = super::plain_len(sealed_push.len() as u64).ok_or(SealError::BadLength)?;
        receiver
            .stream(PUSH_CONSTANTS_STREAM, plain)?
            .open(sealed_push)?
    };
    let kernel = if sealing.kernel_sealed {
        let plain = super::plain_len(kernel.len() as u64).ok_or(SealError::BadLength)?;
        receiver.stream(0, plain)?.open(kernel)?
    } else {
        Zeroizing::new(kernel.to_vec())
    };
    if inputs.len() != spec.buffers.len() {
        return Err(SealError::BadLength);
    }
    let mut opened = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        opened.push(if input.is_empty() {
            Zeroizing::new(Vec::new())
        } else {
            let plain = super::plain_len(input.len() as u64).ok_or(SealError::BadLength)?;
            receiver.stream(i as u32 + 1, plain)?.open(input)?
        });
    }
    let plain_kernel_hash = plain_kernel_hash(&kernel, &push_constants, spec);
    let plain_input_root = root_of_buffers(opened.iter().map(|b| b.as_slice()));
    Ok(OpenedJob {
        kernel,
        push_constants,
        inputs: opened,
        result_key,
        plain_kernel_hash,
        plain_input_root,
        requester_key: sealing.requester_key,
        outputs_info: info(Direction::ToRequester, &spec.requester_nonce, device_key),
    })
}

/// The kernel hash of the job in the clear: the plaintext SPIR-V's root
/// and push constants, with the assignment's dispatch and buffer layout.
fn plain_kernel_hash(kernel: &[u8], push_constants: &[u8], spec: &JobAssign) -> Digest {
    kernel_hash(
        &root_of_buffers([kernel]),
        &spec.kernel.entry_point,
        &spec.kernel.specialization,
        push_constants,
        spec.kernel.grid,
        &spec.buffers,
    )
}

/// The plaintext lengths of a sealed job's outputs, in buffer order of the
/// read-back buffers; `BadLength` for a layout no sealed job has.
pub fn output_plain_lens(buffers: &[BufferSpec]) -> Result<Vec<u64>, SealError> {
    let mut first = true;
    let mut out = Vec::new();
    for b in buffers.iter().filter(|b| b.readback) {
        out.push(output_plain_len(b.len, first).ok_or(SealError::BadLength)?);
        first = false;
    }
    Ok(out)
}

impl OpenedJob {
    /// Seals the executor's `outputs` (each read-back buffer in full, or at
    /// least its plaintext front, in buffer order) to the requester's key, a fresh context from
    /// `ikm_e`: each buffer's first plaintext bytes sealed, the first one's
    /// stream led by the context's encapsulated key, each exactly the
    /// buffer's declared length. Returns them with the result hash; the
    /// plaintext outputs are zeroed.
    pub fn seal_outputs(
        &self,
        spec: &JobAssign,
        mut outputs: Vec<Vec<u8>>,
        ikm_e: &[u8; 32],
    ) -> Result<(Vec<Vec<u8>>, Digest), SealError> {
        let readback: Vec<&BufferSpec> = spec.buffers.iter().filter(|b| b.readback).collect();
        let lens = output_plain_lens(&spec.buffers);
        let result = (|| {
            let lens = lens?;
            // Each output holds at least its plaintext: the buffer in full,
            // or (a host that returns what the kernel wrote) its front.
            if outputs.len() != readback.len()
                || outputs
                    .iter()
                    .zip(&readback)
                    .zip(&lens)
                    .any(|((o, b), &p)| (o.len() as u64) < p || o.len() as u64 > b.len)
            {
                return Err(SealError::BadLength);
            }
            let (enc, sender) = Sender::new(&self.requester_key, &self.outputs_info, ikm_e)?;
            let plain: Vec<&[u8]> = outputs
                .iter()
                .zip(&lens)
                .map(|(o, &n)| &o[..n as usize])
                .collect();
            let plain_output_root = root_of_buffers(plain.iter().copied());
            let plain_output_len = lens.iter().sum();
            let mut sealed = Vec::with_capacity(outputs.len());
            let mut index = 0;
            for (i, b) in spec.buffers.iter().enumerate() {
                if !b.readback {
                    continue;
                }
                let p = plain[index];
                let mut stream = Vec::with_capacity(b.len as usize);
                if index == 0 {
                    stream.extend_from_slice(&enc);
                }
                stream.extend_from_slice(&sender.stream(i as u32, p.len() as u64)?.seal(p)?);
                sealed.push(stream);
                index += 1;
            }
            let hash = sealed_result_hash(
                &self.result_key,
                &self.plain_kernel_hash,
                &self.plain_input_root,
                &plain_output_root,
                plain_output_len,
            );
            Ok((sealed, hash))
        })();
        for o in outputs.iter_mut() {
            o.zeroize();
        }
        result
    }
}

/// The requester's side of the outputs: opens each read-back buffer's
/// sealed stream (`sealed`, in buffer order, as the receipt's output root
/// covers them) with `requester`'s key, and returns the plaintext with the
/// result hash the provider must have signed (given the job in the clear,
/// its plaintext inputs and the result key).
pub fn open_outputs(
    requester: &KeyPair,
    device_key: &[u8; 32],
    nonce: &Nonce,
    buffers: &[BufferSpec],
    sealed: &[Vec<u8>],
) -> Result<Vec<Zeroizing<Vec<u8>>>, SealError> {
    let lens = output_plain_lens(buffers)?;
    if sealed.len() != lens.len() || sealed.is_empty() {
        return Err(SealError::BadLength);
    }
    let first = &sealed[0];
    if first.len() < KEY_LEN {
        return Err(SealError::BadLength);
    }
    let mut enc = [0u8; KEY_LEN];
    enc.copy_from_slice(&first[..KEY_LEN]);
    let context = info(Direction::ToRequester, nonce, device_key);
    let receiver = Receiver::new(requester, &enc, &context)?;
    let mut out = Vec::with_capacity(sealed.len());
    let mut index = 0;
    for (i, b) in buffers.iter().enumerate() {
        if !b.readback {
            continue;
        }
        let bytes = if index == 0 {
            &sealed[0][KEY_LEN..]
        } else {
            &sealed[index][..]
        };
        out.push(receiver.stream(i as u32, lens[index])?.open(bytes)?);
        index += 1;
    }
    Ok(out)
}

/// The result hash a sealed job's receipt must carry, from what the
/// requester holds in the clear (see [`sealed_result_hash`]).
pub fn expected_result_hash(
    result_key: &[u8; RESULT_KEY_LEN],
    spec_in_clear: &JobAssign,
    kernel: &[u8],
    push_constants: &[u8],
    inputs: &[&[u8]],
    outputs: &[&[u8]],
) -> Digest {
    let plain_kernel_hash = plain_kernel_hash(kernel, push_constants, spec_in_clear);
    let plain_output_len = outputs.iter().map(|o| o.len() as u64).sum();
    sealed_result_hash(
        result_key,
        &plain_kernel_hash,
        &root_of_buffers(inputs.iter().copied()),
        &root_of_buffers(outputs.iter().copied()),
        plain_output_len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::{BoundedString, BoundedVec};
    use crate::e2e::output_buffer_len;
    use crate::wire::KernelSpec;

    const DEVICE: [u8; 32] = [0xD0; 32];
    const NONCE: [u8; 32] = [0x4E; 32];

    /// The wire assignment a requester builds for `sealed` (what the agent
    /// holds): stream lengths as sealed, outputs declared sealed.
    fn assignment(sealed: &SealedJob, out_plain: &[u64]) -> JobAssign {
        let mut buffers = BoundedVec::new();
        for (i, input) in sealed.inputs.iter().enumerate() {
            let len = output_buffer_len(out_plain[i], i == 0)
                .unwrap()
                .max(input.len() as u64);
            buffers
                .push(BufferSpec {
                    binding: i as u32,
                    len,
                    init_len: input.len() as u64,
                    readback: true,
                })
                .unwrap();
        }
        JobAssign {
            job: 9,
            requester_nonce: NONCE,
            kernel: KernelSpec {
                len: sealed.kernel.len() as u32,
                root: root_of_buffers([sealed.kernel.as_slice()]),
                entry_point: BoundedString::try_from("main").unwrap(),
                specialization: BoundedVec::new(),
                push_constants: BoundedVec::from_slice(&sealed.push_constants).unwrap(),
                grid: [1, 1, 1],
            },
            buffers,
            inputs_root: root_of_buffers(sealed.inputs.iter().map(|v| v.as_slice())),
            sealing: Some(sealed.sealing),
        }
    }

    #[test]
    fn a_job_sealed_by_its_requester_opens_on_its_provider_and_back() {
        let provider = KeyPair::derive(&[1; 32]);
        let requester = KeyPair::derive(&[2; 32]);
        let kernel: Vec<u8> = (0..400u32).flat_map(|i| i.to_le_bytes()).collect();
        let a: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let b = b"the second buffer".to_vec();
        let job = PlainJob {
            kernel: &kernel,
            push_constants: &[1, 2, 3, 4],
            inputs: &[&a, &b],
            seal_kernel: true,
        };
        let recipient = Recipient {
            enc_key: *provider.public(),
            device_key: DEVICE,
        };
        let sealed = seal_job(
            &recipient,
            &NONCE,
            requester.public(),
            &[7; 32],
            &job,
            &[3; 32],
        )
        .unwrap();
        assert_ne!(sealed.kernel, kernel);
        assert!(!sealed.inputs[0].windows(16).any(|w| w == &a[100..116]));
        let spec = assignment(&sealed, &[100, 5]);
        let opened = open_job(&provider, &DEVICE, &spec, &sealed.kernel, &sealed.inputs).unwrap();
        assert!(opened.kernel.as_slice() == kernel.as_slice());
        assert_eq!(opened.push_constants.as_slice(), &[1, 2, 3, 4]);
        assert!(opened.inputs[0].as_slice() == a.as_slice());
        assert!(opened.inputs[1].as_slice() == b.as_slice());
        // The executor returns each read-back buffer in full; the plaintext
        // is its front.
        let outputs: Vec<Vec<u8>> = spec
            .buffers
            .iter()
            .enumerate()
            .map(|(i, bs)| (0..bs.len).map(|j| (j as u8) ^ (i as u8)).collect())
            .collect();
        let (sealed_out, hash) = opened
            .seal_outputs(&spec, outputs.clone(), &[4; 32])
            .unwrap();
        for (o, bs) in sealed_out.iter().zip(spec.buffers.iter()) {
            assert_eq!(o.len() as u64, bs.len, "each output is its declared length");
        }
        let plain = open_outputs(&requester, &DEVICE, &NONCE, &spec.buffers, &sealed_out).unwrap();
        for (i, p) in plain.iter().enumerate() {
            let n = output_plain_len(spec.buffers[i].len, i == 0).unwrap() as usize;
            assert!(
                p.as_slice() == &outputs[i][..n],
                "output {i} opens to its plaintext"
            );
        }
        // Buffer 1 is as long as its sealed input (17 bytes in the clear).
        assert_eq!(plain[1].len(), 17);
        let want = expected_result_hash(
            &[7; 32],
            &spec,
            &kernel,
            &[1, 2, 3, 4],
            &[&a, &b],
            &[&plain[0], &plain[1]],
        );
        assert_eq!(hash, want);
        // Another result key, another hash: without it the hash says
        // nothing of the plaintext.
        let other = expected_result_hash(
            &[8; 32],
            &spec,
            &kernel,
            &[1, 2, 3, 4],
            &[&a, &b],
            &[&plain[0], &plain[1]],
        );
        assert_ne!(hash, other);
        // Another requester's key opens nothing.
        let stranger = KeyPair::derive(&[5; 32]);
        assert_eq!(
            open_outputs(&stranger, &DEVICE, &NONCE, &spec.buffers, &sealed_out).err(),
            Some(SealError::Forged)
        );
        // Another session's key opens nothing either.
        let later = KeyPair::derive(&[6; 32]);
        assert_eq!(
            open_job(&later, &DEVICE, &spec, &sealed.kernel, &sealed.inputs).err(),
            Some(SealError::Forged)
        );
    }
}
