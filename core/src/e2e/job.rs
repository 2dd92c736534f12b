//! A whole job sealed end to end (`docs/PROTOCOL.md`, "Sealed jobs"): the
//! requester's side ([`RequesterContext`], [`seal_job`], [`open_outputs`]),
//! the provider's ([`open_job`], [`OutputContext`],
//! [`OpenedJob::seal_outputs`]), and the keyed result hash both compute
//! ([`sealed_result_hash`]). A context (an HPKE setup, two X25519
//! operations) serves any number of jobs: each job's key is exported
//! under its own nonce, so a requester sending many jobs to one provider
//! session, and that provider sealing their outputs back, set up one each.
//! Hosted builds with feature `e2e`.

use std::vec::Vec;

use zeroize::{Zeroize, Zeroizing};

use super::{
    assignment_binding, job_binding, job_bytes, output_plain_len, provider_info, requester_info,
    KeyPair, Receiver, SealError, Sender, StreamKey, KEY_LEN, OUTPUT_PREFIX_LEN, OUTPUT_SALT_LEN,
};
use crate::attest::{kernel_hash, RESULT_DOMAIN};
use crate::limits::{MAX_BUFFERS, MAX_PUSH_CONSTANTS};
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

/// What the requester seals: the job in the clear, and what of it travels
/// in the clear as the assignment will carry it (bound into the keys).
pub struct PlainJob<'a> {
    /// The entry point.
    pub entry_point: &'a str,
    /// The specialization constants.
    pub specialization: &'a [(u32, u32)],
    /// The grid.
    pub grid: [u32; 3],
    /// The buffer layout as the assignment declares it (sealed sizes:
    /// [`sealed_layout`]).
    pub buffers: &'a [BufferSpec],
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

/// A requester's context sealed to one provider session (its session key
/// and device key): set up once (HPKE `SetupBaseS`, the ephemeral key from
/// `ikm_e`), it seals any number of that requester's jobs, each under its
/// own nonce, which must never repeat.
pub struct RequesterContext {
    sender: Sender,
    enc: [u8; KEY_LEN],
    provider: Recipient,
}

impl RequesterContext {
    /// The context sealed to `provider`.
    pub fn new(provider: &Recipient, ikm_e: &[u8; 32]) -> Result<RequesterContext, SealError> {
        let info = provider_info(&provider.device_key);
        let (enc, sender) = Sender::new(&provider.enc_key, &info, ikm_e)?;
        Ok(RequesterContext {
            sender,
            enc,
            provider: *provider,
        })
    }

    /// HPKE's encapsulated key, which every job sealed in this context
    /// carries (`Sealing::enc`).
    pub fn enc(&self) -> &[u8; KEY_LEN] {
        &self.enc
    }

    /// The provider it seals to.
    pub fn provider(&self) -> &Recipient {
        &self.provider
    }
}

/// The buffer layout a sealed job declares for buffers in the clear
/// (`(binding, initial contents' length, length, read back)` each, in
/// buffer order): each initial content's sealed length, and each length
/// large enough for the sealed input and, for a read-back buffer, for
/// `length` bytes of plaintext back (the first read-back buffer with room
/// for the outputs' prefix). `BadLength` past `u64`.
pub fn sealed_layout(plain: &[(u32, u64, u64, bool)]) -> Result<Vec<BufferSpec>, SealError> {
    let mut first_readback = true;
    let mut out = Vec::with_capacity(plain.len());
    for &(binding, init, len, readback) in plain {
        let init_len = super::sealed_len(init).ok_or(SealError::BadLength)?;
        let mut sealed = len.max(init_len);
        if readback {
            let first = core::mem::replace(&mut first_readback, false);
            sealed = sealed.max(super::output_buffer_len(len, first).ok_or(SealError::BadLength)?);
            // Longer for its sealed input, it returns a longer plaintext
            // (its first `len` bytes are the output), at a length sealing
            // gives: the next one up, at most 17 bytes on.
            while output_plain_len(sealed, first).is_none() {
                sealed = sealed.checked_add(1).ok_or(SealError::BadLength)?;
            }
        }
        out.push(BufferSpec {
            binding,
            len: sealed,
            init_len,
            readback,
        });
    }
    Ok(out)
}

/// Seals `job` in the requester's context `ctx` under its `nonce`: its
/// kernel if asked, each input, the push constants and the `result_key`,
/// every key bound to the job's clear part ([`super::job_binding`]);
/// outputs will be sealed to `requester_key`.
pub fn seal_job(
    ctx: &RequesterContext,
    nonce: &Nonce,
    requester_key: &[u8; KEY_LEN],
    result_key: &[u8; RESULT_KEY_LEN],
    job: &PlainJob<'_>,
) -> Result<SealedJob, SealError> {
    // Input i is stream i + 1: at most MAX_BUFFERS of them, one per buffer,
    // so no input's stream is the kernel's or a high one (push constants,
    // result key).
    if job.push_constants.len() > MAX_SEALED_PUSH_CONSTANTS
        || job.inputs.len() > MAX_BUFFERS
        || job.inputs.len() > job.buffers.len()
    {
        return Err(SealError::BadLength);
    }
    // A sealed kernel's root is not bound (zeros stand in for it).
    let clear_root = if job.seal_kernel {
        [0u8; 32]
    } else {
        root_of_buffers([job.kernel])
    };
    let binding = job_binding(
        requester_key,
        job.seal_kernel,
        &clear_root,
        job.entry_point,
        job.specialization,
        job.grid,
        job.buffers,
    );
    let (jb, n) = job_bytes(nonce, &binding, None);
    let streams = ctx.sender.job_key(&jb[..n])?;
    let key = streams
        .stream(RESULT_KEY_STREAM, RESULT_KEY_LEN as u64)?
        .seal(result_key)?;
    let push_constants = if job.push_constants.is_empty() {
        Vec::new()
    } else {
        streams
            .stream(PUSH_CONSTANTS_STREAM, job.push_constants.len() as u64)?
            .seal(job.push_constants)?
    };
    let kernel = if job.seal_kernel {
        streams
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
            streams
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
            enc: ctx.enc,
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
    plain: Option<PlainDigest>,
    nonce: Nonce,
    binding: Digest,
}

/// What a sealed job's result hash covers of the job in the clear, before
/// its outputs: the kernel hash of the job in the clear (the plaintext
/// SPIR-V's root and push constants, with the assignment's dispatch and
/// buffer layout) and the root of the plaintext inputs. The provider
/// computes it when it opens the job; a requester can compute it while
/// the job runs, so that checking the result hash costs only the outputs'
/// root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainDigest {
    kernel_hash: Digest,
    input_root: Digest,
}

impl PlainDigest {
    /// Of the job in the clear: its SPIR-V `kernel`, `push_constants` and
    /// `inputs` (in buffer order), as the sealed assignment declares it
    /// (`entry_point`, `specialization`, `grid`, and `buffers`, the sealed
    /// layout: [`sealed_layout`]).
    pub fn new(
        kernel: &[u8],
        entry_point: &str,
        specialization: &[(u32, u32)],
        push_constants: &[u8],
        grid: [u32; 3],
        buffers: &[BufferSpec],
        inputs: &[&[u8]],
    ) -> PlainDigest {
        PlainDigest {
            kernel_hash: kernel_hash(
                &root_of_buffers([kernel]),
                entry_point,
                specialization,
                push_constants,
                grid,
                buffers,
            ),
            input_root: root_of_buffers(inputs.iter().copied()),
        }
    }

    /// Of the job in the clear whose sealed assignment is `spec`.
    pub fn of_assignment(
        spec: &JobAssign,
        kernel: &[u8],
        push_constants: &[u8],
        inputs: &[&[u8]],
    ) -> PlainDigest {
        PlainDigest::new(
            kernel,
            &spec.kernel.entry_point,
            &spec.kernel.specialization,
            push_constants,
            spec.kernel.grid,
            &spec.buffers,
            inputs,
        )
    }

    /// The result hash of this job with `outputs` in the clear (each
    /// read-back buffer's plaintext, in buffer order), under `result_key`
    /// ([`sealed_result_hash`]).
    pub fn result_hash(&self, result_key: &[u8; RESULT_KEY_LEN], outputs: &[&[u8]]) -> Digest {
        let plain_output_len = outputs.iter().map(|o| o.len() as u64).sum();
        sealed_result_hash(
            result_key,
            &self.kernel_hash,
            &self.input_root,
            &root_of_buffers(outputs.iter().copied()),
            plain_output_len,
        )
    }
}

/// The provider's end of a requester's context: the session's `keys`
/// opening what was sealed with `enc` (a job's `Sealing::enc`) to this
/// device. Set up once per requester context (a host keeps the last
/// few), it opens each of its jobs.
pub fn provider_context(
    keys: &KeyPair,
    device_key: &[u8; 32],
    enc: &[u8; KEY_LEN],
) -> Result<Receiver, SealError> {
    Receiver::new(keys, enc, &provider_info(device_key))
}

/// Opens a sealed job in its requester's context `receiver`
/// ([`provider_context`]): its result key, its push constants, its kernel
/// if sealed, and every input stream, as received (`kernel`, `inputs` in
/// buffer order), and hashes the job in the clear for its result hash
/// ([`PlainDigest`]). `SealError::Forged` if any of it does not open.
pub fn open_job(
    receiver: &Receiver,
    spec: &JobAssign,
    kernel: &[u8],
    inputs: &[Vec<u8>],
) -> Result<OpenedJob, SealError> {
    let mut opened = open_job_unhashed(receiver, spec, kernel, inputs)?;
    let plain_inputs: Vec<&[u8]> = opened.inputs.iter().map(|b| b.as_slice()).collect();
    let plain =
        PlainDigest::of_assignment(spec, &opened.kernel, &opened.push_constants, &plain_inputs);
    drop(plain_inputs);
    opened.set_plain_digest(plain);
    Ok(opened)
}

/// [`open_job`] without hashing the job in the clear: the caller hashes
/// the plaintext later ([`PlainDigest::of_assignment`], then
/// [`OpenedJob::set_plain_digest`]) before the outputs are sealed. A
/// runtime does it while the job runs, so that hashing a large input adds
/// nothing to the job's latency.
pub fn open_job_unhashed(
    receiver: &Receiver,
    spec: &JobAssign,
    kernel: &[u8],
    inputs: &[Vec<u8>],
) -> Result<OpenedJob, SealError> {
    let sealing = spec.sealing.as_ref().ok_or(SealError::BadLength)?;
    let binding = assignment_binding(spec).ok_or(SealError::BadLength)?;
    let (jb, n) = job_bytes(&spec.requester_nonce, &binding, None);
    let streams = receiver.job_key(&jb[..n])?;
    let mut key = [0u8; RESULT_KEY_LEN + super::TAG_LEN];
    key[..RESULT_KEY_LEN].copy_from_slice(&sealing.result_key);
    key[RESULT_KEY_LEN..].copy_from_slice(&sealing.result_key_tag);
    let opened_key = streams
        .stream(RESULT_KEY_STREAM, RESULT_KEY_LEN as u64)?
        .open(&key)?;
    let mut result_key = Zeroizing::new([0u8; RESULT_KEY_LEN]);
    result_key.copy_from_slice(&opened_key);
    let sealed_push = &spec.kernel.push_constants;
    let push_constants = if sealed_push.is_empty() {
        Zeroizing::new(Vec::new())
    } else {
        let plain = super::plain_len(sealed_push.len() as u64).ok_or(SealError::BadLength)?;
        streams
            .stream(PUSH_CONSTANTS_STREAM, plain)?
            .open(sealed_push)?
    };
    let kernel = if sealing.kernel_sealed {
        let plain = super::plain_len(kernel.len() as u64).ok_or(SealError::BadLength)?;
        streams.stream(0, plain)?.open(kernel)?
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
            streams.stream(i as u32 + 1, plain)?.open(input)?
        });
    }
    Ok(OpenedJob {
        kernel,
        push_constants,
        inputs: opened,
        result_key,
        plain: None,
        nonce: spec.requester_nonce,
        binding,
    })
}

/// A provider's context sealing outputs to a requester's key, for the jobs
/// of one requester context (`requester_enc`): set up once (HPKE
/// `SetupBaseS`, a fresh ephemeral key from `ikm_e`), it seals the outputs
/// of each, under the job's nonce and a salt drawn for the job.
pub struct OutputContext {
    sender: Sender,
    enc: [u8; KEY_LEN],
}

impl OutputContext {
    /// The context sealing to `requester_key` for the jobs of the requester
    /// context `requester_enc`, on the device `device_key`.
    pub fn new(
        requester_key: &[u8; KEY_LEN],
        device_key: &[u8; 32],
        requester_enc: &[u8; KEY_LEN],
        ikm_e: &[u8; 32],
    ) -> Result<OutputContext, SealError> {
        let info = requester_info(device_key, requester_enc);
        let (enc, sender) = Sender::new(requester_key, &info, ikm_e)?;
        Ok(OutputContext { sender, enc })
    }

    /// HPKE's encapsulated key, at the front of each job's first output.
    pub fn enc(&self) -> &[u8; KEY_LEN] {
        &self.enc
    }
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

/// A sealed job's output streams made ready before its run
/// ([`OpenedJob::output_sealer`]): the output context's encapsulated key,
/// the run's salt and each read-back buffer's stream key, so that sealing
/// the outputs after the run costs the AEAD alone.
pub struct OutputSealer {
    enc: [u8; KEY_LEN],
    salt: [u8; OUTPUT_SALT_LEN],
    keys: Vec<StreamKey>,
}

impl core::fmt::Debug for OutputSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutputSealer")
            .field("streams", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl OpenedJob {
    /// Sets what the result hash covers of the job in the clear, hashed
    /// from its plaintext ([`PlainDigest::of_assignment`] with the sealed
    /// assignment) after [`open_job_unhashed`].
    pub fn set_plain_digest(&mut self, plain: PlainDigest) {
        self.plain = Some(plain);
    }

    /// Whether the job in the clear is hashed (always after [`open_job`]).
    pub fn is_hashed(&self) -> bool {
        self.plain.is_some()
    }

    /// Makes ready the sealing of this job's outputs (its assignment
    /// `spec`) in `ctx` (sealing to the job's requester key, for its
    /// requester context) under the job's nonce and `salt`, fresh for the
    /// run: the job's output key, exported now, and each read-back
    /// buffer's stream under it.
    pub fn output_sealer(
        &self,
        spec: &JobAssign,
        ctx: &OutputContext,
        salt: &[u8; OUTPUT_SALT_LEN],
    ) -> Result<OutputSealer, SealError> {
        let lens = output_plain_lens(&spec.buffers)?;
        let (jb, n) = job_bytes(&self.nonce, &self.binding, Some(salt));
        let job_key = ctx.sender.job_key(&jb[..n])?;
        let mut keys = Vec::with_capacity(lens.len());
        let readback = spec.buffers.iter().enumerate().filter(|(_, b)| b.readback);
        for ((i, _), &len) in readback.zip(&lens) {
            keys.push(job_key.stream(i as u32, len)?);
        }
        Ok(OutputSealer {
            enc: ctx.enc,
            salt: *salt,
            keys,
        })
    }

    /// Seals the executor's `outputs` (each read-back buffer in full, or at
    /// least its plaintext front, in buffer order) in `ctx` (sealing to the
    /// job's requester key, for its requester context) under the job's
    /// nonce and `salt`, fresh for the job: each buffer's first plaintext
    /// bytes sealed, the first one's stream led by the context's
    /// encapsulated key and the salt, each exactly the buffer's declared
    /// length. Returns them with the result hash; the plaintext outputs are
    /// zeroed. [`OpenedJob::output_sealer`] then
    /// [`OpenedJob::seal_outputs_with`].
    pub fn seal_outputs(
        &self,
        spec: &JobAssign,
        mut outputs: Vec<Vec<u8>>,
        ctx: &OutputContext,
        salt: &[u8; OUTPUT_SALT_LEN],
    ) -> Result<(Vec<Vec<u8>>, Digest), SealError> {
        match self.output_sealer(spec, ctx, salt) {
            Ok(sealer) => self.seal_outputs_with(spec, outputs, sealer),
            Err(e) => {
                for o in outputs.iter_mut() {
                    o.zeroize();
                }
                Err(e)
            }
        }
    }

    /// [`OpenedJob::seal_outputs`] with the streams made ready before the
    /// run (`sealer`, of this job and `spec`), which it uses up: its
    /// streams seal one set of outputs, never a second under the same
    /// nonces.
    pub fn seal_outputs_with(
        &self,
        spec: &JobAssign,
        mut outputs: Vec<Vec<u8>>,
        sealer: OutputSealer,
    ) -> Result<(Vec<Vec<u8>>, Digest), SealError> {
        let result = (|| {
            let digest = self.plain.as_ref().ok_or(SealError::Unhashed)?;
            let lens = output_plain_lens(&spec.buffers)?;
            let readback = spec.buffers.iter().filter(|b| b.readback);
            // Each output holds at least its plaintext: the buffer in full,
            // or (a host that returns what the kernel wrote) its front.
            if outputs.len() != lens.len()
                || sealer.keys.len() != lens.len()
                || outputs
                    .iter()
                    .zip(readback.clone())
                    .zip(&lens)
                    .any(|((o, b), &p)| (o.len() as u64) < p || o.len() as u64 > b.len)
            {
                return Err(SealError::BadLength);
            }
            let plain: Vec<&[u8]> = outputs
                .iter()
                .zip(&lens)
                .map(|(o, &n)| &o[..n as usize])
                .collect();
            let mut sealed = Vec::with_capacity(outputs.len());
            for (index, ((p, b), key)) in plain.iter().zip(readback).zip(&sealer.keys).enumerate() {
                let mut stream = Vec::with_capacity(b.len as usize);
                if index == 0 {
                    stream.extend_from_slice(&sealer.enc);
                    stream.extend_from_slice(&sealer.salt);
                }
                key.seal_into(p, &mut stream)?;
                sealed.push(stream);
            }
            Ok((sealed, digest.result_hash(&self.result_key, &plain)))
        })();
        for o in outputs.iter_mut() {
            o.zeroize();
        }
        result
    }
}

/// What leads a sealed job's first output stream: the output context's
/// encapsulated key and the job's salt; `None` when it is too short.
pub fn output_prefix(first_output: &[u8]) -> Option<([u8; KEY_LEN], [u8; OUTPUT_SALT_LEN])> {
    if first_output.len() < OUTPUT_PREFIX_LEN {
        return None;
    }
    let mut enc = [0u8; KEY_LEN];
    let mut salt = [0u8; OUTPUT_SALT_LEN];
    enc.copy_from_slice(&first_output[..KEY_LEN]);
    salt.copy_from_slice(&first_output[KEY_LEN..OUTPUT_PREFIX_LEN]);
    Some((enc, salt))
}

/// The requester's end of a provider's output context: `requester`'s key
/// opening outputs sealed with `output_enc` ([`output_prefix`]) for the
/// jobs of the requester context `requester_enc` on `device_key`. A
/// requester keeps it for the next results of the same context.
pub fn output_receiver(
    requester: &KeyPair,
    device_key: &[u8; 32],
    requester_enc: &[u8; KEY_LEN],
    output_enc: &[u8; KEY_LEN],
) -> Result<Receiver, SealError> {
    Receiver::new(
        requester,
        output_enc,
        &requester_info(device_key, requester_enc),
    )
}

/// The requester's side of the outputs: opens each read-back buffer's
/// sealed stream (`sealed`, in buffer order, as the receipt's output root
/// covers them) in `receiver` ([`output_receiver`]) under the job's nonce
/// and binding (of `spec`, the sealed assignment) and the salt at the
/// front of the first, and returns the plaintext.
pub fn open_outputs(
    receiver: &Receiver,
    spec: &JobAssign,
    sealed: &[Vec<u8>],
) -> Result<Vec<Zeroizing<Vec<u8>>>, SealError> {
    let buffers = &spec.buffers;
    let binding = assignment_binding(spec).ok_or(SealError::BadLength)?;
    let nonce = &spec.requester_nonce;
    let lens = output_plain_lens(buffers)?;
    if sealed.len() != lens.len() || sealed.is_empty() {
        return Err(SealError::BadLength);
    }
    let (_, salt) = output_prefix(&sealed[0]).ok_or(SealError::BadLength)?;
    let (jb, n) = job_bytes(nonce, &binding, Some(&salt));
    let job_key = receiver.job_key(&jb[..n])?;
    let mut out = Vec::with_capacity(sealed.len());
    let mut index = 0;
    for (i, b) in buffers.iter().enumerate() {
        if !b.readback {
            continue;
        }
        let bytes = if index == 0 {
            &sealed[0][OUTPUT_PREFIX_LEN..]
        } else {
            &sealed[index][..]
        };
        out.push(job_key.stream(i as u32, lens[index])?.open(bytes)?);
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
    PlainDigest::of_assignment(spec_in_clear, kernel, push_constants, inputs)
        .result_hash(result_key, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::{BoundedString, BoundedVec};
    use crate::wire::KernelSpec;

    const DEVICE: [u8; 32] = [0xD0; 32];
    const NONCE: [u8; 32] = [0x4E; 32];

    /// The wire assignment a requester builds for `sealed` (what the agent
    /// holds): stream lengths as sealed, outputs declared sealed.
    fn assignment(sealed: &SealedJob, layout: &[BufferSpec]) -> JobAssign {
        let buffers = BoundedVec::from_slice(layout).unwrap();
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

    /// The job in the clear with entry point `main` on one workgroup, its
    /// kernel sealed.
    fn plain_job<'a>(
        layout: &'a [BufferSpec],
        kernel: &'a [u8],
        push_constants: &'a [u8],
        inputs: &'a [&'a [u8]],
    ) -> PlainJob<'a> {
        PlainJob {
            entry_point: "main",
            specialization: &[],
            grid: [1, 1, 1],
            buffers: layout,
            kernel,
            push_constants,
            inputs,
            seal_kernel: true,
        }
    }

    /// `kernel`, `push_constants` and `inputs` (laid out as `layout`)
    /// sealed by `requester` to `provider` under [`NONCE`], result key
    /// `[7; 32]`: the requester's context and the sealed job.
    fn seal_for(
        provider: &KeyPair,
        requester: &KeyPair,
        kernel: &[u8],
        push_constants: &[u8],
        inputs: &[&[u8]],
        layout: &[BufferSpec],
    ) -> (RequesterContext, SealedJob) {
        let job = plain_job(layout, kernel, push_constants, inputs);
        let recipient = Recipient {
            enc_key: *provider.public(),
            device_key: DEVICE,
        };
        let ctx = RequesterContext::new(&recipient, &[3; 32]).unwrap();
        let sealed = seal_job(&ctx, &NONCE, requester.public(), &[7; 32], &job).unwrap();
        (ctx, sealed)
    }

    /// More inputs than a job has buffers (at most `MAX_BUFFERS`) are
    /// refused: input `i` is stream `i + 1`, and past them the numbers of
    /// the push constants and the result key would come round.
    #[test]
    fn a_job_with_more_inputs_than_buffers_is_not_sealed() {
        let provider = KeyPair::derive(&[1; 32]);
        let requester = KeyPair::derive(&[2; 32]);
        let recipient = Recipient {
            enc_key: *provider.public(),
            device_key: DEVICE,
        };
        let ctx = RequesterContext::new(&recipient, &[3; 32]).unwrap();
        let input = [1u8; 16];
        for (buffers, inputs) in [(MAX_BUFFERS, MAX_BUFFERS + 1), (2, 3)] {
            let plain: Vec<_> = (0..buffers as u32).map(|b| (b, 16, 16, false)).collect();
            let layout = sealed_layout(&plain).unwrap();
            let inputs: Vec<&[u8]> = (0..inputs).map(|_| &input[..]).collect();
            let job = plain_job(&layout, &[1, 2, 3, 4], &[], &inputs);
            assert!(matches!(
                seal_job(&ctx, &NONCE, requester.public(), &[7; 32], &job),
                Err(SealError::BadLength)
            ));
        }
        let layout = sealed_layout(&[(0, 16, 16, false), (1, 16, 16, true)]).unwrap();
        let two: [&[u8]; 2] = [&input, &input];
        let job = plain_job(&layout, &[1, 2, 3, 4], &[], &two);
        assert!(seal_job(&ctx, &NONCE, requester.public(), &[7; 32], &job).is_ok());
    }

    /// Opened unhashed, a job's outputs are not sealed until its plaintext
    /// is hashed; hashed later (from the run's plaintext), and with its
    /// output streams made ready before the run, they seal to the same
    /// bytes and result hash as a job hashed when opened.
    #[test]
    fn a_job_hashed_after_it_opens_seals_as_one_hashed_when_it_opens() {
        let provider = KeyPair::derive(&[1; 32]);
        let requester = KeyPair::derive(&[2; 32]);
        let kernel: Vec<u8> = (0..300u32).flat_map(|i| i.to_le_bytes()).collect();
        let a: Vec<u8> = (0..9_000u32).map(|i| (i * 7) as u8).collect();
        let layout = sealed_layout(&[(0, a.len() as u64, a.len() as u64, true)]).unwrap();
        let (ctx, sealed) = seal_for(
            &provider,
            &requester,
            &kernel,
            &[9, 8, 7, 6],
            &[&a],
            &layout,
        );
        let spec = assignment(&sealed, &layout);
        let receiver = provider_context(&provider, &DEVICE, ctx.enc()).unwrap();
        let out_ctx = OutputContext::new(requester.public(), &DEVICE, ctx.enc(), &[4; 32]).unwrap();
        let outputs: Vec<Vec<u8>> = vec![(0..layout[0].len).map(|j| j as u8).collect()];

        let hashed = open_job(&receiver, &spec, &sealed.kernel, &sealed.inputs).unwrap();
        assert!(hashed.is_hashed());
        let want = hashed
            .seal_outputs(&spec, outputs.clone(), &out_ctx, &[5; 16])
            .unwrap();

        let mut later =
            open_job_unhashed(&receiver, &spec, &sealed.kernel, &sealed.inputs).unwrap();
        assert!(!later.is_hashed());
        let sealer = |job: &OpenedJob| job.output_sealer(&spec, &out_ctx, &[5; 16]).unwrap();
        assert_eq!(
            later
                .seal_outputs_with(&spec, outputs.clone(), sealer(&later))
                .err(),
            Some(SealError::Unhashed),
            "no outputs are sealed under a result hash of nothing"
        );
        let inputs: Vec<&[u8]> = later.inputs.iter().map(|b| b.as_slice()).collect();
        let digest =
            PlainDigest::of_assignment(&spec, &later.kernel, &later.push_constants, &inputs);
        drop(inputs);
        later.set_plain_digest(digest);
        assert!(later.is_hashed());
        assert_eq!(
            later
                .seal_outputs_with(&spec, outputs, sealer(&later))
                .unwrap(),
            want
        );
        // The requester's digest of the job in the clear is the same one.
        let requester_side = PlainDigest::new(
            &kernel,
            "main",
            &[],
            &[9, 8, 7, 6],
            [1, 1, 1],
            &layout,
            &[&a],
        );
        assert_eq!(requester_side, digest);
    }

    #[test]
    fn a_job_sealed_by_its_requester_opens_on_its_provider_and_back() {
        let provider = KeyPair::derive(&[1; 32]);
        let requester = KeyPair::derive(&[2; 32]);
        let kernel: Vec<u8> = (0..400u32).flat_map(|i| i.to_le_bytes()).collect();
        let a: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let b = b"the second buffer".to_vec();
        let layout = sealed_layout(&[
            (0, a.len() as u64, a.len() as u64, true),
            (1, b.len() as u64, b.len() as u64, true),
        ])
        .unwrap();
        let (ctx, sealed) = seal_for(
            &provider,
            &requester,
            &kernel,
            &[1, 2, 3, 4],
            &[&a, &b],
            &layout,
        );
        assert_ne!(sealed.kernel, kernel);
        assert!(!sealed.inputs[0].windows(16).any(|w| w == &a[100..116]));
        let spec = assignment(&sealed, &layout);
        let receiver = provider_context(&provider, &DEVICE, ctx.enc()).unwrap();
        let opened = open_job(&receiver, &spec, &sealed.kernel, &sealed.inputs).unwrap();
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
        let out_ctx = OutputContext::new(requester.public(), &DEVICE, ctx.enc(), &[4; 32]).unwrap();
        let (sealed_out, hash) = opened
            .seal_outputs(&spec, outputs.clone(), &out_ctx, &[5; 16])
            .unwrap();
        for (o, bs) in sealed_out.iter().zip(spec.buffers.iter()) {
            assert_eq!(o.len() as u64, bs.len, "each output is its declared length");
        }
        let (enc, salt) = output_prefix(&sealed_out[0]).unwrap();
        assert_eq!((&enc, salt), (out_ctx.enc(), [5; 16]));
        let back = output_receiver(&requester, &DEVICE, ctx.enc(), &enc).unwrap();
        let plain = open_outputs(&back, &spec, &sealed_out).unwrap();
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
        let wrong = output_receiver(&stranger, &DEVICE, ctx.enc(), &enc).unwrap();
        assert_eq!(
            open_outputs(&wrong, &spec, &sealed_out).err(),
            Some(SealError::Forged)
        );
        // Another session's key opens nothing either.
        let later = KeyPair::derive(&[6; 32]);
        let stale = provider_context(&later, &DEVICE, ctx.enc()).unwrap();
        assert_eq!(
            open_job(&stale, &spec, &sealed.kernel, &sealed.inputs).err(),
            Some(SealError::Forged)
        );
        // A second job in the same contexts: its own nonce, its own keys
        // (the first job's bytes under the second's nonce do not open).
        let mut second = spec.clone();
        second.requester_nonce = [0x4F; 32];
        assert_eq!(
            open_job(&receiver, &second, &sealed.kernel, &sealed.inputs).err(),
            Some(SealError::Forged)
        );
        let inputs: [&[u8]; 2] = [&a, &b];
        let job = plain_job(&layout, &kernel, &[1, 2, 3, 4], &inputs);
        let sealed2 = seal_job(&ctx, &[0x4F; 32], requester.public(), &[7; 32], &job).unwrap();
        let spec2 = assignment(&sealed2, &layout);
        let mut spec2 = spec2;
        spec2.requester_nonce = [0x4F; 32];
        let opened2 = open_job(&receiver, &spec2, &sealed2.kernel, &sealed2.inputs).unwrap();
        assert!(opened2.inputs[0].as_slice() == a.as_slice());
        let (out2, _) = opened2
            .seal_outputs(&spec2, outputs.clone(), &out_ctx, &[6; 16])
            .unwrap();
        assert_ne!(out2, sealed_out, "another nonce and salt, other bytes");
        let plain2 = open_outputs(&back, &spec2, &out2).unwrap();
        assert!(plain2[0].as_slice() == plain[0].as_slice());
        // The same sealed streams under another clear part open to nothing:
        // another requester key (outputs redirected), another grid, another
        // layout, the kernel said to be in the clear.
        let mut redirected = spec.clone();
        if let Some(s) = redirected.sealing.as_mut() {
            s.requester_key = *stranger.public();
        }
        let mut regrid = spec.clone();
        regrid.kernel.grid = [2, 1, 1];
        let mut relaid = spec.clone();
        relaid.buffers[1].readback = false;
        let mut unsealed = spec.clone();
        if let Some(s) = unsealed.sealing.as_mut() {
            s.kernel_sealed = false;
        }
        for changed in [redirected, regrid, relaid, unsealed] {
            assert_eq!(
                open_job(&receiver, &changed, &sealed.kernel, &sealed.inputs).err(),
                Some(SealError::Forged)
            );
        }
    }
}
