//! The coordinator's byte budget: every byte it holds for requesters (request
//! bodies as they arrive and while their jobs need them, and the read-back
//! bytes a job states, until the result has been written to its requester) is
//! counted here, against `Config::max_buffered_bytes`.
//!
//! A [`Permit`] holds bytes of the budget and gives them back when dropped, so
//! the count follows the memory it stands for wherever that memory goes: into
//! a job, onto a connection's queue, or out of scope on an error path.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes the coordinator may hold for requesters, all of them together.
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Takes `bytes` even past the limit (saturating).
    fn take_anyway(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_add(bytes))
            });
    }

    fn give_back(&self, bytes: usize) {
        // Never more than was taken: a permit gives back what it holds once.
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// A permit holding nothing yet.
    pub(crate) fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            budget: Some(Arc::clone(self)),
            bytes: 0,
        }
    }
}

/// Bytes held from a [`Budget`], given back on drop.
pub(crate) struct Permit {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Permit {
    /// A permit outside any budget (for a job built in a test).
    #[cfg(test)]
    pub(crate) fn unbudgeted() -> Permit {
        Permit {
            budget: None,
            bytes: 0,
        }
    }

    /// Takes `bytes` more from the budget even where that goes over its
    /// limit: for bytes already read that must be kept. Until they are
    /// given back, requests that do not fit are refused.
    pub(crate) fn grow_anyway(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            budget.take_anyway(bytes);
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Takes `bytes` more from the budget; `false`, changing nothing, when
    /// that would go over its limit.
    pub(crate) fn grow(&mut self, bytes: usize) -> bool {
        let Some(total) = self.bytes.checked_add(bytes) else {
            return false;
        };
        if let Some(budget) = &self.budget {
            if !budget.take(bytes) {
                return false;
            }
        }
        self.bytes = total;
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.bytes);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permit({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_take_within_the_limit_and_give_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.permit();
        assert!(a.grow(60));
        let mut b = budget.permit();
        assert!(!b.grow(41), "over the limit");
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        assert!(!a.grow(usize::MAX), "no overflow");
        let mut c = budget.permit();
        c.grow_anyway(30);
        assert_eq!(budget.used(), 130, "over the limit, counted");
        assert!(!b.grow(1));
        drop(c);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
