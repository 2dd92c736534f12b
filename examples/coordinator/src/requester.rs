//! The requester side: submit a job to a coordinator over TLS and verify the
//! result independently of the coordinator, from the provider's own
//! signatures: its evidence, its receipt, the outputs against the receipt's
//! Merkle root, and one output chunk against a Merkle audit path.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tessera_core::attest::{
    kernel_hash, result_hash, result_seal, verify_output_chunk, Evidence, Receipt, ReceiptStatus,
    VerifyError,
};
use tessera_core::limits::CHUNK_SIZE;
use tessera_core::merkle::{leaf_hash, output_leaf_count, prove, root_of, root_of_buffers};
use tessera_core::wire::{BufferSpec, Nonce};

use crate::protocol::{
    read_frame, response_limit, FailureCode, FrameError, JobFailure, JobResult, Response, Submit,
    DEFAULT_MAX_REQUEST_BODY, REQUEST_HEADER_LEN, REQUEST_MAGIC,
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
    /// The system random source failed (making a nonce).
    NoRandomness,
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

/// A connection to a coordinator that submits jobs one after another,
/// paying for the TLS handshake once.
pub struct Requester {
    stream: StreamOwned<ClientConnection, TcpStream>,
    addr: SocketAddr,
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
        Ok(Requester {
            stream: connect(addr, tls)?,
            addr,
        })
    }

    /// Submits a job, waits for its result and verifies it
    /// ([`verify_result`]). A failure the coordinator reports comes back as
    /// [`RequesterError::Failed`]. The job is encoded straight onto the
    /// connection, and no more is read back than its read-back buffers and
    /// a small overhead ([`response_limit`]).
    pub fn submit(&mut self, job: &Submit) -> Result<JobResult, RequesterError> {
        let wait = Duration::from_millis(u64::from(job.deadline_ms))
            .saturating_add(Duration::from_secs(30));
        self.stream
            .sock
            .set_read_timeout(Some(wait))
            .map_err(|e| RequesterError::Connect(self.addr, e))?;
        write_submit(&mut self.stream, job)?;
        let response: Response = read_frame(&mut self.stream, response_limit(job))?;
        match response {
            Response::Result(result) => {
                verify_result(job, &result).map_err(RequesterError::Verify)?;
                Ok(result)
            }
            Response::Failed(f) => Err(RequesterError::Failed(f)),
        }
    }

    /// Closes the connection cleanly.
    pub fn close(mut self) {
        self.stream.conn.send_close_notify();
        let _ = self.stream.conn.complete_io(&mut self.stream.sock);
    }
}

/// Writes `job` as one requester frame without copying its kernel or its
/// buffers' data. Refused before anything is written when its body is over
/// [`DEFAULT_MAX_REQUEST_BODY`].
pub fn write_submit(w: &mut impl Write, job: &Submit) -> Result<(), FrameError> {
    let view = RequestView::Submit(SubmitView::of(job));
    let len = postcard::experimental::serialized_size(&view).map_err(FrameError::Malformed)?;
    if len > DEFAULT_MAX_REQUEST_BODY {
        return Err(FrameError::TooLarge(len as u64));
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len as u64))?;
    let mut out = BufWriter::with_capacity(64 << 10, w);
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
    out.flush()?;
    Ok(())
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
    /// The evidence does not verify (signature, form or challenge).
    Evidence(VerifyError),
    /// The evidence is another key's than the one said to have signed.
    EvidenceKeyMismatch,
    /// The receipt names other evidence than the one delivered.
    EvidenceNotNamed,
    /// The receipt's signature or form.
    Receipt(VerifyError),
    /// The receipt does not report a completed job.
    NotCompleted,
    /// A receipt field disagrees with the job or the outputs; which one.
    Field(&'static str),
    /// The Merkle spot check of an output chunk failed.
    SpotCheck(VerifyError),
}

impl fmt::Display for ResultCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultCheckError::Evidence(e) => write!(f, "provider evidence: {e:?}"),
            ResultCheckError::EvidenceKeyMismatch => {
                f.write_str("the evidence is not the provider key's")
            }
            ResultCheckError::EvidenceNotNamed => {
                f.write_str("the receipt names other evidence than the one delivered")
            }
            ResultCheckError::Receipt(e) => write!(f, "receipt: {e:?}"),
            ResultCheckError::NotCompleted => f.write_str("the receipt is not for a completed job"),
            ResultCheckError::Field(which) => write!(f, "receipt field {which} disagrees"),
            ResultCheckError::SpotCheck(e) => write!(f, "output chunk spot check: {e:?}"),
        }
    }
}

impl std::error::Error for ResultCheckError {}

/// What [`verify_result`] checked, for display.
#[derive(Clone, Debug)]
pub struct ResultCheck {
    /// The decoded, verified receipt.
    pub receipt: Receipt,
    /// The decoded, verified evidence.
    pub evidence: Evidence,
    /// The output chunk spot-checked: its index, the tree's size, the audit
    /// path's length.
    pub spot_check: (u64, u64, usize),
}

/// Verifies a result from the provider's signatures alone: the evidence
/// (over its challenge, by the provider key), the receipt (signature, job,
/// nonce, kernel hash and input root recomputed from `job`, output root and
/// length recomputed from the outputs, result hash and seal, price), and a
/// Merkle audit path of one output chunk against the signed root.
pub fn verify_result(job: &Submit, result: &JobResult) -> Result<ResultCheck, ResultCheckError> {
    use ResultCheckError::Field;
    let evidence = Evidence::verify(&result.evidence, &result.evidence_challenge)
        .map_err(ResultCheckError::Evidence)?;
    if evidence.public_key != result.provider_public_key {
        return Err(ResultCheckError::EvidenceKeyMismatch);
    }
    let receipt = Receipt::verify(&result.receipt, &result.provider_public_key)
        .map_err(ResultCheckError::Receipt)?;
    if receipt.evidence_hash != Evidence::hash(&result.evidence) {
        return Err(ResultCheckError::EvidenceNotNamed);
    }
    if receipt.status != ReceiptStatus::Completed {
        return Err(ResultCheckError::NotCompleted);
    }
    if receipt.job != result.job {
        return Err(Field("job"));
    }
    if receipt.requester_nonce != job.nonce {
        return Err(Field("requester_nonce"));
    }
    let layout: Vec<BufferSpec> = job
        .buffers
        .iter()
        .map(|b| BufferSpec {
            binding: b.binding,
            len: b.len,
            init_len: b.init.len() as u64,
            readback: b.readback,
        })
        .collect();
    let khash = kernel_hash(
        &root_of(&job.kernel),
        &job.entry_point,
        &job.specialization,
        &job.push_constants,
        job.grid,
        &layout,
    );
    if receipt.kernel_hash != khash {
        return Err(Field("kernel_hash"));
    }
    if receipt.input_root != root_of_buffers(job.buffers.iter().map(|b| &b.init[..])) {
        return Err(Field("input_root"));
    }
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
        return Err(Field("outputs (count or lengths)"));
    }
    if receipt.output_root != root_of_buffers(result.outputs.iter().map(|o| &o[..])) {
        return Err(Field("output_root"));
    }
    let stated = readback
        .iter()
        .try_fold(0u64, |n, l| n.checked_add(*l))
        .ok_or(Field("output_len"))?;
    if receipt.output_len != stated {
        return Err(Field("output_len"));
    }
    let rh = result_hash(
        &receipt.kernel_hash,
        &receipt.input_root,
        &receipt.output_root,
        receipt.output_len,
    );
    if receipt.result_hash != rh {
        return Err(Field("result_hash"));
    }
    if receipt.result_seal != result_seal(&result.provider_public_key, receipt.job, &rh) {
        return Err(Field("result_seal"));
    }
    if receipt.price != result.price || receipt.price > job.max_price {
        return Err(Field("price"));
    }
    if receipt.usage != result.usage {
        return Err(Field("usage"));
    }
    let spot_check = spot_check(
        &receipt,
        output_leaf_count(&layout),
        &result.outputs,
        &job.nonce,
    )?;
    Ok(ResultCheck {
        receipt,
        evidence,
        spot_check,
    })
}

/// Checks one output chunk, chosen from the nonce, against the receipt's
/// output root with a Merkle audit path built from the outputs' leaves, for a
/// tree of exactly `leaf_count` leaves (from the layout the kernel hash binds).
fn spot_check(
    receipt: &Receipt,
    leaf_count: u64,
    outputs: &[Vec<u8>],
    seed: &Nonce,
) -> Result<(u64, u64, usize), ResultCheckError> {
    let chunks: Vec<&[u8]> = outputs.iter().flat_map(|o| o.chunks(CHUNK_SIZE)).collect();
    let leaves: Vec<_> = chunks.iter().map(|c| leaf_hash(c)).collect();
    if leaves.is_empty() {
        return Ok((0, 0, 0));
    }
    let mut pick = [0u8; 8];
    pick.copy_from_slice(&seed[..8]);
    let index = u64::from_le_bytes(pick) % leaves.len() as u64;
    let proof = prove(&leaves, index)
        .map_err(|_| ResultCheckError::SpotCheck(VerifyError::ChunkProofMismatch))?;
    verify_output_chunk(receipt, leaf_count, chunks[index as usize], &proof)
        .map_err(ResultCheckError::SpotCheck)?;
    Ok((index, leaves.len() as u64, proof.path.len()))
}
