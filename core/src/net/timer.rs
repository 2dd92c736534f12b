//! A wake-up at the microsecond for the runtime's poll.
//!
//! mio's `poll` takes its timeout in whole milliseconds, rounded up (epoll's
//! unit), so a timer due in 300 µs fires after a millisecond or more: a
//! batch of receipts would wait well past the `max_delay_us` its coordinator
//! set. On Linux a timerfd, registered with the poll, wakes it when the
//! timer is due; elsewhere the poll's own timeout does, to the millisecond.

use std::io;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

/// One armed time at most; arming again moves it.
pub(crate) struct PreciseTimer {
    /// None where the system gave no timerfd: the poll's millisecond then.
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
    /// The time it is armed for, to skip arming it again for the same.
    armed: Option<Instant>,
}

impl PreciseTimer {
    /// A timer whose wake-ups come to `registry` as `token`. Without a
    /// timerfd (the system refused one) it logs why and leaves the
    /// wake-ups to the poll's timeout, to the millisecond.
    #[cfg(target_os = "linux")]
    pub(crate) fn new(registry: &Registry, token: Token) -> Self {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        use std::os::fd::AsRawFd;
        let made = || -> io::Result<std::os::fd::OwnedFd> {
            // CLOCK_MONOTONIC: std's `Instant` on Linux.
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            registry.register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                token,
                mio::Interest::READABLE,
            )?;
            Ok(fd)
        };
        let fd = made()
            .map_err(|e| log::warn!("no timerfd ({e}): timers wake to the millisecond"))
            .ok();
        PreciseTimer { fd, armed: None }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new(_registry: &Registry, _token: Token) -> Self {
        PreciseTimer { armed: None }
    }

    /// Wakes the poll at `at`. A time already past is left to the poll's
    /// zero timeout. An earlier time it replaces no longer fires.
    pub(crate) fn arm(&mut self, at: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.set(left)?;
        self.armed = Some(at);
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn set(&mut self, left: Duration) -> io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let spec = Itimerspec {
            it_interval: Timespec::default(),
            // Not zero, which would disarm it: `left` is above zero.
            it_value: Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            },
        };
        if let Some(fd) = &self.fd {
            timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec)?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn set(&mut self, _left: Duration) -> io::Result<()> {
        Ok(())
    }

    /// Its wake-up came: reads it off, so that the poll reports it once.
    pub(crate) fn fired(&mut self) {
        self.armed = None;
        #[cfg(target_os = "linux")]
        {
            // The expiration count; a timer with none (EAGAIN: non-blocking)
            // is fine.
            let mut count = [0u8; 8];
            if let Some(fd) = &self.fd {
                let _ = rustix::io::read(fd, &mut count);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The poll wakes when the timer is due, not at its own timeout, and
    /// reports the timer once.
    #[test]
    fn the_poll_wakes_at_the_armed_time() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut timer = PreciseTimer::new(poll.registry(), Token(7));
        let start = Instant::now();
        timer.arm(start + Duration::from_micros(300)).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let woke = start.elapsed();
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert!(woke >= Duration::from_micros(300), "{woke:?}");
        assert!(woke < Duration::from_secs(2), "{woke:?}");
        timer.fired();
        // Read off: no second report.
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        assert!(events.is_empty());
    }
}
