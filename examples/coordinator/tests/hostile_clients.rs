//! Clients that hold connections without finishing anything, and a very
//! large submission: the coordinator's limits keep both from costing honest
//! agents their service or the coordinator its memory.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use support::{
    bundle, client_tls, coordinator, provider_hello, read_provider_frame, ProviderOpts,
    TestProvider,
};
use tessera_coordinator::protocol::read_frame;
use tessera_coordinator::requester::{self, Requester, RequesterError};
use tessera_coordinator::{submit, verify_result, BufferInit, FailureCode, Response, Submit};
use tessera_core::attest::{
    DeviceCapabilities, Ed25519Signer, Evidence, Receipt, ReceiptStatus, Signer, EVIDENCE_LEN,
    RECEIPT_LEN,
};
use tessera_core::testkit::{encode, FrameSplitter};
use tessera_core::wire::{Blob, Hello, Message, ReceiptMsg, Requirements, Usage};

fn small_job(nonce: u8) -> Submit {
    Submit {
        kernel: (0..256u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: Vec::new(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..10_000u32).map(|i| (i % 253) as u8).collect(),
                len: 10_000,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: 10_000,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 10_000,
        deadline_ms: 20_000,
        nonce: [nonce; 32],
        sealed: None,
    }
}

/// The bytes a TLS client sends first: its ClientHello.
fn client_hello() -> Vec<u8> {
    let mut conn = ClientConnection::new(
        client_tls(),
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .expect("client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("hello");
    }
    hello
}

/// Whether the server has closed `sock`: it reads the end of the stream or
/// an error (whatever it sent before, such as a TLS alert, is skipped).
fn closed_by_server(sock: &mut TcpStream) -> bool {
    let _ = sock.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Open files this process may hold (the soft limit), if known.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A client that sends `bytes` one at a time, `every` apart, for as long as
/// the connection lasts (at most `give_up`). Returns how long the server
/// kept it, or `None` if it still had not closed it by then.
fn dribble(
    mut sock: TcpStream,
    bytes: Vec<u8>,
    every: Duration,
    give_up: Duration,
) -> thread::JoinHandle<Option<Duration>> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut bytes = bytes.into_iter().cycle();
        while started.elapsed() < give_up {
            if closed_by_server(&mut sock) {
                return Some(started.elapsed());
            }
            let _ = sock.set_nonblocking(false);
            let byte = bytes.next().unwrap_or(0);
            if sock.write_all(&[byte]).is_err() {
                return Some(started.elapsed());
            }
            thread::sleep(every);
        }
        None
    })
}

/// A TLS connection whose handshake is done, as a raw socket and the TLS
/// state to write application bytes with.
fn tls_connected(addr: SocketAddr) -> (TcpStream, ClientConnection) {
    let stream = requester::connect(addr, client_tls()).expect("handshake");
    (stream.sock, stream.conn)
}

/// `plaintext` as the TLS records `conn` makes of it, one record per byte,
/// so a client can dribble application data a record at a time.
fn records_per_byte(conn: &mut ClientConnection, plaintext: &[u8]) -> Vec<Vec<u8>> {
    plaintext
        .iter()
        .map(|b| {
            conn.writer().write_all(&[*b]).expect("plaintext");
            let mut record = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut record).expect("record");
            }
            record
        })
        .collect()
}

/// Like [`dribble`], record by record.
fn dribble_records(
    mut sock: TcpStream,
    records: Vec<Vec<u8>>,
    every: Duration,
    give_up: Duration,
) -> thread::JoinHandle<Option<Duration>> {
    thread::spawn(move || {
        let started = Instant::now();
        for record in records {
            if started.elapsed() >= give_up {
                return None;
            }
            if closed_by_server(&mut sock) {
                return Some(started.elapsed());
            }
            let _ = sock.set_nonblocking(false);
            if sock.write_all(&record).is_err() {
                return Some(started.elapsed());
            }
            thread::sleep(every);
        }
        // Out of bytes: wait for the server to act.
        while started.elapsed() < give_up {
            if closed_by_server(&mut sock) {
                return Some(started.elapsed());
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

/// 1,000 connections left half-open (silent, a partial ClientHello, or a
/// whole one never followed up) and four slow-loris clients (a ClientHello,
/// a provider's Hello, a requester's header and a requester's body, each
/// dribbled a byte at a time) while an honest provider and requester
/// complete a job: the job is served while they are all held, and every one
/// of them is closed by the handshake deadline (or, for a body, the rate
/// deadline), not kept for as long as it keeps sending.
#[test]
fn half_open_connections_and_slow_loris_clients_leave_honest_agents_served() {
    const DEADLINE: Duration = Duration::from_secs(5);
    // Far more than any of them is allowed: a slow-loris kept this long was
    // not closed by a deadline.
    const GIVE_UP: Duration = Duration::from_secs(25);
    // The server holds one socket per connection, the test one more: stay
    // within the open-file limit where it is low.
    let wanted = 1000usize;
    let half_open = match open_file_limit() {
        Some(limit) if limit < 2 * wanted + 400 => {
            let n = limit.saturating_sub(400) / 2;
            eprintln!("open-file limit {limit}: {n} half-open connections instead of {wanted}");
            n
        }
        _ => wanted,
    };
    let coord = coordinator(|c| {
        c.handshake_timeout = DEADLINE;
        // Every client here connects from 127.0.0.1: room for all.
        c.max_connections = half_open + 100;
        c.max_connections_per_ip = half_open + 100;
    });
    let addr = coord.local_addr();
    let hello = client_hello();
    let started = Instant::now();

    let mut held: Vec<TcpStream> = Vec::with_capacity(half_open);
    for i in 0..half_open {
        if i % 50 == 0 {
            // Paced so the listen queue (128 on Linux) never overflows: a
            // dropped SYN is retried a second later and would only slow the
            // test down.
            let until = Instant::now() + Duration::from_secs(5);
            while (coord.stats().connections_open as usize) < i && Instant::now() < until {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let mut sock = TcpStream::connect(addr).expect("connects");
        match i % 10 {
            // Silent.
            0..=4 => {}
            // Part of a ClientHello.
            5..=8 => sock.write_all(&hello[..hello.len() / 2]).expect("writes"),
            // A whole ClientHello, and nothing after the server's answer.
            _ => sock.write_all(&hello).expect("writes"),
        }
        held.push(sock);
    }
    let opened = started.elapsed();

    let loris_tls = dribble(
        TcpStream::connect(addr).expect("connects"),
        hello.clone(),
        Duration::from_millis(100),
        GIVE_UP,
    );
    let signer = Ed25519Signer::from_seed(&[77; 32]).expect("seed");
    let provider_hello = encode(&Message::Hello(Hello {
        min_version: 1,
        max_version: 1,
        agent_version: [0, 1, 0],
        key_id: signer.key_id(),
        next_sequence: 1,
        prev_hash: [0; 32],
    }));
    let (sock, mut conn) = tls_connected(addr);
    let loris_provider = dribble_records(
        sock,
        records_per_byte(&mut conn, &provider_hello),
        Duration::from_millis(300),
        GIVE_UP,
    );
    // A requester header stating a 1 MiB body, a byte every two seconds:
    // the header is not whole by the deadline.
    let mut header = b"TQ".to_vec();
    header.extend_from_slice(&(1u32 << 20).to_le_bytes());
    let (sock, mut conn) = tls_connected(addr);
    let mut slow = header.clone();
    slow.extend_from_slice(&[0; 200]);
    let loris_header = dribble_records(
        sock,
        records_per_byte(&mut conn, &slow),
        Duration::from_secs(2),
        GIVE_UP,
    );
    // The whole header at once, then the body a byte every 100 ms: at
    // 1 MiB/s (the default rate) a 1 MiB body is due within the deadline
    // and a second.
    let (mut sock, mut conn) = tls_connected(addr);
    conn.writer().write_all(&header).expect("header");
    let mut record = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut record).expect("record");
    }
    sock.write_all(&record).expect("writes");
    let loris_body = dribble_records(
        sock,
        records_per_byte(&mut conn, &[0; 400]),
        Duration::from_millis(100),
        GIVE_UP,
    );

    // The honest agents, while all of that is held.
    let provider = TestProvider::start(addr, ProviderOpts::new(1));
    provider.wait_ready(1);
    let job = small_job(3);
    let result = submit(addr, client_tls(), &job).expect("the honest job is served");
    verify_result(&job, &result).expect("verifies");
    let served = started.elapsed();
    let closed_early = held.iter_mut().map(closed_by_server).filter(|c| *c).count();
    eprintln!(
        "{half_open} half-open connections opened in {opened:?}; honest job served at \
         {served:?} with {} connections open, {closed_early} of them closed",
        coord.stats().connections_open
    );
    assert_eq!(
        closed_early, 0,
        "the job was served while every half-open connection was held (served at \
         {served:?}, deadline {DEADLINE:?})"
    );

    // Every half-open connection is closed by the deadline, however it was
    // left.
    let mut open: Vec<TcpStream> = held;
    while !open.is_empty() && started.elapsed() < DEADLINE + GIVE_UP {
        open.retain_mut(|s| !closed_by_server(s));
        thread::sleep(Duration::from_millis(100));
    }
    let all_closed = started.elapsed();
    assert!(
        open.is_empty(),
        "{} of {half_open} half-open connections still open after {all_closed:?}",
        open.len()
    );
    let kept = [
        ("ClientHello", loris_tls.join().expect("thread")),
        ("provider Hello", loris_provider.join().expect("thread")),
        ("requester header", loris_header.join().expect("thread")),
        ("requester body", loris_body.join().expect("thread")),
    ];
    for (what, kept) in &kept {
        let kept = kept.unwrap_or_else(|| {
            panic!("a slow-loris dribbling a {what} was still connected after {GIVE_UP:?}")
        });
        eprintln!("slow-loris dribbling a {what}: closed after {kept:?}");
        // Generous: the deadline, a second for the 1 MiB body's rate, and
        // a loaded machine's slack.
        assert!(
            kept < DEADLINE + Duration::from_secs(10),
            "{what}: {kept:?}"
        );
    }
    let stats = coord.stats();
    eprintln!(
        "all {half_open} half-open connections closed {all_closed:?} after the first was \
         opened; {} connections expired, {} open now",
        stats.handshakes_expired, stats.connections_open
    );
    assert!(stats.handshakes_expired as usize >= half_open + kept.len());
    assert_eq!(stats.results_delivered, 1);

    // Service goes on.
    let job = small_job(4);
    let result = submit(addr, client_tls(), &job).expect("a second job");
    verify_result(&job, &result).expect("verifies");
    drop(provider);
}

/// Connections over the caps are closed as they are accepted: over the
/// per-address cap, then over the total; closing some frees their places.
#[test]
fn connections_over_the_caps_are_closed_at_once() {
    let coord = coordinator(|c| {
        c.max_connections = 100;
        c.max_connections_per_ip = 8;
        c.handshake_timeout = Duration::from_secs(20);
    });
    let addr = coord.local_addr();
    let mut socks: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(addr).expect("connects"))
        .collect();
    // Those over the cap are closed at once; the others wait for their
    // handshake deadline, far off.
    let until = Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    while closed < 12 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
        closed = socks
            .iter_mut()
            .map(closed_by_server)
            .filter(|c| *c)
            .count();
    }
    thread::sleep(Duration::from_millis(200));
    let closed = socks
        .iter_mut()
        .map(closed_by_server)
        .filter(|c| *c)
        .count();
    let stats = coord.stats();
    eprintln!(
        "20 connections from one address, cap 8: {closed} closed at once, {} open",
        stats.connections_open
    );
    assert_eq!(closed, 12, "those over the cap are closed");
    assert_eq!(stats.connections_open, 8);
    assert_eq!(stats.connections_refused, 12);

    // The address is at its cap, so a requester from it is refused too.
    assert!(submit(addr, client_tls(), &small_job(1)).is_err());
    // Closing our connections gives their places back.
    socks.clear();
    let until = Instant::now() + Duration::from_secs(10);
    while coord.stats().connections_open > 0 {
        assert!(Instant::now() < until, "places never given back");
        thread::sleep(Duration::from_millis(20));
    }
    let provider = TestProvider::start(addr, ProviderOpts::new(2));
    provider.wait_ready(1);
    let job = small_job(2);
    verify_result(&job, &submit(addr, client_tls(), &job).expect("served")).expect("verifies");
    drop(provider);

    // The total cap, from one address.
    let coord = coordinator(|c| {
        c.max_connections = 5;
        c.max_connections_per_ip = 100;
        c.handshake_timeout = Duration::from_secs(20);
    });
    let mut socks: Vec<TcpStream> = (0..9)
        .map(|_| TcpStream::connect(coord.local_addr()).expect("connects"))
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    let mut open = socks.len();
    while open > 5 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
        open = socks
            .iter_mut()
            .map(closed_by_server)
            .filter(|c| !*c)
            .count();
    }
    thread::sleep(Duration::from_millis(200));
    let open = socks
        .iter_mut()
        .map(closed_by_server)
        .filter(|c| !*c)
        .count();
    eprintln!("9 connections, total cap 5: {open} open");
    assert_eq!(open, 5, "those over the total cap are closed");
    let stats = coord.stats();
    assert_eq!((stats.connections_open, stats.connections_refused), (5, 4));
}

/// Requests over a limit get a typed answer saying which: a body over the
/// body limit (its header alone), read-back buffers over the read-back
/// limit, and a body that does not fit in the byte budget now (`Busy`, the
/// body read and dropped, the connection still usable); none leaves bytes
/// held.
#[test]
fn requests_over_the_limits_get_a_typed_answer() {
    let coord = coordinator(|c| {
        c.max_request_body = 1 << 20;
        c.max_readback_bytes = 64 << 10;
        c.max_buffered_bytes = 256 << 10;
    });
    let addr = coord.local_addr();

    // A header stating 4 GiB: answered, not read.
    let mut stream = requester::connect(addr, client_tls()).expect("connects");
    let mut header = b"TQ".to_vec();
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    stream.write_all(&header).expect("header");
    let answer: Response = read_frame(&mut stream, 1 << 20).expect("an answer");
    let Response::Failed(f) = answer else {
        panic!("expected a refusal, got {answer:?}")
    };
    assert_eq!(f.code, FailureCode::Invalid);
    assert!(
        f.reason
            .contains("over this coordinator's limit of 1048576 bytes"),
        "{}",
        f.reason
    );

    let mut requester = Requester::connect(addr, client_tls()).expect("connects");
    // Read-back buffers stating more than the limit.
    let mut job = small_job(1);
    job.buffers[1].len = 1 << 20;
    match requester.submit(&job) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::Invalid);
            assert!(
                f.reason.contains("read-back buffers add up"),
                "{}",
                f.reason
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A body larger than the whole budget.
    let mut job = small_job(2);
    job.buffers[0].init = vec![1; 512 << 10];
    job.buffers[0].len = 512 << 10;
    match requester.submit(&job) {
        Err(RequesterError::Failed(f)) => {
            assert_eq!(f.code, FailureCode::Busy, "{}", f.reason);
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The same connection still serves a job that fits.
    let provider = TestProvider::start(addr, ProviderOpts::new(3));
    provider.wait_ready(1);
    let job = small_job(3);
    requester.submit(&job).expect("served");
    requester.close();
    nothing_held(&coord, Duration::from_secs(5));
    assert_eq!(coord.stats().requests_refused, 2);
    drop(provider);
}

/// VmHWM and VmRSS of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const MIB: u64 = 1 << 20;

/// What the coordinator may hold beyond one copy of a submission: its
/// threads, TLS buffers, the chunks' leaf hashes (32 bytes per 8 KiB) and
/// the allocator's own.
const MEMORY_SLACK: u64 = 32 * MIB;

/// Runs the coordinator program, submits a job of `input` bytes of initial
/// data (and 64 KiB read back) from this process, and checks that the
/// program's peak resident memory grew by at most the submission once and
/// [`MEMORY_SLACK`], and that it let go of the submission after answering.
fn submission_held_once(input: usize) {
    let dir = std::env::temp_dir().join(format!("tessera-hostile-{}-{input}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    bundle().write_to(&dir).expect("certificates");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--run-for", "300", "--certs"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("tessera-coordinator runs");
    let stdout = child.stdout.take().expect("stdout");
    let program = Program(child);
    let pid = program.0.id();
    // Kept open: the program prints its key pin next, and more.
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    let mut opts = ProviderOpts::new(5);
    opts.max_life = Duration::from_secs(280);
    let provider = TestProvider::start(addr, opts);
    provider.wait_ready(1);
    let readback = 64 << 10;
    let job = Submit {
        kernel: (0..1024u32).flat_map(|i| i.to_le_bytes()).collect(),
        entry_point: "main".into(),
        specialization: Vec::new(),
        push_constants: Vec::new(),
        grid: [1, 1, 1],
        buffers: vec![
            BufferInit {
                binding: 0,
                init: (0..input).map(|i| (i % 251) as u8).collect(),
                len: input as u64,
                readback: false,
            },
            BufferInit {
                binding: 1,
                init: Vec::new(),
                len: readback,
                readback: true,
            },
        ],
        requirements: Requirements::default(),
        est_gpu_ms: 1,
        max_price: 1 << 40,
        deadline_ms: 240_000,
        nonce: [8; 32],
        sealed: None,
    };
    let (peak_before, rss_before) = memory_of(pid);
    let started = Instant::now();
    let tls: Arc<rustls::ClientConfig> = client_tls();
    let result = submit(addr, tls, &job).expect("the large job is served");
    let took = started.elapsed();
    let want: Vec<u8> = job.buffers[0].init[..readback as usize]
        .iter()
        .map(|b| b.wrapping_add(1))
        .collect();
    assert_eq!(result.outputs, vec![want]);
    let (peak, _) = memory_of(pid);
    // The job is answered; give the coordinator a moment to let go.
    let until = Instant::now() + Duration::from_secs(10);
    let mut rss_after = memory_of(pid).1;
    while rss_after > rss_before + MEMORY_SLACK && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
        rss_after = memory_of(pid).1;
    }
    let bound = rss_before + input as u64 + MEMORY_SLACK;
    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "{:.1} MiB submission in {took:?}: coordinator resident {:.1} MiB before, peak \
         {:.1} MiB (peak before {:.1} MiB), {:.1} MiB after; bound on the peak: {:.1} MiB \
         (before + the submission + {} MiB)",
        mib(input as u64),
        mib(rss_before),
        mib(peak),
        mib(peak_before),
        mib(rss_after),
        mib(bound),
        MEMORY_SLACK / MIB
    );
    assert!(
        peak <= bound,
        "the coordinator's peak resident memory {} MiB is over {} MiB",
        peak / MIB,
        bound / MIB
    );
    assert!(
        rss_after <= rss_before + MEMORY_SLACK,
        "the coordinator still holds {} MiB after answering",
        (rss_after - rss_before) / MIB
    );
    drop(provider);
    drop(program);
    drop(lines);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 256 MiB submission (the default body limit): the coordinator holds it
/// once, and lets go of it once it has answered.
#[test]
fn a_256_mib_submission_is_held_once() {
    // The body limit covers the whole request: the kernel and the fields
    // take the last few KiB.
    submission_held_once((256 << 20) - (64 << 10));
}

/// A requester that does not read its result is disconnected once a write
/// to it makes no progress for `write_timeout`, and one that sends nothing
/// after its answer is closed after `requester_idle`; others are served
/// meanwhile, and no bytes stay held for either.
#[test]
fn requesters_that_stop_reading_or_sending_are_closed_in_time() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    // Room on a loaded machine for the provider's 32 MiB upload before the
    // non-reading requester's write stalls.
    const IDLE: Duration = Duration::from_secs(15);
    let coord = coordinator(|c| {
        c.write_timeout = WRITE_TIMEOUT;
        c.requester_idle = IDLE;
    });
    let addr = coord.local_addr();
    let provider = TestProvider::start(addr, ProviderOpts::new(5));
    provider.wait_ready(1);

    // One job answered, then silence. The coordinator counts the idle time
    // from when it queues the answer, which is after the request was sent
    // and before the answer arrives here: the request's sending is the
    // bound below which the connection must stay open.
    let mut idle = Requester::connect(addr, client_tls()).expect("connects");
    let job = small_job(1);
    let idle_since = Instant::now();
    verify_result(&job, &idle.submit(&job).expect("served")).expect("verifies");

    // A 32 MiB result, more than the sockets between us buffer, never read.
    let mut job = small_job(2);
    job.buffers[1].len = 32 << 20;
    let mut deaf = requester::connect(addr, client_tls()).expect("connects");
    requester::write_submit(&mut deaf, &job).expect("sends");
    deaf.flush().expect("sends");

    // Others are served meanwhile, once the one provider has finished the
    // 32 MiB job (its receipt verified): an offer made while it uploads can
    // go unanswered past the offer timeout on a loaded machine.
    let until = Instant::now() + Duration::from_secs(60);
    while coord.stats().receipts_verified < 2 {
        assert!(Instant::now() < until, "the 32 MiB job never finished");
        thread::sleep(Duration::from_millis(20));
    }
    let job = small_job(3);
    verify_result(&job, &submit(addr, client_tls(), &job).expect("served")).expect("verifies");

    // The one not reading goes first, well before the idle one's time.
    let open_until = |n: u64, within: Duration| {
        let until = Instant::now() + within;
        while coord.stats().connections_open > n {
            assert!(
                Instant::now() < until,
                "{} connections still open",
                coord.stats().connections_open
            );
            thread::sleep(Duration::from_millis(50));
        }
        idle_since.elapsed()
    };
    let deaf_closed = open_until(2, Duration::from_secs(30));
    eprintln!("non-reading requester closed {deaf_closed:?} after the idle one's answer");
    assert!(
        deaf_closed < IDLE,
        "closed by the idle time, not the write timeout"
    );
    let idle_closed = open_until(1, Duration::from_secs(30));
    eprintln!("idle requester closed after {idle_closed:?}");
    assert!(idle_closed >= IDLE, "the idle requester was closed early");
    nothing_held(&coord, Duration::from_secs(5));
    assert_eq!(coord.stats().results_delivered, 3);
    drop(deaf);
    drop(idle);
    drop(provider);
}

/// A requester whose connection ends (here: a record that does not decrypt,
/// as a reset would) while its job is held by a provider that never starts
/// it: the job is withdrawn and what was held for it let go at once, not at
/// the deadline the requester stated. Otherwise a requester could pile up
/// jobs without end by submitting and resetting, each outliving the
/// connection that bounded it.
#[test]
fn a_requester_gone_before_its_answer_leaves_nothing_held() {
    let (coord, provider) = with_a_frozen_provider(|_| {});
    let addr = coord.local_addr();

    let mut job = small_job(4);
    job.deadline_ms = 100_000;
    let mut stream = requester::connect(addr, client_tls()).expect("connects");
    requester::write_submit(&mut stream, &job).expect("sends");
    stream.flush().expect("sends");
    // The provider accepts the offer (at once: it is the only one) and
    // freezes; the job's inputs and read-back bytes stay in the budget.
    let until = Instant::now() + Duration::from_secs(10);
    while coord.buffered_bytes() == 0 {
        assert!(Instant::now() < until, "the job was never held");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
    assert!(coord.buffered_bytes() > 0);

    // An application-data record that does not decrypt: the coordinator
    // ends the connection at once.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend_from_slice(&[0x5a; 32]);
    let _ = stream.sock.write_all(&record);
    let until = Instant::now() + Duration::from_secs(5);
    while coord.stats().connections_open > 1 {
        assert!(Instant::now() < until, "the requester's connection is open");
        thread::sleep(Duration::from_millis(10));
    }
    nothing_held(&coord, Duration::from_secs(3));
    drop(stream);
    drop(provider);
}

/// A provider with a key of its own, admitted, that sends a stream of
/// correctly signed receipts, each the next in its chain, for jobs the
/// coordinator never gave it. Each one costs the coordinator a signature
/// check and, with a state directory, an fsynced write of the chain
/// position, on the event loop, for 450 bytes received: a few hundred per
/// read turn would stall every other connection. A provider's agent holds
/// at most `MAX_JOBS` results unacknowledged, so a session sends no more
/// than that for jobs the coordinator no longer tracks; beyond a small
/// allowance the session is ended and the rest is never verified.
#[test]
fn receipts_for_jobs_never_assigned_end_the_session() {
    let dir = std::env::temp_dir().join(format!("tessera-untracked-{}", std::process::id()));
    let d = dir.clone();
    let coord = coordinator(move |c| c.state_dir = Some(d));
    let mut stream = requester::connect(coord.local_addr(), client_tls()).expect("connects");
    let mut signer = Ed25519Signer::from_seed(&[9; 32]).expect("seed");
    let mut splitter = FrameSplitter::default();
    let w = provider_hello(&mut stream, &signer, &mut splitter);
    let evidence = Evidence {
        challenge: w.challenge,
        public_key: signer.public_key(),
        agent_version: [0, 1, 0],
        boot_id: [0; 16],
        issued_at: 1,
        chain: Default::default(),
        capabilities: DeviceCapabilities::default(),
        enc_key: [0; 32],
        hardware_report: tessera_core::attest::HardwareReport::NONE,
    };
    let mut signed = [0u8; EVIDENCE_LEN];
    let n = evidence.sign(&mut signer, &mut signed).expect("signs");
    let evidence_hash = Evidence::hash(&signed[..n]);
    let msg = Message::Evidence(Blob {
        bytes: &signed[..n],
    });
    stream.write_all(&encode(&msg)).expect("evidence");
    let until = Instant::now() + Duration::from_secs(5);
    while coord.providers().iter().all(|p| !p.connected) {
        assert!(Instant::now() < until, "never admitted");
        thread::sleep(Duration::from_millis(10));
    }

    const SENT: u64 = 200;
    let mut frames = Vec::new();
    let mut prev_hash = [0u8; 32];
    for sequence in 1..=SENT {
        let receipt = Receipt {
            status: ReceiptStatus::Completed,
            job: 1_000_000 + sequence,
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
            evidence_hash,
            key_id: signer.key_id(),
            sequence,
            prev_hash,
        };
        let mut out = [0u8; RECEIPT_LEN];
        let n = receipt.sign(&mut signer, &mut out).expect("signs");
        prev_hash = Receipt::hash(&out[..n]);
        frames.extend_from_slice(&encode(&Message::Receipt(ReceiptMsg {
            job: receipt.job,
            bytes: &out[..n],
        })));
    }
    let _ = stream.write_all(&frames);
    let _ = stream.flush();
    // Read what comes back until the coordinator ends the session.
    while read_provider_frame(&mut stream, &mut splitter).is_some() {}
    let verified = coord.stats().receipts_verified;
    eprintln!("{verified} of {SENT} receipts for jobs never assigned were verified");
    // The allowance: twice the results an agent holds (16 hosted).
    let allowance = 2 * tessera_core::limits::MAX_JOBS as u64;
    assert!(
        verified <= allowance,
        "{verified} receipts for jobs never assigned were verified on one session"
    );
    drop(stream);
    drop(coord);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A coordinator (`tweak`ed) with one provider admitted that accepts the
/// jobs it is offered and never runs them, nor says anything more.
fn with_a_frozen_provider(
    tweak: impl FnOnce(&mut tessera_coordinator::Config),
) -> (tessera_coordinator::Coordinator, TestProvider) {
    let coord = coordinator(|c| {
        c.provider_silence = Duration::from_secs(120);
        tweak(c);
    });
    let mut opts = ProviderOpts::new(7);
    opts.freeze_after_accept = true;
    let provider = TestProvider::start(coord.local_addr(), opts);
    provider.wait_ready(1);
    (coord, provider)
}

/// Waits up to `within` for the coordinator to hold no budget bytes.
fn nothing_held(coord: &tessera_coordinator::Coordinator, within: Duration) {
    let until = Instant::now() + within;
    while coord.buffered_bytes() > 0 {
        assert!(
            Instant::now() < until,
            "{} bytes still held",
            coord.buffered_bytes()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A coordinator with the budget `budget`, a provider that accepts jobs and
/// never runs them, and a requester with `MAX_IN_FLIGHT` jobs held there;
/// with the bytes held for them.
fn requests_in_flight_held(
    budget: usize,
) -> (
    tessera_coordinator::Coordinator,
    TestProvider,
    rustls::StreamOwned<ClientConnection, TcpStream>,
    usize,
) {
    use tessera_coordinator::protocol::MAX_IN_FLIGHT;
    let (coord, provider) = with_a_frozen_provider(|c| {
        c.offer_timeout = Duration::from_secs(60);
        c.max_buffered_bytes = budget;
    });
    let addr = coord.local_addr();
    let mut stream = requester::connect(addr, client_tls()).expect("connects");
    let mut first = Vec::new();
    for i in 0..MAX_IN_FLIGHT {
        requester::write_submit(&mut first, &long_job(i)).expect("encoded");
    }
    stream.write_all(&first).expect("sent");
    stream.flush().expect("sent");
    let held = settled(&coord);
    (coord, provider, stream, held)
}

/// A small job with a deadline far beyond any test's end.
fn long_job(i: usize) -> Submit {
    let mut j = small_job(i as u8);
    j.deadline_ms = 100_000;
    j
}

/// The bytes the coordinator holds once the figure stops moving.
fn settled(coord: &tessera_coordinator::Coordinator) -> usize {
    let mut last = coord.buffered_bytes();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = coord.buffered_bytes();
        if now == last && now > 0 {
            return now;
        }
        assert!(Instant::now() < until, "the budget never settled");
        last = now;
    }
}

/// A requester that sends more requests than it may have in flight, in one
/// burst, and then reads nothing: the coordinator stops reading it, and
/// what it read and could not yet take (bytes past the last request it took,
/// some still encrypted) counts in the byte budget, like the requests it
/// holds. Before, a paused connection kept a whole 64 KiB read buffer
/// outside the budget, so that many such requesters held memory no limit
/// bounded. A reset of the paused connection, which is not read, still
/// ends it and lets everything go.
#[test]
fn what_a_paused_requester_sent_beyond_its_requests_is_in_the_budget() {
    use tessera_coordinator::protocol::MAX_IN_FLIGHT;
    let (coord, provider, mut stream, held) = requests_in_flight_held(1 << 30);

    // Eight more requests: read, but not taken.
    let mut more = Vec::new();
    for i in MAX_IN_FLIGHT..MAX_IN_FLIGHT + 8 {
        requester::write_submit(&mut more, &long_job(i)).expect("encoded");
    }
    stream.write_all(&more).expect("sent");
    stream.flush().expect("sent");
    let parked = settled(&coord);
    assert!(
        parked > held + 16 * 1024,
        "{held} bytes held for the requests in flight, {parked} with {} bytes more unread",
        more.len()
    );
    assert_eq!(coord.stats().connections_open, 2, "the requester stays");

    // It resets the connection: though not read while paused, its end is
    // seen and everything it held let go at once, not at its deadline.
    reset(&stream.sock);
    drop(stream);
    nothing_held(&coord, Duration::from_secs(5));
    drop(provider);
}

/// A requester paused when the budget has no room for what it sent past
/// its requests keeps its connection and its jobs: the bytes are counted
/// past the limit (other requests are refused meanwhile). Closing it would
/// withdraw every job it has in flight, and anyone filling the budget
/// could do that to others.
#[test]
fn a_paused_requester_keeps_its_jobs_when_the_budget_is_full() {
    use tessera_coordinator::protocol::MAX_IN_FLIGHT;
    // How much 64 such jobs hold.
    let (coord, provider, stream, held) = requests_in_flight_held(1 << 30);
    drop(stream);
    drop(provider);
    drop(coord);

    // A budget with 4 KiB to spare beyond them.
    let (coord, provider, mut stream, again) = requests_in_flight_held(held + 4096);
    assert_eq!(again, held, "the 64 jobs all fit");
    let mut more = Vec::new();
    requester::write_submit(&mut more, &long_job(MAX_IN_FLIGHT)).expect("encoded");
    stream.write_all(&more).expect("sent");
    stream.flush().expect("sent");
    let parked = settled(&coord);
    assert_eq!(
        coord.stats().connections_open,
        2,
        "the requester was closed ({parked} bytes held, were {held})"
    );
    assert!(parked > held + 4096, "counted past the limit: {parked}");
    drop(stream);
    drop(provider);
}

/// A requester that half-closed (its end read, its answers still to come)
/// and then resets: it is no longer read, and its reset ends it and lets
/// its job go at once, not at the job's deadline.
#[test]
fn a_half_closed_requester_that_resets_leaves_nothing_held() {
    let (coord, provider) = with_a_frozen_provider(|_| {});
    let addr = coord.local_addr();

    let mut stream = requester::connect(addr, client_tls()).expect("connects");
    requester::write_submit(&mut stream, &long_job(4)).expect("sends");
    stream.flush().expect("sends");
    settled(&coord);
    // Half-close: it still waits for its answer.
    stream.conn.send_close_notify();
    stream.flush().expect("close_notify");
    stream
        .sock
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(coord.stats().connections_open, 2, "still waiting");
    assert!(coord.buffered_bytes() > 0);
    // Then it resets.
    reset(&stream.sock);
    drop(stream);
    nothing_held(&coord, Duration::from_secs(5));
    drop(provider);
}

/// Makes closing `sock` send a reset (SO_LINGER of zero seconds).
fn reset(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a socket this process owns, and a pointer to a live `linger`
    // of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER");
}

/// Clients whose last bytes (half a ClientHello) and end (FIN) come
/// together: a read that takes less than its buffer ends a turn, but not
/// when the end has come too (no further event would say so); each is
/// closed at once, not at its handshake deadline.
#[test]
fn bytes_and_the_end_together_close_at_once() {
    let coord = coordinator(|c| c.handshake_timeout = Duration::from_secs(30));
    let addr = coord.local_addr();
    let hello = client_hello();
    let mut socks: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connects");
            s.write_all(&hello[..hello.len() / 2]).expect("sends");
            s.shutdown(std::net::Shutdown::Write).expect("ends");
            s
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    let mut open = socks.len();
    while open > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
        open = socks
            .iter_mut()
            .map(closed_by_server)
            .filter(|c| !c)
            .count();
    }
    assert_eq!(open, 0, "connections left open after their end");
}
