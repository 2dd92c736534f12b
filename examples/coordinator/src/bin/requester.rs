//! `tessera-requester`: submits a compute job to a coordinator, verifies the
//! result from the provider's signatures, and prints what it checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};
use tessera_coordinator::demo::{bytes_f32, matmul_cpu, matmul_submit, max_rel_error};
use tessera_coordinator::requester::{new_nonce, submit, verify_result, Requester, ResultCheck};
use tessera_coordinator::tls::{client_config, hex, parse_hex32, Trust};
use tessera_coordinator::{BufferInit, JobResult, Submit};
use tessera_core::wire::Requirements;

const DEFAULT_MATMUL_KERNEL: &str = "core/kernels/matmul.spv";

const USAGE: &str = "\
usage: tessera-requester --coordinator ADDR (--ca FILE | --pin HEX) JOB [options]
JOB is either
  --demo-matmul N        multiply two random NxN f32 matrices and check the
                         product against a CPU reference; the kernel is
                        --kernel FILE (default core/kernels/matmul.spv), push
                         constants M,N,K, grid ceil(N/TILE)^2 (--tile, default 16)
or a kernel of your own:
  --kernel FILE.spv      SPIR-V module
  --entry NAME           entry point (default main)
  --grid X,Y,Z           workgroup counts (default 1,1,1)
  --push-u32 A,B,...     push constants as u32 little-endian values
  --push-hex HEX         push constants as raw bytes
  --spec ID=VALUE        a specialization constant (repeatable)
  --buffer SPEC          a buffer (repeatable; buffers keep this order): comma-
                         separated file=PATH (initial data), len=BYTES,
                         binding=N (set 0; default: its place among the
                         --buffer options, from 0), readback
options:
  --no-seal              send the job in the clear (by default it is sealed
                         end to end to the provider's session key, and the
                         coordinator sees only ciphertext)
  --trust-provider HEX   seal only to this provider device key (repeatable);
                         without it, to a provider the coordinator lists,
                         which keeps the job from a coordinator that is
                         honest but curious, not from one that lies
  --max-price N          the most you pay (default 1000000)
  --deadline-ms N        result due within (default 60000)
  --est-gpu-ms N         GPU time estimate (default 100)
  --memory-mib N         device memory needed
  --features BITS        device feature bits needed
  --out DIR              write each read-back buffer to DIR/output-<binding>.bin";

#[derive(Default)]
struct Args {
    coordinator: Option<SocketAddr>,
    trust: Option<Trust>,
    demo_n: Option<u32>,
    tile: u32,
    kernel: Option<PathBuf>,
    entry: String,
    grid: [u32; 3],
    push: Vec<u8>,
    spec: Vec<(u32, u32)>,
    buffers: Vec<BufferInit>,
    max_price: u64,
    deadline_ms: u32,
    est_gpu_ms: u32,
    requirements: Requirements,
    out: Option<PathBuf>,
    no_seal: bool,
    trusted: Vec<[u8; 32]>,
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v}"))
}

/// A `--buffer` option; `index` is its place among them (its default binding).
fn buffer(spec: &str, index: usize) -> Result<BufferInit, String> {
    let mut b = BufferInit {
        binding: index as u32,
        init: Vec::new(),
        len: 0,
        readback: false,
    };
    let mut len = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("file", path)) => {
                b.init =
                    std::fs::read(path).map_err(|e| format!("--buffer: cannot read {path}: {e}"))?
            }
            Some(("len", n)) => len = Some(num::<u64>("--buffer len", n)?),
            Some(("binding", n)) => b.binding = num::<u32>("--buffer binding", n)?,
            None if part == "readback" => b.readback = true,
            _ => {
                return Err(format!(
                    "--buffer: cannot read {part:?} (file=PATH, len=N, binding=N, readback)"
                ))
            }
        }
    }
    b.len = len.unwrap_or(b.init.len() as u64);
    if b.len == 0 {
        return Err("--buffer: give file=PATH or len=N".into());
    }
    Ok(b)
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        tile: 16,
        entry: "main".into(),
        grid: [1, 1, 1],
        max_price: 1_000_000,
        deadline_ms: 60_000,
        est_gpu_ms: 100,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--coordinator" => {
                let v = value()?;
                a.coordinator = Some(v.parse().map_err(|_| format!("not an address: {v}"))?)
            }
            "--ca" => {
                let path = value()?;
                let pem = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                a.trust = Some(Trust::CaPem(pem));
            }
            "--pin" => {
                let v = value()?;
                let pin = parse_hex32(&v).ok_or("--pin: expected 64 hex digits")?;
                a.trust = Some(Trust::PinnedKey(pin));
            }
            "--demo-matmul" => a.demo_n = Some(num(&flag, &value()?)?),
            "--tile" => a.tile = num(&flag, &value()?)?,
            "--kernel" => a.kernel = Some(PathBuf::from(value()?)),
            "--entry" => a.entry = value()?,
            "--grid" => {
                let v = value()?;
                let parts: Vec<u32> = v
                    .split(',')
                    .map(|p| num(&flag, p))
                    .collect::<Result<_, _>>()?;
                if parts.len() != 3 {
                    return Err("--grid: expected X,Y,Z".into());
                }
                a.grid = [parts[0], parts[1], parts[2]];
            }
            "--push-u32" => {
                for p in value()?.split(',') {
                    a.push
                        .extend_from_slice(&num::<u32>(&flag, p)?.to_le_bytes());
                }
            }
            "--push-hex" => {
                let v = value()?;
                if v.len() % 2 != 0 || !v.is_ascii() {
                    return Err("--push-hex: expected an even number of hex digits".into());
                }
                for i in (0..v.len()).step_by(2) {
                    a.push.push(
                        u8::from_str_radix(&v[i..i + 2], 16).map_err(|_| "--push-hex: not hex")?,
                    );
                }
            }
            "--spec" => {
                let v = value()?;
                let (id, val) = v.split_once('=').ok_or("--spec: expected ID=VALUE")?;
                a.spec.push((num(&flag, id)?, num(&flag, val)?));
            }
            "--buffer" => {
                let b = buffer(&value()?, a.buffers.len())?;
                a.buffers.push(b);
            }
            "--max-price" => a.max_price = num(&flag, &value()?)?,
            "--deadline-ms" => a.deadline_ms = num(&flag, &value()?)?,
            "--est-gpu-ms" => a.est_gpu_ms = num(&flag, &value()?)?,
            "--memory-mib" => a.requirements.memory_mib = num(&flag, &value()?)?,
            "--features" => a.requirements.features = num(&flag, &value()?)?,
            "--out" => a.out = Some(PathBuf::from(value()?)),
            "--no-seal" => a.no_seal = true,
            "--trust-provider" => {
                let v = value()?;
                a.trusted
                    .push(parse_hex32(&v).ok_or("--trust-provider: expected 64 hex digits")?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

fn random_matrix(rng: &SystemRandom, n: usize) -> Result<Vec<f32>, String> {
    let mut bytes = vec![0u8; n * n * 2];
    rng.fill(&mut bytes)
        .map_err(|_| "the system random source failed")?;
    // Values in [-1, 1) on a 1/32768 grid keep products exact enough to compare.
    Ok(bytes
        .chunks_exact(2)
        .map(|c| (i16::from_le_bytes([c[0], c[1]]) as f32) / 32768.0)
        .collect())
}

fn print_check(job: &Submit, result: &JobResult, check: &ResultCheck, elapsed_ms: u128) {
    let r = &check.receipt;
    let e = &check.evidence;
    println!("job {} verified in {elapsed_ms} ms", result.job);
    println!("  provider key      {}", hex(&result.provider_public_key));
    println!(
        "  device            {:?} ({:?}, {} MiB)",
        e.capabilities.name.as_str(),
        e.capabilities.device_type,
        e.capabilities.device_local_bytes >> 20
    );
    println!(
        "  evidence          signed by the provider key, named by the receipt; answers the \
         challenge the coordinator reports (its age is not provable here)"
    );
    println!(
        "  receipt           #{} in the provider's chain, status {:?}",
        r.sequence, r.status
    );
    println!("    nonce           {} (ours)", hex(&job.nonce[..8]));
    println!(
        "    kernel hash     {} (recomputed, buffer layout included)",
        hex(&r.kernel_hash)
    );
    println!("    input root      {} (recomputed)", hex(&r.input_root));
    println!(
        "    output root     {} over {} bytes (recomputed from the outputs)",
        hex(&r.output_root),
        r.output_len
    );
    println!("    result hash     {}", hex(&r.result_hash));
    println!(
        "    usage           {} us GPU, {} dispatch(es), {} B in, {} B out",
        r.usage.gpu_time_us, r.usage.dispatches, r.usage.bytes_in, r.usage.bytes_out
    );
    println!("    price           {} (max {})", r.price, job.max_price);
    let (index, size, path) = check.spot_check;
    println!("  spot check        chunk {index} of {size}: Merkle path of {path} hashes leads to the signed root");
}

fn write_outputs(dir: &Path, job: &Submit, outputs: &[&[u8]]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bindings = job.buffers.iter().filter(|b| b.readback).map(|b| b.binding);
    for (binding, data) in bindings.zip(outputs) {
        let path = dir.join(format!("output-{binding}.bin"));
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "  wrote             {} ({} bytes)",
            path.display(),
            data.len()
        );
    }
    Ok(())
}

fn run(a: Args) -> Result<bool, String> {
    let addr = a.coordinator.ok_or("give --coordinator ADDR")?;
    let trust = a
        .trust
        .clone()
        .ok_or("give --ca FILE (from tessera-certs) or --pin HEX")?;
    let tls = client_config(&trust).map_err(|e| e.to_string())?;
    let nonce = new_nonce().map_err(|e| e.to_string())?;
    let mut matrices = None;
    let job = if let Some(n) = a.demo_n {
        if n == 0 || n > 4096 {
            return Err("--demo-matmul: N must be 1..=4096".into());
        }
        let path = a
            .kernel
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MATMUL_KERNEL));
        let kernel = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read the matmul kernel {}: {e} (give --kernel PATH)",
                path.display()
            )
        })?;
        let rng = SystemRandom::new();
        let ma = random_matrix(&rng, n as usize)?;
        let mb = random_matrix(&rng, n as usize)?;
        let mut job = matmul_submit(kernel, n, a.tile, &ma, &mb, a.max_price, nonce);
        job.deadline_ms = a.deadline_ms;
        job.est_gpu_ms = a.est_gpu_ms;
        job.requirements = a.requirements;
        matrices = Some((n as usize, ma, mb));
        job
    } else {
        let path = a
            .kernel
            .clone()
            .ok_or("give --kernel FILE.spv or --demo-matmul N")?;
        let kernel =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if a.buffers.is_empty() {
            return Err("give at least one --buffer".into());
        }
        Submit {
            kernel,
            entry_point: a.entry.clone(),
            specialization: a.spec.clone(),
            push_constants: a.push.clone(),
            grid: a.grid,
            buffers: a.buffers.clone(),
            requirements: a.requirements,
            est_gpu_ms: a.est_gpu_ms,
            max_price: a.max_price,
            deadline_ms: a.deadline_ms,
            nonce,
            sealed: None,
        }
    };
    println!(
        "submitting to {addr}: {} B kernel, grid {:?}, {} buffer(s), max price {}",
        job.kernel.len(),
        job.grid,
        job.buffers.len(),
        job.max_price
    );
    let started = Instant::now();
    let (sealed_submit, result, sealed_outputs) = if a.no_seal {
        let result = submit(addr, tls, &job).map_err(|e| e.to_string())?;
        (None, result, None)
    } else {
        let mut requester = Requester::connect(addr, tls).map_err(|e| e.to_string())?;
        requester.trust_providers(&a.trusted);
        let sealed = requester.submit_sealed(&job).map_err(|e| e.to_string());
        requester.close();
        let sealed = sealed?;
        (Some(sealed.submit), sealed.result, Some(sealed.outputs))
    };
    let elapsed = started.elapsed().as_millis();
    // What was sent: the job, or the job as sealed.
    let sent = sealed_submit.as_ref().unwrap_or(&job);
    // The result was verified; check again here to print the details.
    let check = verify_result(sent, &result).map_err(|e| e.to_string())?;
    print_check(sent, &result, &check, elapsed);
    let outputs: Vec<&[u8]> = match &sealed_outputs {
        Some(plain) => {
            println!(
                "  sealed            end to end: the coordinator held only ciphertext; the \
                 outputs opened with this requester's key and the keyed result hash verified"
            );
            println!(
                "  provider trust    {}",
                if a.trusted.is_empty() {
                    "as the coordinator listed it (pin device keys with --trust-provider to keep a \
                     coordinator that lies out)"
                } else {
                    "pinned (--trust-provider)"
                }
            );
            plain.iter().map(|o| &o[..]).collect()
        }
        None => {
            println!(
                "  sealed            no (--no-seal): the coordinator saw the job in the clear"
            );
            result.outputs.iter().map(|o| &o[..]).collect()
        }
    };
    if let Some(dir) = &a.out {
        write_outputs(dir, &job, &outputs)?;
    }
    if let Some((n, ma, mb)) = matrices {
        let got = bytes_f32(outputs[0]);
        let want = matmul_cpu(n, &ma, &mb);
        let err = max_rel_error(&got, &want);
        let ok = err <= 1e-3;
        println!(
            "  result check      C = A*B for {n}x{n}: max relative error {err:.2e} vs the CPU reference: {}",
            if ok { "ok" } else { "WRONG" }
        );
        return Ok(ok);
    }
    Ok(true)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match parse().and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-requester: {e}");
            ExitCode::FAILURE
        }
    }
}
