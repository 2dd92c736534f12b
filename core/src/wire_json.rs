//! Protocol messages as JSON (feature `json`), for bindings, tools and
//! tests that read or write frames without a codec of their own (the C
//! ABI's `tessera_message_decode` and `tessera_message_encode`).
//!
//! The JSON form is `{"type": NAME, "fields": {...}}`, where `NAME` is the
//! message type's name in `docs/PROTOCOL.md` (`"Hello"`, `"JobAssign"`) and
//! `fields` is the `readable` form of `core/tests/vectors/wire.json`:
//! integers as numbers, byte strings as lowercase hex, enums by variant name
//! (`"PriceTooLow"`), field names as in the protocol. Decoding a vector's
//! frame gives its `readable` form and encoding that form gives the frame
//! back, byte for byte.

use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use serde_json::{json, Map, Value};

use crate::bounded::{BoundedString, BoundedVec};
use crate::limits::MAX_FRAME;
use crate::wire::{
    Batching, Blob, BufferSpec, Cancel, Chunk, Completed, DeclineReason, ErrorMsg, FailReason,
    Failed, Goodbye, GoodbyeReason, Heartbeat, Hello, JobAssign, JobOffer, JobRef, KernelSpec,
    Message, MessageType, OfferAccept, OfferDecline, Progress, ReceiptMsg, Requirements,
    ResultRefuse, Sealing, Usage, UsageReport, Welcome,
};

/// Lowercase hex, as the JSON form writes byte strings.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The JSON form of a decoded message.
pub fn to_json(msg: &Message<'_>) -> Value {
    use Message as M;
    let chunk = |c: &Chunk<'_>| {
        json!({
            "job": c.job,
            "stream": c.stream,
            "index": c.index,
            "digest": hex(&c.digest),
            "data": hex(c.data),
        })
    };
    let fields = match msg {
        M::Hello(m) => json!({
            "min_version": m.min_version,
            "max_version": m.max_version,
            "agent_version": m.agent_version,
            "key_id": hex(&m.key_id),
            "next_sequence": m.next_sequence,
            "prev_hash": hex(&m.prev_hash),
        }),
        M::Welcome(m) => json!({
            "version": m.version,
            "challenge": hex(&m.challenge),
            "heartbeat_ms": m.heartbeat_ms,
        }),
        M::Evidence(m) => json!({ "bytes": hex(m.bytes) }),
        M::Ready | M::Drain => json!({}),
        M::Batching(m) => json!({
            "max_receipts": m.max_receipts,
            "max_delay_us": m.max_delay_us,
        }),
        M::JobOffer(m) => json!({
            "job": m.job,
            "requirements": {
                "memory_mib": m.requirements.memory_mib,
                "features": m.requirements.features,
            },
            "est_gpu_ms": m.est_gpu_ms,
            "bytes_in": m.bytes_in,
            "bytes_out": m.bytes_out,
            "max_price": m.max_price,
            "deadline_ms": m.deadline_ms,
        }),
        M::OfferAccept(m) => json!({ "job": m.job, "price": m.price }),
        M::OfferDecline(m) => json!({ "job": m.job, "reason": format!("{:?}", m.reason) }),
        M::JobAssign(m) => json!({
            "job": m.job,
            "requester_nonce": hex(&m.requester_nonce),
            "kernel": {
                "len": m.kernel.len,
                "root": hex(&m.kernel.root),
                "entry_point": m.kernel.entry_point.as_str(),
                "specialization": m.kernel.specialization.iter()
                    .map(|&(id, value)| json!([id, value]))
                    .collect::<Vec<_>>(),
                "push_constants": hex(&m.kernel.push_constants),
                "grid": m.kernel.grid,
            },
            "buffers": m.buffers.iter()
                .map(|b| json!({
                    "binding": b.binding,
                    "len": b.len,
                    "init_len": b.init_len,
                    "readback": b.readback,
                }))
                .collect::<Vec<_>>(),
            "inputs_root": hex(&m.inputs_root),
        }),
        M::InputChunk(c) | M::OutputChunk(c) => chunk(c),
        M::Started(m) | M::ResultAck(m) => json!({ "job": m.job }),
        M::Progress(m) => json!({ "job": m.job, "permille": m.permille }),
        M::Completed(m) => json!({
            "job": m.job,
            "output_len": m.output_len,
            "output_root": hex(&m.output_root),
        }),
        M::Failed(m) => json!({
            "job": m.job,
            "reason": format!("{:?}", m.reason),
            "detail": m.detail,
        }),
        M::UsageReport(m) => json!({
            "job": m.job,
            "usage": {
                "gpu_time_us": m.usage.gpu_time_us,
                "dispatches": m.usage.dispatches,
                "bytes_in": m.usage.bytes_in,
                "bytes_out": m.usage.bytes_out,
            },
            "price": m.price,
        }),
        M::Receipt(m) => json!({ "job": m.job, "bytes": hex(m.bytes) }),
        M::Cancel(m) => json!({ "job": m.job, "reason": m.reason }),
        M::ResultRefuse(m) => json!({ "job": m.job, "reason": m.reason }),
        M::Heartbeat(m) => json!({ "active_jobs": m.active_jobs, "capacity": m.capacity }),
        M::Goodbye(m) => json!({ "reason": format!("{:?}", m.reason) }),
        M::Error(m) => json!({ "code": m.code, "job": m.job }),
    };
    let mut fields = fields;
    if let (M::JobAssign(a), Value::Object(map)) = (msg, &mut fields) {
        if let Some(x) = &a.sealing {
            map.insert(
                "sealing".into(),
                json!({
                    "enc": hex(&x.enc),
                    "requester_key": hex(&x.requester_key),
                    "kernel_sealed": x.kernel_sealed,
                    "result_key": hex(&x.result_key),
                    "result_key_tag": hex(&x.result_key_tag),
                }),
            );
        }
    }
    json!({ "type": format!("{:?}", msg.kind()), "fields": fields })
}

// ----- from JSON -----------------------------------------------------------------

/// Reads fields out of one JSON object, naming the path of what is wrong.
struct Fields<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

impl<'v> Fields<'v> {
    fn of(v: &'v Value, path: &str) -> Result<Self, String> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                path: path.to_string(),
            }),
            _ => Err(format!("{path} must be an object")),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Result<&'v Value, String> {
        self.map
            .get(key)
            .ok_or_else(|| format!("{} is missing", self.name(key)))
    }

    fn obj(&self, key: &str) -> Result<Fields<'v>, String> {
        Fields::of(self.get(key)?, &self.name(key))
    }

    fn uint<T: TryFrom<u64>>(&self, key: &str) -> Result<T, String> {
        let what = self.name(key);
        uint_value(self.get(key)?, &what)
    }

    fn boolean(&self, key: &str) -> Result<bool, String> {
        self.get(key)?
            .as_bool()
            .ok_or_else(|| format!("{} must be true or false", self.name(key)))
    }

    fn string(&self, key: &str) -> Result<&'v str, String> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| format!("{} must be a string", self.name(key)))
    }

    fn bytes(&self, key: &str) -> Result<Vec<u8>, String> {
        let what = self.name(key);
        unhex(self.string(key)?).ok_or_else(|| format!("{what} must be hex digits"))
    }

    fn array<const N: usize>(&self, key: &str) -> Result<[u8; N], String> {
        let v = self.bytes(key)?;
        <[u8; N]>::try_from(v.as_slice()).map_err(|_| {
            format!(
                "{} must be {N} bytes ({} hex digits)",
                self.name(key),
                2 * N
            )
        })
    }

    fn list(&self, key: &str) -> Result<&'v [Value], String> {
        self.get(key)?
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| format!("{} must be a list", self.name(key)))
    }

    fn uints<T: TryFrom<u64> + Copy + Default, const N: usize>(
        &self,
        key: &str,
    ) -> Result<[T; N], String> {
        let list = self.list(key)?;
        if list.len() != N {
            return Err(format!("{} must hold {N} numbers", self.name(key)));
        }
        let mut out = [T::default(); N];
        for (i, (o, v)) in out.iter_mut().zip(list).enumerate() {
            *o = uint_value(v, &format!("{}[{i}]", self.name(key)))?;
        }
        Ok(out)
    }

    /// An enum given by its variant name.
    fn variant<T: Copy + core::fmt::Debug>(
        &self,
        key: &str,
        from_u8: fn(u8) -> Option<T>,
    ) -> Result<T, String> {
        let name = self.string(key)?;
        (0..=u8::MAX)
            .filter_map(from_u8)
            .find(|v| format!("{v:?}") == name)
            .ok_or_else(|| format!("{}: no such reason: {name:?}", self.name(key)))
    }
}

fn uint_value<T: TryFrom<u64>>(v: &Value, what: &str) -> Result<T, String> {
    v.as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{what} must be an integer of its field's range"))
}

/// Bytes of a hex string (either case); `None` for odd length or a non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks_exact(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

/// Byte strings a message borrows, owned while it is encoded.
#[derive(Default)]
struct Owned {
    data: Vec<u8>,
}

fn chunk<'a>(f: &Fields<'_>, held: &'a mut Owned) -> Result<Chunk<'a>, String> {
    held.data = f.bytes("data")?;
    Ok(Chunk {
        job: f.uint("job")?,
        stream: f.uint("stream")?,
        index: f.uint("index")?,
        digest: f.array("digest")?,
        data: &held.data,
    })
}

fn assign(f: &Fields<'_>) -> Result<JobAssign, String> {
    let k = f.obj("kernel")?;
    let mut entry_point = BoundedString::new();
    entry_point
        .push_str(k.string("entry_point")?)
        .map_err(|_| "kernel.entry_point is too long".to_string())?;
    let mut specialization = BoundedVec::new();
    for (i, pair) in k.list("specialization")?.iter().enumerate() {
        let what = format!("kernel.specialization[{i}]");
        let [id, value] = match pair.as_array().map(Vec::as_slice) {
            Some([id, value]) => [id, value],
            _ => return Err(format!("{what} must be [id, value]")),
        };
        specialization
            .push((uint_value(id, &what)?, uint_value(value, &what)?))
            .map_err(|_| "kernel.specialization has too many constants".to_string())?;
    }
    let mut push_constants = BoundedVec::new();
    for b in k.bytes("push_constants")? {
        push_constants
            .push(b)
            .map_err(|_| "kernel.push_constants is too long".to_string())?;
    }
    let mut buffers = BoundedVec::new();
    for (i, b) in f.list("buffers")?.iter().enumerate() {
        let b = Fields::of(b, &format!("buffers[{i}]"))?;
        buffers
            .push(BufferSpec {
                binding: b.uint("binding")?,
                len: b.uint("len")?,
                init_len: b.uint("init_len")?,
                readback: b.boolean("readback")?,
            })
            .map_err(|_| "too many buffers".to_string())?;
    }
    Ok(JobAssign {
        job: f.uint("job")?,
        requester_nonce: f.array("requester_nonce")?,
        kernel: KernelSpec {
            len: k.uint("len")?,
            root: k.array("root")?,
            entry_point,
            specialization,
            push_constants,
            grid: k.uints("grid")?,
        },
        buffers,
        inputs_root: f.array("inputs_root")?,
        sealing: None,
    })
}

fn message<'a>(
    kind: MessageType,
    f: &Fields<'_>,
    held: &'a mut Owned,
) -> Result<Message<'a>, String> {
    let job = |f: &Fields<'_>| f.uint::<u64>("job");
    use MessageType as T;
    Ok(match kind {
        T::Hello => Message::Hello(Hello {
            min_version: f.uint("min_version")?,
            max_version: f.uint("max_version")?,
            agent_version: f.uints("agent_version")?,
            key_id: f.array("key_id")?,
            next_sequence: f.uint("next_sequence")?,
            prev_hash: f.array("prev_hash")?,
        }),
        T::Welcome => Message::Welcome(Welcome {
            version: f.uint("version")?,
            challenge: f.array("challenge")?,
            heartbeat_ms: f.uint("heartbeat_ms")?,
        }),
        T::Evidence => {
            held.data = f.bytes("bytes")?;
            Message::Evidence(Blob { bytes: &held.data })
        }
        T::Ready => Message::Ready,
        T::Batching => Message::Batching(Batching {
            max_receipts: f.uint("max_receipts")?,
            max_delay_us: f.uint("max_delay_us")?,
        }),
        T::Drain => Message::Drain,
        T::JobOffer => {
            let r = f.obj("requirements")?;
            Message::JobOffer(JobOffer {
                job: job(f)?,
                requirements: Requirements {
                    memory_mib: r.uint("memory_mib")?,
                    features: r.uint("features")?,
                },
                est_gpu_ms: f.uint("est_gpu_ms")?,
                bytes_in: f.uint("bytes_in")?,
                bytes_out: f.uint("bytes_out")?,
                max_price: f.uint("max_price")?,
                deadline_ms: f.uint("deadline_ms")?,
            })
        }
        T::OfferAccept => Message::OfferAccept(OfferAccept {
            job: job(f)?,
            price: f.uint("price")?,
        }),
        T::OfferDecline => Message::OfferDecline(OfferDecline {
            job: job(f)?,
            reason: f.variant("reason", DeclineReason::from_u8)?,
        }),
        T::JobAssign => Message::JobAssign(assign(f)?),
        T::SealedJobAssign => {
            let mut a = assign(f)?;
            let x = f.obj("sealing")?;
            a.sealing = Some(Sealing {
                enc: x.array("enc")?,
                requester_key: x.array("requester_key")?,
                kernel_sealed: x.boolean("kernel_sealed")?,
                result_key: x.array("result_key")?,
                result_key_tag: x.array("result_key_tag")?,
            });
            Message::JobAssign(a)
        }
        T::InputChunk => Message::InputChunk(chunk(f, held)?),
        T::OutputChunk => Message::OutputChunk(chunk(f, held)?),
        T::Started => Message::Started(JobRef { job: job(f)? }),
        T::ResultAck => Message::ResultAck(JobRef { job: job(f)? }),
        T::Progress => Message::Progress(Progress {
            job: job(f)?,
            permille: f.uint("permille")?,
        }),
        T::Completed => Message::Completed(Completed {
            job: job(f)?,
            output_len: f.uint("output_len")?,
            output_root: f.array("output_root")?,
        }),
        T::Failed => Message::Failed(Failed {
            job: job(f)?,
            reason: f.variant("reason", FailReason::from_u8)?,
            detail: f.uint("detail")?,
        }),
        T::UsageReport => {
            let u = f.obj("usage")?;
            Message::UsageReport(UsageReport {
                job: job(f)?,
                usage: Usage {
                    gpu_time_us: u.uint("gpu_time_us")?,
                    dispatches: u.uint("dispatches")?,
                    bytes_in: u.uint("bytes_in")?,
                    bytes_out: u.uint("bytes_out")?,
                },
                price: f.uint("price")?,
            })
        }
        T::Receipt => {
            held.data = f.bytes("bytes")?;
            Message::Receipt(ReceiptMsg {
                job: job(f)?,
                bytes: &held.data,
            })
        }
        T::Cancel => Message::Cancel(Cancel {
            job: job(f)?,
            reason: f.uint("reason")?,
        }),
        T::ResultRefuse => Message::ResultRefuse(ResultRefuse {
            job: job(f)?,
            reason: f.uint("reason")?,
        }),
        T::Heartbeat => Message::Heartbeat(Heartbeat {
            active_jobs: f.uint("active_jobs")?,
            capacity: f.uint("capacity")?,
        }),
        T::Goodbye => Message::Goodbye(Goodbye {
            reason: f.variant("reason", GoodbyeReason::from_u8)?,
        }),
        T::Error => Message::Error(ErrorMsg {
            code: f.uint("code")?,
            job: job(f)?,
        }),
    })
}

/// The frame for the JSON form of a message, or what is wrong with it.
pub fn encode_json(v: &Value) -> Result<Vec<u8>, String> {
    let invalid = |e: String| e;
    let top = Fields::of(v, "").map_err(|_| invalid("the message must be an object".into()))?;
    let name = top.string("type").map_err(invalid)?;
    let kind = (0..=u8::MAX)
        .filter_map(MessageType::from_u8)
        .find(|t| format!("{t:?}") == name)
        .ok_or_else(|| invalid(format!("type: no such message type: {name:?}")))?;
    let empty = Value::Object(Map::new());
    let fields = top.map.get("fields").unwrap_or(&empty);
    let f = Fields::of(fields, "fields").map_err(invalid)?;
    let mut held = Owned::default();
    let msg = message(kind, &f, &mut held).map_err(invalid)?;
    let mut frame = vec![0u8; MAX_FRAME];
    let n = msg.encode(&mut frame).map_err(|_| {
        invalid("the message is larger than a frame (a chunk over CHUNK_SIZE, say)".into())
    })?;
    frame.truncate(n);
    Ok(frame)
}
