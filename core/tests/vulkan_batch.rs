//! Jobs submitted to the device together (`Dispatcher::run_batch`) give
//! what they give one at a time; a job that times out or is cancelled in
//! the middle of a batch fails alone, and the jobs behind it (which the
//! watchdog stops too) run again rather than return what a stopped kernel
//! left.
#![cfg(feature = "vulkan")]

mod vulkan_support;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::vulkan::*;
use vulkan_support::*;

/// A job's parts, owned, so a batch can borrow them.
struct Owned {
    spirv: Vec<u8>,
    push: Vec<u8>,
    grid: [u32; 3],
    len: u64,
    init: Option<Vec<u8>>,
    /// Never ends: alone, it times out.
    endless: bool,
}

impl Owned {
    /// Escape counts of a 32x24 Mandelbrot image after at most `max_iter`
    /// iterations: a kernel with a loop, which the watchdog cuts short.
    fn mandelbrot(max_iter: u32) -> Owned {
        let (w, h) = (32u32, 24u32);
        let push = [w, h, max_iter]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Owned {
            spirv: kernel("mandelbrot"),
            push,
            grid: [w / 8, h / 8, 1],
            len: u64::from(w * h) * 4,
            init: None,
            endless: false,
        }
    }

    /// A kernel that never ends.
    fn endless() -> Owned {
        Owned {
            spirv: kernel("hostile_loop"),
            push: Vec::new(),
            grid: [64, 1, 1],
            len: 64,
            init: None,
            endless: true,
        }
    }

    /// A kernel with no loop (the watchdog cannot stop it) running
    /// `workgroups` groups of 64 invocations.
    fn busy(workgroups: u32) -> Owned {
        Owned {
            spirv: kernel("hostile_busy"),
            push: Vec::new(),
            grid: [workgroups, 1, 1],
            len: 192 * 16,
            init: Some(vec![1; 192 * 16]),
            endless: false,
        }
    }

    /// A kernel the gate refuses (it reads through a device address).
    fn refused() -> Owned {
        Owned {
            spirv: kernel("hostile_bda"),
            push: Vec::new(),
            grid: [1, 1, 1],
            len: 64,
            init: Some(vec![7; 16]),
            endless: false,
        }
    }
}

/// Runs `jobs` as one batch (deadline `limit` from now, cancel flags as
/// given) and returns each job's outcome by index; each is reported once.
fn run_batch(
    d: &mut Dispatcher,
    jobs: &[Owned],
    limits: &[Duration],
    cancels: &[Option<Arc<AtomicBool>>],
) -> Vec<Result<JobOutput, JobError>> {
    run_batch_timed(d, jobs, limits, cancels)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// [`run_batch`], with the time from the start at which each job was
/// reported.
fn run_batch_timed(
    d: &mut Dispatcher,
    jobs: &[Owned],
    limits: &[Duration],
    cancels: &[Option<Arc<AtomicBool>>],
) -> Vec<(Duration, Result<JobOutput, JobError>)> {
    let specs: Vec<[BufferSpec<'_>; 1]> = jobs
        .iter()
        .map(|j| {
            [BufferSpec {
                binding: 0,
                len: j.len,
                init: j.init.as_deref(),
                readback: true,
            }]
        })
        .collect();
    let now = Instant::now();
    let batch: Vec<BatchJob<'_>> = jobs
        .iter()
        .zip(&specs)
        .zip(limits.iter().zip(cancels))
        .map(|((j, s), (limit, cancel))| BatchJob {
            job: KernelJob {
                spirv: &j.spirv,
                entry_point: "main",
                specialization: &[],
                push_constants: &j.push,
                grid: j.grid,
                buffers: s,
            },
            deadline: now + *limit,
            cancel: cancel.as_ref(),
            confidential: false,
            secret_kernel: false,
        })
        .collect();
    let mut got: Vec<Option<(Duration, Result<JobOutput, JobError>)>> =
        jobs.iter().map(|_| None).collect();
    d.run_batch(&batch, |i, r| {
        assert!(got[i].is_none(), "job {i} reported twice");
        got[i] = Some((now.elapsed(), r));
    });
    got.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| panic!("job {i} never reported")))
        .collect()
}

/// Builds the pipelines of the Mandelbrot and endless kernels on `d`'s
/// device (the endless one cancelled, which keeps the device), so every
/// job of a batch can join it.
fn build_pipelines(d: &mut Dispatcher) {
    let endless = Owned::endless();
    let cancel = Arc::new(AtomicBool::new(false));
    let setter = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let got = run_batch(
        d,
        &[Owned::mandelbrot(5), endless],
        &[TIMEOUT, TIMEOUT],
        &[None, Some(cancel)],
    );
    let _ = setter.join();
    assert!(got[0].is_ok(), "{:?}", got[0]);
    assert_eq!(got[1], Err(JobError::Cancelled));
}

/// What each job gives run alone on a fresh dispatcher (an endless one
/// is not run: it times out).
fn alone(jobs: &[Owned]) -> Vec<Result<Vec<Vec<u8>>, JobError>> {
    let mut d = dispatcher();
    jobs.iter()
        .map(|j| {
            if j.endless {
                return Err(JobError::Timeout);
            }
            let bufs = [BufferSpec {
                binding: 0,
                len: j.len,
                init: j.init.as_deref(),
                readback: true,
            }];
            let job = KernelJob {
                spirv: &j.spirv,
                entry_point: "main",
                specialization: &[],
                push_constants: &j.push,
                grid: j.grid,
                buffers: &bufs,
            };
            d.run(&job, TIMEOUT).map(|o| o.outputs)
        })
        .collect()
}

#[test]
fn a_batch_gives_what_its_jobs_give_one_at_a_time() {
    batch_equals_jobs_alone(Metering::Auto);
}

/// With timestamps each job's pair is its own, after a barrier that makes
/// the job wait for the one submitted before it.
#[test]
fn a_batch_metered_by_timestamps_gives_what_its_jobs_give_one_at_a_time() {
    batch_equals_jobs_alone(Metering::Timestamps);
}

fn batch_equals_jobs_alone(metering: Metering) {
    let mut d = dispatcher_with(DispatcherConfig {
        metering,
        ..DispatcherConfig::default()
    });
    let generation = d.device_generation();
    // A refused kernel, a kernel the device has not built yet and a
    // second batch's worth of jobs, among plain ones.
    let mut jobs: Vec<Owned> = (0..5).map(|i| Owned::mandelbrot(10 + 7 * i)).collect();
    jobs.insert(2, Owned::refused());
    jobs.push(Owned::busy(4));
    // Seventeen jobs of a built kernel behind it: with it, a full round of
    // sixteen, then another.
    jobs.extend((0..17).map(|i| Owned::mandelbrot(100 + i)));
    let n = jobs.len();
    let want = alone(&jobs);
    for round in 0..2 {
        let got = run_batch(&mut d, &jobs, &vec![TIMEOUT; n], &vec![None; n]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            match (g, w) {
                (Ok(g), Ok(w)) => {
                    assert!(g.outputs == *w, "round {round}, job {i}: outputs differ");
                    if metering == Metering::Timestamps {
                        assert_eq!(g.usage.clock, MeterClock::GpuTimestamps);
                    }
                }
                (Err(g), Err(w)) => assert_eq!(g, w, "round {round}, job {i}"),
                _ => panic!("round {round}, job {i}: {g:?} alone gave {w:?}"),
            }
        }
        assert!(matches!(got[2], Err(JobError::Rejected(_))));
    }
    assert_eq!(d.device_generation(), generation, "no device was replaced");
    assert_clean(&d);
}

#[test]
fn an_endless_kernel_in_a_batch_times_out_alone() {
    let mut d = dispatcher();
    let mut jobs: Vec<Owned> = (0..6).map(|i| Owned::mandelbrot(50 + 13 * i)).collect();
    jobs.insert(2, Owned::endless());
    let n = jobs.len();
    build_pipelines(&mut d);
    let generation = d.device_generation();
    let want = alone(&jobs);
    let mut limits = vec![TIMEOUT; n];
    limits[2] = Duration::from_millis(500);
    let t = Instant::now();
    let got = run_batch(&mut d, &jobs, &limits, &vec![None; n]);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match (g, w) {
            (Ok(g), Ok(w)) => assert!(g.outputs == *w, "job {i}: outputs differ"),
            (Err(g), Err(w)) => assert_eq!(g, w, "job {i}"),
            _ => panic!("job {i}: {g:?}, alone {w:?}"),
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // Every kernel left at the watchdog within the grace time.
    assert_eq!(d.device_generation(), generation, "the device was kept");
    still_serving(&mut d);
    assert_clean(&d);
}

#[test]
fn a_job_cancelled_in_a_batch_fails_alone_and_the_device_is_kept() {
    let mut d = dispatcher();
    let mut jobs: Vec<Owned> = (0..6).map(|i| Owned::mandelbrot(60 + 11 * i)).collect();
    jobs.insert(1, Owned::endless());
    let n = jobs.len();
    build_pipelines(&mut d);
    let generation = d.device_generation();
    let want = alone(&jobs);
    let cancel = Arc::new(AtomicBool::new(false));
    let mut cancels = vec![None; n];
    cancels[1] = Some(cancel.clone());
    let setter = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let got = run_batch(&mut d, &jobs, &vec![TIMEOUT; n], &cancels);
    let _ = setter.join();
    assert_eq!(got[1], Err(JobError::Cancelled));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i == 1 {
            continue;
        }
        let (Ok(g), Ok(w)) = (g, w) else {
            panic!("job {i}: {g:?}, alone {w:?}");
        };
        assert!(
            g.outputs == *w,
            "job {i}: outputs differ from its run alone"
        );
    }
    assert_eq!(d.device_generation(), generation, "the device was kept");
    still_serving(&mut d);
    assert_clean(&d);
}

/// A job that times out in a batch stops the jobs behind it with the
/// watchdog and gets the grace time: the kernels behind, which the
/// watchdog cannot stop, are small and end, so the device is kept and
/// they run again on it, rather than hold an abandoned device and be
/// refused for it (the bound here is one abandoned device).
#[test]
fn jobs_behind_a_timeout_are_not_refused_for_its_abandoned_device() {
    let mut d = dispatcher_with(DispatcherConfig {
        max_abandoned_devices: 1,
        ..DispatcherConfig::default()
    });
    build_pipelines(&mut d);
    run_batch(&mut d, &[Owned::busy(1)], &[TIMEOUT], &[None]);
    let generation = d.device_generation();
    let jobs = vec![Owned::endless(), Owned::busy(256), Owned::mandelbrot(20)];
    let want = alone(&jobs);
    let got = run_batch(
        &mut d,
        &jobs,
        &[Duration::from_millis(500), TIMEOUT, TIMEOUT],
        &[None, None, None],
    );
    assert_eq!(got[0], Err(JobError::Timeout));
    for i in 1..3 {
        let (Ok(g), Ok(w)) = (&got[i], &want[i]) else {
            panic!("job {i}: {:?}, alone {:?}", got[i], want[i]);
        };
        assert!(g.outputs == *w, "job {i}: outputs differ");
    }
    assert_eq!(d.device_generation(), generation, "the device was kept");
    assert_clean(&d);
}

/// A small job whose deadline passes while it waits behind a long one
/// times out without costing the device. (Small, but not so small that it
/// may end before the dispatcher looks at it after the long one: a job
/// that has ended when it is looked at is reported as it ended, and a 256
/// workgroup one, about 0.1 ms, sometimes had.)
#[test]
fn a_job_that_times_out_waiting_in_a_batch_leaves_the_device() {
    let mut d = dispatcher();
    build_pipelines(&mut d);
    run_batch(&mut d, &[Owned::busy(1)], &[TIMEOUT], &[None]);
    let generation = d.device_generation();
    let got = run_batch(
        &mut d,
        &[Owned::busy(20_000), Owned::busy(2_000)],
        &[TIMEOUT, Duration::from_millis(100)],
        &[None, None],
    );
    assert!(got[0].is_ok(), "{:?}", got[0]);
    assert_eq!(got[1], Err(JobError::Timeout));
    assert_eq!(d.device_generation(), generation, "the device was kept");
    still_serving(&mut d);
    assert_clean(&d);
}

/// A job whose deadline passes while it waits for the round ahead of it,
/// and which then would start a round alone (too big to join one, or its
/// kernel not built yet), fails without reaching the device: nothing is
/// abandoned.
#[test]
fn a_job_whose_time_ran_out_before_its_round_never_reaches_the_device() {
    for built in [true, false] {
        let mut d = dispatcher_with(DispatcherConfig {
            max_abandoned_devices: 1,
            ..DispatcherConfig::default()
        });
        if built {
            build_pipelines(&mut d);
        }
        run_batch(&mut d, &[Owned::busy(1)], &[TIMEOUT], &[None]);
        let generation = d.device_generation();
        let late = if built {
            Owned::busy(20_000)
        } else {
            Owned::mandelbrot(5)
        };
        let got = run_batch(
            &mut d,
            &[Owned::busy(20_000), late],
            &[TIMEOUT, Duration::from_millis(100)],
            &[None, None],
        );
        assert!(got[0].is_ok(), "{:?}", got[0]);
        assert_eq!(got[1], Err(JobError::Timeout), "built {built}");
        assert_eq!(d.abandoned_devices(), 0, "built {built}: nothing abandoned");
        assert_eq!(d.device_generation(), generation, "built {built}");
        still_serving(&mut d);
        assert_clean(&d);
    }
}

/// A job that ended is reported without waiting for a slow job behind it
/// in its round: fifteen small jobs whose deadlines are 1 s away, ahead of
/// one that does not end (stopped at its own deadline, 2 s away), are each
/// reported, with their outputs, before their deadlines. Before, none was
/// reported until the slow one timed out, so the agent would have failed
/// all fifteen for their deadlines.
#[test]
fn jobs_ahead_of_a_slow_one_are_reported_before_their_deadlines() {
    let mut d = dispatcher();
    build_pipelines(&mut d);
    let mut jobs: Vec<Owned> = (0..15).map(|i| Owned::mandelbrot(10 + i)).collect();
    // The most invocations a job behind others may have (16,384): on
    // lavapipe, which ends a loop after 65,535 turns, it would still run
    // for about 4 s.
    jobs.push(Owned {
        grid: [256, 1, 1],
        ..Owned::endless()
    });
    let n = jobs.len();
    let mut limits = vec![Duration::from_secs(1); n];
    limits[n - 1] = Duration::from_secs(2);
    let want = alone(&jobs[..n - 1]);
    let got = run_batch_timed(&mut d, &jobs, &limits, &vec![None; n]);
    for (i, (at, r)) in got.iter().enumerate().take(n - 1) {
        assert!(
            *at < limits[i],
            "job {i} reported at {at:?}, past its deadline"
        );
        match (r, &want[i]) {
            (Ok(o), Ok(w)) => assert!(o.outputs == *w, "job {i}: outputs differ"),
            other => panic!("job {i}: {other:?}"),
        }
    }
    assert_eq!(got[n - 1].1.as_ref().err(), Some(&JobError::Timeout));
    still_serving(&mut d);
    assert_clean(&d);
}
