//! The requester side: submit a job to a coordinator over TLS and verify the
//! result from the provider's own signatures rather than the coordinator's
//! word: its receipt, checked against the submission by the same rules the
//! coordinator applies (`tessera_core::job`), the outputs against the
//! receipt's Merkle root, one output chunk against a Merkle audit path, and
//! the evidence the receipt names (see [`verify_result`] for what that
//! does and does not prove).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufWriter, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tessera_core::attest::{Evidence, Receipt, ReceiptStatus, StatementSlot, VerifyError};
use tessera_core::e2e::{self, SealError};
use tessera_core::job;
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::merkle::{leaf_hash, prove, verify_proof, RootBuilder};
use tessera_core::wire::{Digest, JobAssign, Nonce};

use zeroize::Zeroizing;

use crate::protocol::{
    encode_frame, read_frame, response_limit, BufferInit, FailureCode, FrameError, JobFailure,
    JobResult, ProviderEntry, Request, Response, SealedFor, Submit, DEFAULT_MAX_REQUEST_BODY,
    MAX_IN_FLIGHT, MAX_PROVIDERS_LISTED, REQUEST_HEADER_LEN, REQUEST_MAGIC, RESPONSE_OVERHEAD,
};
use crate::submission::{RequestView, SubmitView};

/// Why a submission produced no verified result.
#[derive(Debug)]
pub enum RequesterError {
    /// The coordinator could not be reached.
    Connect(SocketAddr, io::Error),
    /// The TLS handshake failed: the server is not the one the configuration
    /// trusts (wrong CA or pin), or does not speak TLS 1.3.
    Tls(io::Error),
    /// The exchange failed after the handshake.
    Frame(FrameError),
    /// The coordinator answered that the job failed.
    Failed(JobFailure),
    /// The coordinator delivered a result that does not verify.
    Verify(ResultCheckError),
    /// The system random source failed (making a nonce, or keys).
    NoRandomness,
    /// No connected provider takes sealed jobs (among the trusted ones,
    /// when keys are pinned).
    NoSealingProvider,
    /// A sealed job for a provider whose key is not among those pinned
    /// ([`Requester::trust_providers`]).
    UntrustedProvider,
    /// The job could not be sealed (a length sealing does not take).
    Seal(SealError),
    /// The job was sent, but the connection failed before its answer came
    /// ([`Requester::submit_all`]): it may have run.
    NotAnswered,
    /// The connection failed before the job was sent
    /// ([`Requester::submit_all`]).
    NotSent,
}

impl fmt::Display for RequesterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequesterError::Connect(a, e) => write!(f, "cannot reach the coordinator at {a}: {e}"),
            RequesterError::Tls(e) => write!(
                f,
                "TLS handshake failed (is the CA file or key pin the coordinator's?): {e}"
            ),
            RequesterError::Frame(e) => write!(f, "requester protocol error: {e}"),
            RequesterError::Failed(j) if j.code == FailureCode::KernelTimeout => write!(
                f,
                "job {} timed out on the provider, charged {}: {}",
                j.job, j.price, j.reason
            ),
            RequesterError::Failed(j) => match j.provider {
                // The provider's own reason and detail, put in words here.
                Some((reason, detail)) => write!(
                    f,
                    "job {} failed on the provider: {}{}",
                    j.job,
                    tessera_core::reasons::describe_failure(reason, detail),
                    if j.receipt.is_some() {
                        " (signed in the provider's failure receipt)"
                    } else {
                        ""
                    }
                ),
                None => write!(f, "job {} failed ({:?}): {}", j.job, j.code, j.reason),
            },
            RequesterError::Verify(e) => write!(f, "the result does not verify: {e}"),
            RequesterError::NoRandomness => f.write_str("the system random source failed"),
            RequesterError::NoSealingProvider => f.write_str(
                "no connected provider takes sealed jobs (protocol version 3 with a session key)",
            ),
            RequesterError::Seal(e) => write!(f, "cannot seal the job: {e}"),
            RequesterError::UntrustedProvider => {
                f.write_str("the provider's device key is not among the trusted ones")
            }
            RequesterError::NotAnswered => f.write_str(
                "the connection failed before the job's answer came (the job may have run)",
            ),
            RequesterError::NotSent => f.write_str("the connection failed before the job was sent"),
        }
    }
}

impl std::error::Error for RequesterError {}

impl From<FrameError> for RequesterError {
    fn from(e: FrameError) -> Self {
        RequesterError::Frame(e)
    }
}

/// A fresh random nonce for [`Submit::nonce`].
pub fn new_nonce() -> Result<Nonce, RequesterError> {
    let mut n = [0u8; 32];
    SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| RequesterError::NoRandomness)?;
    Ok(n)
}

/// Connects to a coordinator over TLS; the server name checked against its
/// certificate is the address's IP.
pub fn connect(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, RequesterError> {
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = ClientConnection::new(tls, name)
        .map_err(|e| RequesterError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| RequesterError::Connect(addr, e))?;
    let _ = sock.set_nodelay(true);
    let mut stream = StreamOwned::new(conn, sock);
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| RequesterError::Connect(addr, e))?;
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(RequesterError::Tls)?;
    }
    Ok(stream)
}

/// A requester's socket. rustls reads at most 4 KiB at a time; this reads
/// up to 64 KiB from the kernel and hands it out in those pieces, so that a
/// tiny job's result (about 5 KiB) costs one read, a system call, not two,
/// and results coming back to back far fewer. The read timeout is set only
/// when it changes (each job sets it).
struct Socket {
    sock: TcpStream,
    rx: Box<[u8]>,
    at: usize,
    end: usize,
    read_timeout: Option<Duration>,
}

impl Socket {
    const READ: usize = 64 << 10;

    fn new(sock: TcpStream) -> Socket {
        Socket {
            read_timeout: sock.read_timeout().ok().flatten(),
            sock,
            rx: vec![0; Self::READ].into_boxed_slice(),
            at: 0,
            end: 0,
        }
    }

    fn set_read_timeout(&mut self, wait: Duration) -> io::Result<()> {
        if self.read_timeout != Some(wait) {
            self.sock.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
        Ok(())
    }

    /// Whether bytes read from the kernel wait here, not yet taken.
    fn buffered(&self) -> bool {
        self.at < self.end
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.end && !buf.is_empty() {
            let n = self.sock.read(&mut self.rx)?;
            (self.at, self.end) = (0, n);
        }
        let n = buf.len().min(self.end - self.at);
        buf[..n].copy_from_slice(&self.rx[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.sock.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// A connection to a coordinator that submits jobs one after another,
/// paying for the TLS handshake once, and checking each provider session's
/// evidence signature once ([`EvidenceCache`]).
pub struct Requester {
    stream: StreamOwned<ClientConnection, Socket>,
    addr: SocketAddr,
    evidence: EvidenceCache,
    /// Sealing: this requester's key for outputs (drawn at the first sealed
    /// job), its contexts sealed to provider sessions, and its ends of the
    /// providers' output contexts, the last few of each.
    sealing: Option<Sealing>,
    /// Device keys this requester seals jobs to (none: any the coordinator
    /// lists).
    trusted: Vec<[u8; 32]>,
}

/// A requester's sealing state: its key, and the HPKE contexts it keeps so
/// that each provider session costs it one setup each way, not one per job.
struct Sealing {
    keys: e2e::KeyPair,
    contexts: VecDeque<(e2e::Recipient, e2e::RequesterContext)>,
    /// By the requester context's and the output context's encapsulated
    /// keys.
    outputs: VecDeque<(EncPair, e2e::Receiver)>,
}

/// Two encapsulated keys: a requester context's and an output context's.
type EncPair = ([u8; 32], [u8; 32]);

impl Sealing {
    const KEPT: usize = 16;
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Requester {
    /// Connects and completes the TLS handshake.
    pub fn connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Requester, RequesterError> {
        let stream = connect(addr, tls)?;
        Ok(Requester {
            stream: StreamOwned::new(stream.conn, Socket::new(stream.sock)),
            addr,
            evidence: EvidenceCache::default(),
            sealing: None,
            trusted: Vec::new(),
        })
    }

    /// Submits a job, waits for its result and verifies it
    /// ([`verify_result`]). A failure the coordinator reports comes back as
    /// [`RequesterError::Failed`]. The job is encoded straight onto the
    /// connection, and no more is read back than its read-back buffers and
    /// a small overhead ([`response_limit`]).
    pub fn submit(&mut self, job: &Submit) -> Result<JobResult, RequesterError> {
        self.submit_checked(job).map(|(result, _, _)| result)
    }

    /// [`Requester::submit`], returning also what was checked and the
    /// assignment the receipt was checked against.
    fn submit_checked(
        &mut self,
        job: &Submit,
    ) -> Result<(JobResult, ResultCheck, JobAssign), RequesterError> {
        self.send(job)?;
        self.receive_checked(job)
    }

    /// Sends `job`, its answer awaited for its deadline and 30 s more.
    fn send(&mut self, job: &Submit) -> Result<(), RequesterError> {
        let wait = Duration::from_millis(u64::from(job.deadline_ms))
            .saturating_add(Duration::from_secs(30));
        self.stream
            .sock
            .set_read_timeout(wait)
            .map_err(|e| RequesterError::Connect(self.addr, e))?;
        write_submit(&mut self.stream, job)?;
        Ok(())
    }

    /// Reads the answer to `job`, sent last, and verifies it.
    fn receive_checked(
        &mut self,
        job: &Submit,
    ) -> Result<(JobResult, ResultCheck, JobAssign), RequesterError> {
        // Hashed while the job is out, not after its answer comes.
        let expected = expected_assignment(job);
        let response: Response = read_frame(&mut self.stream, response_limit(job))?;
        self.check_response(job, expected, response)
    }

    /// The answer to `job`, verified.
    fn check_response(
        &mut self,
        job: &Submit,
        expected: Result<JobAssign, ResultCheckError>,
        response: Response,
    ) -> Result<(JobResult, ResultCheck, JobAssign), RequesterError> {
        match response {
            Response::Result(result) => {
                let (check, assign) = verify_against(job, expected, &result, &mut self.evidence)
                    .map_err(RequesterError::Verify)?;
                Ok((result, check, assign))
            }
            Response::Failed(f) => Err(RequesterError::Failed(f)),
            Response::Providers(_) => Err(RequesterError::Frame(FrameError::Malformed(
                postcard::Error::DeserializeBadEnum,
            ))),
        }
    }

    /// Submits `jobs` with up to `in_flight` of them sent ahead of their
    /// answers (1 to [`MAX_IN_FLIGHT`]; other values are brought within),
    /// and verifies each result as [`Requester::submit`] does. The
    /// coordinator works on the jobs in flight at once and answers in the
    /// order they were sent, so a stream of small jobs keeps a provider's
    /// job slots full from one connection, and a statement a provider signed
    /// for several of them (batched receipts) is verified once.
    ///
    /// One result per job, in the jobs' order. A job refused before it is
    /// sent (too large) gets its error and the others go on. When the
    /// connection fails, the job whose write or read failed gets that error,
    /// the others sent get [`RequesterError::NotAnswered`] (they may have
    /// run), those not sent [`RequesterError::NotSent`], and the requester
    /// is not to be used again.
    pub fn submit_all(
        &mut self,
        jobs: &[Submit],
        in_flight: usize,
    ) -> Vec<Result<JobResult, RequesterError>> {
        /// Request bytes sent ahead of the oldest unanswered job, at most
        /// (beyond one job): so that answers are read while large jobs are
        /// still being written, and none waits at the coordinator for long.
        const AHEAD_BYTES: usize = 8 << 20;
        let size =
            |j: &Submit| j.kernel.len() + j.buffers.iter().map(|b| b.init.len()).sum::<usize>();
        let window = in_flight.clamp(1, MAX_IN_FLIGHT);
        let mut results: Vec<Option<Result<JobResult, RequesterError>>> =
            jobs.iter().map(|_| None).collect();
        let longest = jobs.iter().map(|j| j.deadline_ms).max().unwrap_or(0);
        let wait =
            Duration::from_millis(u64::from(longest)).saturating_add(Duration::from_secs(30));
        if let Err(e) = self.stream.sock.set_read_timeout(wait) {
            if let Some(first) = results.first_mut() {
                *first = Some(Err(RequesterError::Connect(self.addr, e)));
            }
            return results
                .into_iter()
                .map(|r| r.unwrap_or(Err(RequesterError::NotSent)))
                .collect();
        }
        // Sent and not answered, oldest first, with their sizes.
        let mut sent: VecDeque<(usize, usize)> = VecDeque::with_capacity(window);
        let mut ahead = 0usize;
        let mut next = 0;
        // The job whose write failed, and why: nothing more is written, and
        // what the coordinator answered before it closed is still read.
        let mut write_failed: Option<(usize, RequesterError)> = None;
        let mut read_failed = false;
        loop {
            // While an answer is already here (read from the socket, not yet
            // taken) and over three quarters of the window are out, it is
            // read first: the answers of a batch come together, and the jobs
            // that take their places then leave in one write, not one each.
            let answer_here = !self.stream.conn.wants_read() || self.stream.sock.buffered();
            let refill = !(answer_here && sent.len() > window - window / 4);
            let mut gather = Gather(&mut self.stream);
            let mut wrote = false;
            while refill
                && write_failed.is_none()
                && !read_failed
                && next < jobs.len()
                && sent.len() < window
                && (sent.is_empty() || ahead + size(&jobs[next]) <= AHEAD_BYTES)
            {
                match write_submit_unflushed(&mut gather, &jobs[next]) {
                    Ok(()) => {
                        wrote = true;
                        ahead += size(&jobs[next]);
                        sent.push_back((next, size(&jobs[next])));
                    }
                    // Refused before anything was written.
                    Err(e @ (FrameError::TooLarge(_) | FrameError::Malformed(_))) => {
                        results[next] = Some(Err(e.into()));
                    }
                    Err(e) => {
                        // Part of it may have gone, and been answered.
                        ahead += size(&jobs[next]);
                        sent.push_back((next, size(&jobs[next])));
                        write_failed = Some((next, e.into()));
                    }
                }
                next += 1;
            }
            // What these writes left in TLS goes now, in one write.
            if let (true, None, Some(&(last, _))) = (wrote, &write_failed, sent.back()) {
                if let Err(e) = gather.flush() {
                    write_failed = Some((last, FrameError::Io(e).into()));
                }
            }
            let Some((i, n)) = sent.pop_front() else {
                break;
            };
            ahead = ahead.saturating_sub(n);
            if read_failed {
                let why = match write_failed.take() {
                    Some((w, why)) if w == i => why,
                    other => {
                        write_failed = other;
                        RequesterError::NotAnswered
                    }
                };
                results[i] = Some(Err(why));
                continue;
            }
            // Hashed while the job is out, not after its answer comes.
            let expected = expected_assignment(&jobs[i]);
            let answer = read_frame::<Response>(&mut self.stream, response_limit(&jobs[i]))
                .map_err(RequesterError::from)
                .and_then(|response| self.check_response(&jobs[i], expected, response));
            match answer {
                Err(RequesterError::Frame(e)) => {
                    // The connection's bytes no longer line up with the
                    // jobs: nothing more is read.
                    read_failed = true;
                    results[i] = Some(match write_failed.take() {
                        Some((w, why)) if w == i => Err(why),
                        other => {
                            write_failed = other;
                            Err(RequesterError::Frame(e))
                        }
                    });
                }
                answer => results[i] = Some(answer.map(|(r, _, _)| r)),
            }
        }
        if let Some((w, why)) = write_failed {
            if results[w].is_none() {
                results[w] = Some(Err(why));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(RequesterError::NotSent)))
            .collect()
    }

    /// The providers this requester may seal jobs to now: each one's
    /// evidence, whose signature is verified here (entries whose evidence
    /// does not verify, or that state no session key, are left out).
    pub fn providers(&mut self) -> Result<Vec<(Evidence, ProviderEntry)>, RequesterError> {
        self.stream
            .sock
            .set_read_timeout(Duration::from_secs(30))
            .map_err(|e| RequesterError::Connect(self.addr, e))?;
        let frame = encode_frame(&Request::Providers).map_err(RequesterError::Frame)?;
        self.stream
            .write_all(&frame)
            .map_err(|e| RequesterError::Frame(FrameError::Io(e)))?;
        let limit = MAX_PROVIDERS_LISTED * 1024 + RESPONSE_OVERHEAD;
        match read_frame(&mut self.stream, limit)? {
            Response::Providers(list) => Ok(list
                .into_iter()
                .filter_map(|p| {
                    let e = self.evidence.open(&p.evidence).ok()?;
                    (e.enc_key != [0; 32] && e.challenge == p.challenge).then_some((e, p))
                })
                .collect()),
            Response::Failed(f) => Err(RequesterError::Failed(f)),
            Response::Result(_) => Err(RequesterError::Frame(FrameError::Malformed(
                postcard::Error::DeserializeBadEnum,
            ))),
        }
    }

    /// Seals jobs to these device keys only (the providers' Ed25519 public
    /// keys). The providers a requester may seal to come from the
    /// coordinator's list, and a coordinator that lies can list a provider
    /// of its own, whose session key it holds: sealing keeps a job from a
    /// coordinator that is honest but curious, or whose memory, logs or
    /// storage are taken, but against one that lies the requester must pin
    /// the keys it trusts (or check a hardware attestation report).
    pub fn trust_providers(&mut self, keys: &[[u8; 32]]) {
        self.trusted = keys.to_vec();
    }

    /// Submits `job` sealed end to end (`docs/PROTOCOL.md`, "Sealed jobs"):
    /// picks a provider that takes sealed jobs and meets the job's
    /// requirements ([`Requester::providers`]), seals the kernel, the push
    /// constants and every input to its session key under a nonce drawn for
    /// the job (it replaces `job.nonce`), asks for the outputs sealed to
    /// this requester's key (drawn once per `Requester`), and submits. The
    /// coordinator sees only ciphertext. With keys pinned
    /// ([`Requester::trust_providers`]) only those providers are chosen. The result is verified as [`Requester::submit`]
    /// does, then the outputs are opened and the receipt's keyed result
    /// hash recomputed from the plaintext. Returns the result as delivered
    /// (sealed) and the outputs in the clear, each its buffer's `len`.
    pub fn submit_sealed(&mut self, job: &Submit) -> Result<SealedResult, RequesterError> {
        let mut providers = self.providers()?;
        if !self.trusted.is_empty() {
            providers.retain(|(e, _)| self.trusted.contains(&e.public_key));
        }
        let capable = |e: &Evidence| crate::engine::meets(&e.capabilities, &job.requirements);
        // One that can run the job and has room first; a full one next, as
        // the coordinator orders them; with none able to run it, the first
        // listed, for the coordinator to say why it runs nowhere.
        let chosen = providers
            .iter()
            .find(|(e, p)| capable(e) && (p.load.1 == 0 || p.load.0 < p.load.1))
            .or_else(|| providers.iter().find(|(e, _)| capable(e)))
            .or_else(|| providers.first());
        let Some((evidence, _)) = chosen else {
            return Err(RequesterError::NoSealingProvider);
        };
        self.submit_sealed_to(job, evidence)
    }

    /// [`Requester::submit_sealed`] for the provider of `evidence` (one of
    /// [`Requester::providers`], which a requester sending many jobs lists
    /// once): it fails with `ProviderUnavailable` once that provider's
    /// session has ended.
    pub fn submit_sealed_to(
        &mut self,
        job: &Submit,
        evidence: &Evidence,
    ) -> Result<SealedResult, RequesterError> {
        if !self.trusted.is_empty() && !self.trusted.contains(&evidence.public_key) {
            return Err(RequesterError::UntrustedProvider);
        }
        let provider = e2e::Recipient {
            enc_key: evidence.enc_key,
            device_key: evidence.public_key,
        };
        let rng = SystemRandom::new();
        // The job's result key and its fresh nonce, in one draw.
        let mut drawn = Zeroizing::new([0u8; 64]);
        rng.fill(&mut drawn[..])
            .map_err(|_| RequesterError::NoRandomness)?;
        let mut result_key = Zeroizing::new([0u8; 32]);
        result_key.copy_from_slice(&drawn[..32]);
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&drawn[32..]);
        drop(drawn);
        if self.sealing.is_none() {
            self.sealing = Some(Sealing {
                keys: e2e::KeyPair::generate().map_err(|_| RequesterError::NoRandomness)?,
                contexts: VecDeque::new(),
                outputs: VecDeque::new(),
            });
        }
        let Some(sealing) = self.sealing.as_mut() else {
            return Err(RequesterError::NoRandomness);
        };
        let at = match sealing.contexts.iter().position(|(p, _)| *p == provider) {
            Some(i) => i,
            None => {
                let mut ikm = Zeroizing::new([0u8; 32]);
                rng.fill(&mut ikm[..])
                    .map_err(|_| RequesterError::NoRandomness)?;
                let ctx =
                    e2e::RequesterContext::new(&provider, &ikm).map_err(RequesterError::Seal)?;
                if sealing.contexts.len() == Sealing::KEPT {
                    sealing.contexts.pop_front();
                }
                sealing.contexts.push_back((provider, ctx));
                sealing.contexts.len() - 1
            }
        };
        let submit = seal_submission(
            job,
            evidence,
            &sealing.contexts[at].1,
            nonce,
            sealing.keys.public(),
            &result_key,
        )
        .map_err(RequesterError::Seal)?;
        self.send(&submit)?;
        // What the result hash covers of the job in the clear, hashed
        // while the job runs; the answer is read whatever comes of it.
        let plain = plain_digest(job, &submit);
        let (result, check, assign) = self.receive_checked(&submit)?;
        let plain = plain.map_err(RequesterError::Verify)?;
        if result.provider_public_key != evidence.public_key {
            return Err(RequesterError::Verify(
                ResultCheckError::EvidenceKeyMismatch,
            ));
        }
        let Some(sealing) = self.sealing.as_mut() else {
            return Err(RequesterError::NoRandomness);
        };
        let requester_enc = submit.sealed.map(|s| s.sealing.enc).unwrap_or_default();
        let output_enc = result
            .outputs
            .first()
            .and_then(|o| e2e::output_prefix(o))
            .map(|(enc, _)| enc)
            .ok_or(RequesterError::Verify(ResultCheckError::Sealed(
                SealError::BadLength,
            )))?;
        let key = (requester_enc, output_enc);
        let at = match sealing.outputs.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let receiver = e2e::output_receiver(
                    &sealing.keys,
                    &provider.device_key,
                    &requester_enc,
                    &output_enc,
                )
                .map_err(|e| RequesterError::Verify(ResultCheckError::Sealed(e)))?;
                if sealing.outputs.len() == Sealing::KEPT {
                    sealing.outputs.pop_front();
                }
                sealing.outputs.push_back((key, receiver));
                sealing.outputs.len() - 1
            }
        };
        let outputs = open_with(
            job,
            &assign,
            &result,
            &check.receipt,
            &sealing.outputs[at].1,
            &result_key,
            &plain,
        )
        .map_err(RequesterError::Verify)?;
        Ok(SealedResult {
            result,
            outputs,
            provider: evidence.public_key,
            submit,
        })
    }

    /// Closes the connection cleanly.
    pub fn close(mut self) {
        self.stream.conn.send_close_notify();
        let _ = self.stream.conn.complete_io(&mut self.stream.sock);
    }
}

/// A sealed job's result: as the coordinator delivered it (sealed outputs,
/// the receipt, the evidence), and the outputs in the clear.
pub struct SealedResult {
    /// The result as delivered, verified.
    pub result: JobResult,
    /// Each read-back buffer's contents in the clear, `len` bytes each (as
    /// the job in the clear declared them); zeroed when dropped.
    pub outputs: Vec<Zeroizing<Vec<u8>>>,
    /// The provider's device key the job was sealed for.
    pub provider: [u8; 32],
    /// The sealed submission as sent (what the result verified against).
    pub submit: Submit,
}

impl fmt::Debug for SealedResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedResult")
            .field("job", &self.result.job)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

/// Seals `job` in the requester context `ctx` (for the provider of
/// `evidence`) under `nonce`, a fresh one (it replaces `job.nonce`: two
/// sealings in one context never share one), with outputs sealed to
/// `requester_key` and the keyed result hash under `result_key`. Returns
/// the submission: the sealed kernel, push constants and inputs, each
/// buffer declared for its sealed bytes (a read-back buffer for `len` bytes
/// of plaintext back, [`e2e::sealed_layout`]), every key bound to what
/// travels in the clear ("Sealed jobs").
pub fn seal_submission(
    job: &Submit,
    evidence: &Evidence,
    ctx: &e2e::RequesterContext,
    nonce: Nonce,
    requester_key: &[u8; 32],
    result_key: &[u8; 32],
) -> Result<Submit, SealError> {
    let plain: Vec<(u32, u64, u64, bool)> = job
        .buffers
        .iter()
        .map(|b| (b.binding, b.init.len() as u64, b.len, b.readback))
        .collect();
    let layout = e2e::sealed_layout(&plain)?;
    let inputs: Vec<&[u8]> = job.buffers.iter().map(|b| &b.init[..]).collect();
    let sealed = e2e::seal_job(
        ctx,
        &nonce,
        requester_key,
        result_key,
        &e2e::PlainJob {
            entry_point: &job.entry_point,
            specialization: &job.specialization,
            grid: job.grid,
            buffers: &layout,
            kernel: &job.kernel,
            push_constants: &job.push_constants,
            inputs: &inputs,
            seal_kernel: true,
        },
    )?;
    let buffers = layout
        .iter()
        .zip(sealed.inputs)
        .map(|(b, init)| BufferInit {
            binding: b.binding,
            init,
            len: b.len,
            readback: b.readback,
        })
        .collect();
    Ok(Submit {
        kernel: sealed.kernel,
        entry_point: job.entry_point.clone(),
        specialization: job.specialization.clone(),
        push_constants: sealed.push_constants,
        grid: job.grid,
        buffers,
        requirements: job.requirements,
        est_gpu_ms: job.est_gpu_ms,
        max_price: job.max_price,
        deadline_ms: job.deadline_ms,
        nonce,
        sealed: Some(SealedFor {
            provider: evidence.public_key,
            enc_key: evidence.enc_key,
            sealing: sealed.sealing,
        }),
    })
}

/// Opens a verified sealed result (`submit`, the sealed submission of
/// `job`) with the requester's `keys`, and checks the receipt's keyed
/// result hash against the job and the outputs in the clear. Returns each
/// read-back buffer's first `len` bytes (the job's `len`).
pub fn open_sealed_result(
    job: &Submit,
    submit: &Submit,
    result: &JobResult,
    keys: &e2e::KeyPair,
    result_key: &[u8; 32],
) -> Result<Vec<Zeroizing<Vec<u8>>>, ResultCheckError> {
    let requester_enc = submit.sealed.map(|s| s.sealing.enc).unwrap_or_default();
    let (output_enc, _) = result
        .outputs
        .first()
        .and_then(|o| e2e::output_prefix(o))
        .ok_or(ResultCheckError::Sealed(SealError::BadLength))?;
    let receiver = e2e::output_receiver(
        keys,
        &result.provider_public_key,
        &requester_enc,
        &output_enc,
    )
    .map_err(ResultCheckError::Sealed)?;
    let view = SubmitView::of(submit);
    let buffers = view.job_buffers();
    let mut assign = view
        .description(&buffers)
        .assign(result.job)
        .map_err(ResultCheckError::Job)?;
    assign.sealing = submit.sealed.map(|s| s.sealing);
    let receipt = Receipt::verify_any(&result.receipt, &result.provider_public_key)
        .map_err(ResultCheckError::Receipt)?;
    let plain = plain_digest(job, submit)?;
    open_with(
        job, &assign, result, &receipt, &receiver, result_key, &plain,
    )
}

/// What the result hash of `submit`, `job` sealed, covers of `job` in the
/// clear: its kernel hash and input root, as the sealed assignment lays it
/// out.
fn plain_digest(job: &Submit, submit: &Submit) -> Result<e2e::PlainDigest, ResultCheckError> {
    let view = SubmitView::of(submit);
    let buffers = view.job_buffers();
    let layout = view
        .description(&buffers)
        .layout()
        .map_err(ResultCheckError::Job)?;
    let inputs: Vec<&[u8]> = job.buffers.iter().map(|b| &b.init[..]).collect();
    Ok(e2e::PlainDigest::new(
        &job.kernel,
        &submit.entry_point,
        &submit.specialization,
        &job.push_constants,
        submit.grid,
        &layout,
        &inputs,
    ))
}

/// [`open_sealed_result`] with the assignment and the receipt verified
/// already, the requester's end of the provider's output context at hand,
/// and what the result hash covers of the job in the clear (`plain`).
fn open_with(
    job: &Submit,
    assign: &JobAssign,
    result: &JobResult,
    receipt: &Receipt,
    receiver: &e2e::Receiver,
    result_key: &[u8; 32],
    plain: &e2e::PlainDigest,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ResultCheckError> {
    let opened =
        e2e::open_outputs(receiver, assign, &result.outputs).map_err(ResultCheckError::Sealed)?;
    let outputs: Vec<&[u8]> = opened.iter().map(|o| &o[..]).collect();
    let want = plain.result_hash(result_key, &outputs);
    if receipt.result_hash != want {
        return Err(ResultCheckError::SealedResultHash);
    }
    let readback = job.buffers.iter().filter(|b| b.readback);
    Ok(opened
        .into_iter()
        .zip(readback)
        .map(|(mut o, b)| {
            o.truncate(b.len as usize);
            o
        })
        .collect())
}

/// Writes `job` as one requester frame without copying its kernel or its
/// buffers' data. Refused before anything is written when its body is over
/// [`DEFAULT_MAX_REQUEST_BODY`].
pub fn write_submit(w: &mut impl Write, job: &Submit) -> Result<(), FrameError> {
    write_submit_unflushed(w, job)?;
    w.flush()?;
    Ok(())
}

/// [`write_submit`] without flushing `w`: the frame is handed to `w` in
/// writes of up to 64 KiB.
fn write_submit_unflushed(w: &mut impl Write, job: &Submit) -> Result<(), FrameError> {
    let view = RequestView::Submit(SubmitView::of(job));
    let len = postcard::experimental::serialized_size(&view).map_err(FrameError::Malformed)?;
    if len > DEFAULT_MAX_REQUEST_BODY {
        return Err(FrameError::TooLarge(len as u64));
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len as u64))?;
    // postcard flushes the writer it is given when it ends, and a
    // `BufWriter` passes that on: `Unflushed` keeps it from `w`.
    let mut out = BufWriter::with_capacity((REQUEST_HEADER_LEN + len).min(64 << 10), Unflushed(w));
    let mut header = [0u8; REQUEST_HEADER_LEN];
    header[..2].copy_from_slice(&REQUEST_MAGIC);
    header[2..].copy_from_slice(&len32.to_le_bytes());
    out.write_all(&header)?;
    postcard::to_io(&view, &mut out).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => FrameError::Io(io::Error::new(
            io::ErrorKind::WriteZero,
            "the connection failed",
        )),
        e => FrameError::Malformed(e),
    })?;
    // Hands the rest to `w` without flushing it.
    out.into_inner()
        .map_err(|e| FrameError::Io(e.into_error()))?;
    Ok(())
}

/// Passes writes on to `W` and leaves flushing it to its owner.
struct Unflushed<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Unflushed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes plaintext into a TLS connection and sends its records only when
/// TLS holds all it may, or on `flush`: the requests [`Requester::submit_all`]
/// sends back to back leave in as few writes as they fit, rather than one
/// (and one wake-up of the coordinator) each.
struct Gather<'a>(&'a mut StreamOwned<ClientConnection, Socket>);

impl Write for Gather<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.0.conn.writer().write(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // TLS holds all it may: send that first.
            if !self.0.conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.0.conn.write_tls(&mut self.0.sock)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.0.conn.wants_write() {
            self.0.conn.write_tls(&mut self.0.sock)?;
        }
        Ok(())
    }
}

/// Submits one job on a new connection, waits for its result and verifies
/// it ([`verify_result`]). A failure the coordinator reports comes back as
/// [`RequesterError::Failed`].
pub fn submit(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    job: &Submit,
) -> Result<JobResult, RequesterError> {
    let mut requester = Requester::connect(addr, tls)?;
    let result = requester.submit(job);
    requester.close();
    result
}

/// Why a delivered result does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultCheckError {
    /// The evidence is not well formed or not signed by the key it carries.
    Evidence(VerifyError),
    /// The evidence is another key's than the one said to have signed.
    EvidenceKeyMismatch,
    /// The evidence answers another challenge than the one the coordinator
    /// says it sent (`JobResult::evidence_challenge`).
    ChallengeMismatch,
    /// The receipt's signature or form under the provider's key.
    Receipt(VerifyError),
    /// The receipt does not report a completed job.
    NotCompleted,
    /// The outputs delivered are not one per read-back buffer, each of its
    /// length.
    Outputs,
    /// The submission does not make an assignment (a field over its
    /// capacity), so there is nothing to check the receipt against.
    Job(job::BuildError),
    /// The receipt breaks a rule of the job (which one, with the numbers).
    Check(job::ReceiptCheckError),
    /// The Merkle spot check of an output chunk failed.
    SpotCheck(VerifyError),
    /// A sealed job's outputs do not open with the requester's key.
    Sealed(SealError),
    /// A sealed job's keyed result hash is not the one the plaintext gives.
    SealedResultHash,
}

impl fmt::Display for ResultCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultCheckError::Evidence(e) => write!(f, "provider evidence: {e:?}"),
            ResultCheckError::EvidenceKeyMismatch => {
                f.write_str("the evidence is not the provider key's")
            }
            ResultCheckError::ChallengeMismatch => f.write_str(
                "the evidence answers another challenge than the one the coordinator says it sent",
            ),
            ResultCheckError::Receipt(e) => write!(f, "receipt: {e:?}"),
            ResultCheckError::NotCompleted => f.write_str("the receipt is not for a completed job"),
            ResultCheckError::Outputs => f.write_str(
                "the outputs are not one per read-back buffer, each of the buffer's length",
            ),
            ResultCheckError::Job(e) => write!(f, "the submission makes no assignment: {e}"),
            ResultCheckError::Check(e) => write!(f, "receipt: {e}"),
            ResultCheckError::SpotCheck(e) => write!(f, "output chunk spot check: {e:?}"),
            ResultCheckError::Sealed(e) => write!(f, "the sealed outputs: {e}"),
            ResultCheckError::SealedResultHash => f.write_str(
                "the receipt's result hash is not the keyed hash of the job and the outputs in \
                 the clear",
            ),
        }
    }
}

impl std::error::Error for ResultCheckError {}

/// What [`verify_result`] checked, for display.
#[derive(Clone, Debug)]
pub struct ResultCheck {
    /// The decoded, verified receipt.
    pub receipt: Receipt,
    /// The decoded evidence: signed by the provider key, answering the
    /// challenge the coordinator reports, named by the receipt. When it was
    /// made is not proven (see [`verify_result`]).
    pub evidence: Evidence,
    /// The output chunk spot-checked: its index, the tree's size, the audit
    /// path's length.
    pub spot_check: (u64, u64, usize),
}

/// Verifies a result from the provider's signatures and the submission, not
/// from the coordinator's word:
///
/// - the evidence is well formed and signed by the key it carries, which is
///   `provider_public_key`;
/// - the receipt verifies under that key and names that evidence;
/// - the receipt is checked against the submission with
///   [`job::check_receipt`], the same rules the coordinator applies: job,
///   requester nonce (the one in `job`), kernel hash and input root
///   recomputed from `job`, output root and length recomputed from the
///   outputs, usage and price equal to those delivered, result hash and
///   seal, `bytes_in`/`bytes_out`, price at most `job.max_price`;
/// - one output chunk (chosen from the nonce) against the signed output
///   root through a Merkle audit path whose tree size is the leaf count of
///   the submission's read-back buffers.
///
/// What the evidence proves here is limited. Its challenge is compared
/// with `evidence_challenge`, which the coordinator reports: a match shows
/// only that the coordinator's account and the evidence agree, not that the
/// challenge was random or fresh, nor when the session happened. The
/// evidence's `issued_at` is the provider's clock, and a session (and its
/// evidence) may have begun long before this submission, so its age is not
/// checked either. What is fresh is the receipt: it carries this
/// requester's own nonce, so the provider's key signed it after the
/// submission, and in it named this evidence as the one in force for the
/// job. The capabilities are the device's own report, signed, not
/// certified.
pub fn verify_result(job: &Submit, result: &JobResult) -> Result<ResultCheck, ResultCheckError> {
    verify_result_with(job, result, &mut EvidenceCache::default())
}

/// Evidence documents whose signature was verified, kept by their exact
/// bytes (the last [`EvidenceCache::CAPACITY`] distinct ones). A provider's
/// results within one session all carry that session's evidence, so its
/// signature need be checked once: bytes equal to a document already
/// verified verify again. Only the signature check is spared; everything
/// [`verify_result`] compares (the key, the challenge the coordinator
/// reports, the receipt's naming of this evidence) is compared for every
/// result, and bytes differing anywhere are verified afresh. Likewise the
/// last batch statement of each of the last [`EvidenceCache::CAPACITY`]
/// providers: the receipts of a batch ("Batched receipts") carry one
/// statement, whose signature is then checked once, while each receipt's
/// place in it is checked every time.
#[derive(Debug, Default)]
pub struct EvidenceCache {
    verified: VecDeque<(Vec<u8>, Evidence)>,
    statements: VecDeque<([u8; 32], StatementSlot)>,
}

impl EvidenceCache {
    /// Documents kept; the oldest is dropped beyond it.
    pub const CAPACITY: usize = 16;

    /// [`Evidence::open`], skipping the signature for bytes verified before.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Evidence, VerifyError> {
        if let Some((_, e)) = self.verified.iter().find(|(b, _)| b[..] == *bytes) {
            return Ok(e.clone());
        }
        let evidence = Evidence::open(bytes)?;
        if self.verified.len() >= Self::CAPACITY {
            self.verified.pop_front();
        }
        self.verified.push_back((bytes.to_vec(), evidence.clone()));
        Ok(evidence)
    }

    /// [`Receipt::verify_any`], skipping the signature of a batch statement
    /// verified before under the same key.
    pub fn verify_receipt(
        &mut self,
        bytes: &[u8],
        public_key: &[u8; 32],
    ) -> Result<Receipt, VerifyError> {
        let at = match self.statements.iter().position(|(k, _)| k == public_key) {
            Some(i) => i,
            None => {
                if self.statements.len() >= Self::CAPACITY {
                    self.statements.pop_front();
                }
                self.statements.push_back((*public_key, None));
                self.statements.len() - 1
            }
        };
        let slot = &mut self.statements[at].1;
        Receipt::verify_cached(bytes, public_key, slot).map(|v| *v.receipt())
    }
}

/// [`verify_result`], with the evidence's signature looked up in `cache`
/// first ([`EvidenceCache`]).
pub fn verify_result_with(
    job: &Submit,
    result: &JobResult,
    cache: &mut EvidenceCache,
) -> Result<ResultCheck, ResultCheckError> {
    verify_result_inner(job, result, cache).map(|(check, _)| check)
}

/// [`verify_result_with`], returning also the assignment recomputed from
/// the submission.
fn verify_result_inner(
    job: &Submit,
    result: &JobResult,
    cache: &mut EvidenceCache,
) -> Result<(ResultCheck, JobAssign), ResultCheckError> {
    verify_against(job, expected_assignment(job), result, cache)
}

/// The assignment a result for `job` is checked against, from the
/// submission alone: the kernel's and the inputs' Merkle roots, the layout,
/// the nonce, how it is sealed. Its job number is the result's, set when
/// the result is checked.
fn expected_assignment(job: &Submit) -> Result<JobAssign, ResultCheckError> {
    let view = SubmitView::of(job);
    let buffers = view.job_buffers();
    let mut assign = view
        .description(&buffers)
        .assign(0)
        .map_err(ResultCheckError::Job)?;
    // A sealed job's kernel hash binds how it was sealed.
    assign.sealing = job.sealed.map(|s| s.sealing);
    Ok(assign)
}

/// [`verify_result_inner`] against `expected`, the assignment
/// [`expected_assignment`] computed for `job` (its error is reported after
/// the evidence's and the receipt's, as if computed here).
fn verify_against(
    job: &Submit,
    expected: Result<JobAssign, ResultCheckError>,
    result: &JobResult,
    cache: &mut EvidenceCache,
) -> Result<(ResultCheck, JobAssign), ResultCheckError> {
    let evidence = cache
        .open(&result.evidence)
        .map_err(ResultCheckError::Evidence)?;
    if evidence.public_key != result.provider_public_key {
        return Err(ResultCheckError::EvidenceKeyMismatch);
    }
    if evidence.challenge != result.evidence_challenge {
        return Err(ResultCheckError::ChallengeMismatch);
    }
    let receipt = cache
        .verify_receipt(&result.receipt, &result.provider_public_key)
        .map_err(ResultCheckError::Receipt)?;
    if receipt.status != ReceiptStatus::Completed {
        return Err(ResultCheckError::NotCompleted);
    }
    let mut assign = expected?;
    assign.job = result.job;
    let readback: Vec<u64> = job
        .buffers
        .iter()
        .filter(|b| b.readback)
        .map(|b| b.len)
        .collect();
    let lens_ok = readback.len() == result.outputs.len()
        && readback
            .iter()
            .zip(&result.outputs)
            .all(|(l, o)| *l == o.len() as u64);
    if !lens_ok {
        return Err(ResultCheckError::Outputs);
    }
    // The lengths are the layout's: their sum is the assignment's
    // read-back total, which `check_receipt` compares with the receipt's.
    let output_len = assign.bytes_out();
    // Each output chunk is hashed once: its leaves give the output root and
    // the spot check's proof.
    let leaves: Vec<Digest> = result
        .outputs
        .iter()
        .flat_map(|o| o.chunks(CHUNK_SIZE))
        .map(leaf_hash)
        .collect();
    let mut tree = RootBuilder::new();
    for leaf in &leaves {
        tree.push_leaf(*leaf);
    }
    let output_root = tree.root();
    job::check_receipt(
        &receipt,
        &job::Expected {
            assign: &assign,
            provider_key: &result.provider_public_key,
            evidence: &[Evidence::hash(&result.evidence)],
            terms: job::Terms {
                max_price: job.max_price,
                deadline_ms: job.deadline_ms,
                quote: None,
            },
            reported: job::Reported {
                usage: result.usage,
                price: result.price,
            },
            outcome: job::Outcome::Completed {
                output_len,
                output_root,
            },
            received_output_root: Some(output_root),
        },
    )
    .map_err(ResultCheckError::Check)?;
    let spot_check = spot_check(&receipt, assign.output_leaf_count(), &leaves, &job.nonce)?;
    Ok((
        ResultCheck {
            receipt,
            evidence,
            spot_check,
        },
        assign,
    ))
}

/// Checks one output chunk, chosen from the nonce, against the receipt's
/// output root with a Merkle audit path built from the outputs' leaves, for a
/// tree of exactly `leaf_count` leaves (from the layout the kernel hash binds).
fn spot_check(
    receipt: &Receipt,
    leaf_count: u64,
    leaves: &[Digest],
    seed: &Nonce,
) -> Result<(u64, u64, usize), ResultCheckError> {
    if leaves.is_empty() {
        return Ok((0, 0, 0));
    }
    let mut pick = [0u8; 8];
    pick.copy_from_slice(&seed[..8]);
    let index = u64::from_le_bytes(pick) % leaves.len() as u64;
    let refused = || ResultCheckError::SpotCheck(VerifyError::ChunkProofMismatch);
    let proof = prove(leaves, index).map_err(|_| refused())?;
    if proof.tree_size != leaf_count {
        return Err(refused());
    }
    verify_proof(&receipt.output_root, &leaves[index as usize], &proof).map_err(|_| refused())?;
    Ok((index, leaves.len() as u64, proof.path.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::attest::{
        ChainState, DeviceCapabilities, Ed25519Signer, Signer, EVIDENCE_LEN,
    };
    use tessera_core::wire::Requirements;

    fn signed(seed: u8, challenge: u8) -> Vec<u8> {
        let mut signer = Ed25519Signer::from_seed(&[seed; 32]).expect("key");
        let evidence = Evidence {
            challenge: [challenge; 32],
            public_key: signer.public_key(),
            agent_version: [0, 1, 0],
            boot_id: [seed; 16],
            issued_at: 1,
            chain: ChainState::default(),
            capabilities: DeviceCapabilities::default(),
            enc_key: [0; 32],
            hardware_report: tessera_core::attest::HardwareReport::NONE,
        };
        let mut out = vec![0u8; EVIDENCE_LEN];
        let n = evidence.sign(&mut signer, &mut out).expect("sign");
        out.truncate(n);
        out
    }

    /// A writer that records what it is handed and counts its flushes.
    #[derive(Default)]
    struct Counting {
        bytes: Vec<u8>,
        flushes: usize,
    }

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// `submit_all` writes the requests that go together into TLS and sends
    /// them in one write: writing one must not flush (postcard flushes the
    /// writer it serializes into, and a flush of the TLS stream is a system
    /// call and a wake-up of the coordinator per job). The bytes are the
    /// flushing `write_submit`'s.
    #[test]
    fn a_request_written_unflushed_is_not_flushed() {
        let job = Submit {
            kernel: vec![7; 1200],
            entry_point: "main".into(),
            specialization: Vec::new(),
            push_constants: vec![1, 2, 3, 4],
            grid: [1, 1, 1],
            buffers: vec![BufferInit {
                binding: 0,
                init: vec![5; 4096],
                len: 4096,
                readback: true,
            }],
            requirements: Requirements {
                memory_mib: 0,
                features: 0,
            },
            est_gpu_ms: 1,
            max_price: 1000,
            deadline_ms: 1000,
            nonce: [9; 32],
            sealed: None,
        };
        let mut unflushed = Counting::default();
        for _ in 0..3 {
            write_submit_unflushed(&mut unflushed, &job).expect("written");
        }
        assert_eq!(unflushed.flushes, 0);
        let mut flushed = Counting::default();
        write_submit(&mut flushed, &job).expect("written");
        assert!(flushed.flushes >= 1);
        assert_eq!(unflushed.bytes, flushed.bytes.repeat(3));
    }

    /// The cache spares only the signature check of bytes verified before:
    /// a copy with any byte changed, or a forged signature, is refused even
    /// after the genuine document was cached.
    #[test]
    fn the_evidence_cache_verifies_every_new_byte_string() {
        let mut cache = EvidenceCache::default();
        let good = signed(1, 7);
        let first = cache.open(&good).expect("genuine");
        assert_eq!(cache.open(&good), Ok(first.clone()));
        for at in [0, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(cache.open(&bad).is_err(), "byte {at} changed");
            assert_eq!(cache.open(&bad), Evidence::open(&bad));
        }
        // Beyond its capacity the oldest is verified afresh, and still holds.
        for seed in 2..2 + EvidenceCache::CAPACITY as u8 {
            cache.open(&signed(seed, 7)).expect("genuine");
        }
        assert_eq!(cache.verified.len(), EvidenceCache::CAPACITY);
        assert!(cache.verified.iter().all(|(b, _)| *b != good));
        assert_eq!(cache.open(&good), Ok(first));
    }
}
