//! Timeouts are contained: a kernel that ran out its time stops (the
//! watchdog on its loops), its device is reclaimed and the machine goes
//! quiet; devices still busy with abandoned work are bounded, and the
//! dispatcher refuses work at the bound until one is reclaimed.
//!
//! These tests measure the process's CPU time, so they live in their own
//! test binary and run one at a time.
#![cfg(all(feature = "vulkan", target_os = "linux"))]

mod vulkan_support;
use std::time::{Duration, Instant};
use tessera_core::vulkan::*;
use vulkan_support::*;

/// Held by each test: they must not run beside each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPU time (user + system) the process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // /proc reports clock ticks of 1/100 s (USER_HZ) on Linux.
    Duration::from_millis(ticks * 10)
}

/// Polls `cond` until it holds or `limit` passes; returns the time taken.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn endless_job<'a>(spirv: &'a [u8], bufs: &'a [BufferSpec<'a>]) -> KernelJob<'a> {
    KernelJob {
        spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [65535, 1, 1],
        buffers: bufs,
    }
}

#[test]
fn endless_kernels_are_stopped_and_the_machine_goes_quiet() {
    let _serial = SERIAL.lock();
    let mut d = dispatcher();
    let spirv = kernel("hostile_loop");
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    // Three endless kernels in a row: each times out, and the watchdog
    // stops it, so its device settles and is destroyed (with its
    // instance, whose threads were running the kernel).
    for round in 0..3 {
        let r = d.run(&endless_job(&spirv, &bufs), Duration::from_millis(300));
        assert_eq!(r, Err(JobError::Timeout), "round {round}");
        let reclaimed = wait_until(Duration::from_secs(10), || d.reclaim_abandoned() == 0);
        eprintln!("round {round}: abandoned device reclaimed after {reclaimed:?}");
        assert!(
            reclaimed.is_some(),
            "round {round}: the endless kernel is still running"
        );
        assert!(d.accepting_jobs());
    }
    // A normal job runs, on a fresh device.
    still_serving(&mut d);
    assert!(d.device_generation() >= 3);
    // Idle, the process burns (almost) no CPU: nothing is left spinning.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    eprintln!("CPU time used in one idle second: {used:?}");
    assert!(used < Duration::from_millis(100), "idle CPU: {used:?}");
    assert_clean(&d);
}

#[test]
fn abandoned_devices_are_bounded_and_reclaimed() {
    let _serial = SERIAL.lock();
    let mut d = dispatcher_with(DispatcherConfig {
        max_abandoned_devices: 1,
        ..DispatcherConfig::default()
    });
    // A kernel without loops that keeps the device busy for seconds: the
    // watchdog cannot stop it, so its device stays abandoned for a while.
    let spirv = kernel("hostile_busy");
    let data = vec![0u8; 192 * 16];
    let bufs = [BufferSpec {
        binding: 0,
        len: data.len() as u64,
        init: Some(&data),
        readback: true,
    }];
    let job = |rows| KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [65535, rows, 1],
        buffers: &bufs,
    };
    // Sized to this device: one row of workgroups timed on the device
    // (about 1.7 s on lavapipe, a small fraction of that on a data-centre
    // GPU), then enough rows for about 5 s of work. The limit leaves the
    // compiler its time, more on a loaded machine, so the job times out
    // running.
    let row = d.run(&job(1), TIMEOUT).expect("one row").usage.gpu_time_ns;
    let rows = (5_000_000_000 / row.max(1)).clamp(3, 65535) as u32;
    eprintln!("one row: {row} ns; {rows} rows");
    let job = job(rows);
    assert_eq!(
        d.run(&job, Duration::from_millis(1000)),
        Err(JobError::Timeout)
    );
    assert_eq!(d.abandoned_devices(), 1, "the busy kernel ended too soon");
    assert!(!d.accepting_jobs());
    // At the bound nothing runs, and the refusal says why.
    let spirv_saxpy = kernel("saxpy");
    let push = saxpy_push(1.0, 64);
    let small = [
        BufferSpec {
            binding: 0,
            len: 256,
            init: None,
            readback: false,
        },
        BufferSpec {
            binding: 1,
            len: 256,
            init: None,
            readback: true,
        },
    ];
    let saxpy = KernelJob {
        spirv: &spirv_saxpy,
        entry_point: "main",
        specialization: &[],
        push_constants: &push,
        grid: [1, 1, 1],
        buffers: &small,
    };
    assert_eq!(
        d.run(&saxpy, TIMEOUT),
        Err(JobError::DeviceUnavailable { abandoned: 1 })
    );
    assert_eq!(JobError::DeviceUnavailable { abandoned: 1 }.code(), 5);
    // Once the kernel ends, the device is reclaimed and work is taken again.
    let reclaimed = wait_until(Duration::from_secs(120), || d.accepting_jobs());
    eprintln!("busy device reclaimed after {reclaimed:?}");
    assert!(
        reclaimed.is_some(),
        "the abandoned device was never reclaimed"
    );
    still_serving(&mut d);
    assert_clean(&d);
}

#[path = "../../bench/src/big_kernel.rs"]
#[allow(dead_code)]
mod big_kernel;

#[test]
fn a_kernel_that_compiles_for_seconds_times_out_on_time() {
    let _serial = SERIAL.lock();
    let mut d = dispatcher();
    // A valid 256 KiB kernel of one long dependent chain: lavapipe's
    // compiler needs seconds for it (quadratic in its length), and a
    // compiler cannot be interrupted. The job must still end at its time
    // limit, and the dispatcher serve on.
    // (Salted with the clock, so no shader cache on disk knows it.)
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.subsec_nanos() | 1);
    let spirv = big_kernel::kernel_salted(256 << 10, salt);
    let bufs = [BufferSpec {
        binding: 0,
        len: 4096,
        init: None,
        readback: true,
    }];
    let job = KernelJob {
        spirv: &spirv,
        entry_point: "main",
        specialization: &[],
        push_constants: &[],
        grid: [1, 1, 1],
        buffers: &bufs,
    };
    let limit = Duration::from_millis(500);
    let t = Instant::now();
    let r = d.run(&job, limit);
    let took = t.elapsed();
    eprintln!("compile bomb: {:?} after {took:?}", r.as_ref().err());
    assert_eq!(r, Err(JobError::Timeout));
    // Validation (both gates) and the wait: well under the compile time.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // The device compiling it is parked, and the next job runs on a fresh one.
    assert_eq!(d.abandoned_devices(), 1);
    still_serving(&mut d);
    // Once the compiler is done, the parked device is reclaimed.
    let reclaimed = wait_until(Duration::from_secs(120), || d.reclaim_abandoned() == 0);
    eprintln!("compiling device reclaimed after {reclaimed:?}");
    assert!(reclaimed.is_some());
    assert_clean(&d);
}

/// A cancelled job stops at once: the watchdog takes the endless kernel out
/// of its loop, the device is kept (nothing abandoned) and the next job
/// runs on it. Without cancellation the run held the device until its
/// deadline (here 60 s) and then abandoned it.
#[test]
fn a_cancelled_endless_kernel_stops_and_its_device_is_kept() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _serial = SERIAL.lock();
    let mut d = dispatcher();
    let spirv = kernel("hostile_loop");
    let bufs = [BufferSpec {
        binding: 0,
        len: 64,
        init: None,
        readback: true,
    }];
    // Cancelled before it starts: nothing runs.
    let set = Arc::new(AtomicBool::new(true));
    let r = d.run_cancellable(&endless_job(&spirv, &bufs), Duration::from_secs(60), &set);
    assert_eq!(r, Err(JobError::Cancelled));
    // Cancelled while it runs.
    for round in 0..2 {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let r = d.run_cancellable(
            &endless_job(&spirv, &bufs),
            Duration::from_secs(60),
            &cancel,
        );
        let took = started.elapsed();
        canceller.join().expect("canceller");
        eprintln!("round {round}: cancelled run returned after {took:?}");
        assert_eq!(r, Err(JobError::Cancelled), "round {round}");
        assert!(
            took < Duration::from_secs(20),
            "round {round}: took {took:?}"
        );
        assert_eq!(d.abandoned_devices(), 0, "round {round}: device abandoned");
    }
    still_serving(&mut d);
    assert_clean(&d);
}
