//! Provider policy: which offers to take and what to charge.
//!
//! Pricing is linear in metered usage, as Golem's linear pricing: a base fee,
//! plus a rate per GPU millisecond, per MiB received and per MiB returned, never
//! below a floor. An offer is quoted from the requester's estimates; the price
//! charged at the end is the same schedule over what was metered, kept between
//! the floor and the offer's maximum. A job whose kernel ran out its time is
//! charged its quote; any other failure nothing.

use crate::attest::DeviceCapabilities;
use crate::limits::{DEFAULT_MAX_CONCURRENT, MAX_JOBS};
use crate::time::Duration;
use crate::wire::{DeclineReason, JobOffer, Usage};

const MIB: u64 = 1 << 20;

/// A linear price schedule, in the network's smallest price unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearPrice {
    /// Fixed fee per job.
    pub base: u64,
    /// Per GPU millisecond (rounded up).
    pub per_gpu_ms: u64,
    /// Per MiB received, kernel and inputs (rounded up).
    pub per_mib_in: u64,
    /// Per MiB returned (rounded up).
    pub per_mib_out: u64,
}

impl LinearPrice {
    /// The schedule's price for the given quantities, saturating on overflow.
    pub fn price(&self, gpu_ms: u64, bytes_in: u64, bytes_out: u64) -> u64 {
        self.base
            .saturating_add(self.per_gpu_ms.saturating_mul(gpu_ms))
            .saturating_add(self.per_mib_in.saturating_mul(bytes_in.div_ceil(MIB)))
            .saturating_add(self.per_mib_out.saturating_mul(bytes_out.div_ceil(MIB)))
    }
}

/// What the provider takes and charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Jobs held at once: 1 to [`MAX_JOBS`], [`DEFAULT_MAX_CONCURRENT`]
    /// (4) unless set.
    pub max_concurrent: u8,
    /// The price schedule.
    pub price: LinearPrice,
    /// The least the provider charges for any job.
    pub floor: u64,
    /// Most bytes the provider receives for one job.
    pub max_bytes_in: u64,
    /// Most bytes the provider returns for one job.
    pub max_bytes_out: u64,
    /// Interval between heartbeats, unless the coordinator asks for another.
    pub heartbeat_interval: Duration,
    /// Silence from the coordinator after which the connection is given up.
    pub peer_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            price: LinearPrice::default(),
            floor: 0,
            max_bytes_in: 256 << 20,
            max_bytes_out: 256 << 20,
            heartbeat_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
        }
    }
}

impl Policy {
    /// Decides on an offer: the quoted price, or why it is declined. `active`
    /// is the number of jobs the agent holds now; `available` whether the
    /// device takes work now (see [`crate::Agent::set_device_available`]).
    /// The reasons are checked in the documented order (`docs/PROTOCOL.md`,
    /// "Offers and pricing"); a duplicate job id, checked before them all, is
    /// the agent's.
    pub fn evaluate(
        &self,
        offer: &JobOffer,
        device: &DeviceCapabilities,
        active: usize,
        draining: bool,
        available: bool,
    ) -> Result<u64, DeclineReason> {
        if draining {
            return Err(DeclineReason::Draining);
        }
        if !available {
            return Err(DeclineReason::Unavailable);
        }
        if active >= (self.max_concurrent as usize).min(MAX_JOBS) {
            return Err(DeclineReason::AtCapacity);
        }
        let needs = offer.requirements;
        let memory = (needs.memory_mib as u64).saturating_mul(MIB);
        if needs.features & !device.features != 0 || memory > device.device_local_bytes {
            return Err(DeclineReason::Unsupported);
        }
        if offer.bytes_in > self.max_bytes_in || offer.bytes_out > self.max_bytes_out {
            return Err(DeclineReason::TooLarge);
        }
        if offer.deadline_ms < offer.est_gpu_ms {
            return Err(DeclineReason::DeadlineTooShort);
        }
        let quote = self.quote(offer);
        if quote > offer.max_price {
            return Err(DeclineReason::PriceTooLow);
        }
        Ok(quote)
    }

    /// The price for an offer's estimates, at least the floor.
    pub fn quote(&self, offer: &JobOffer) -> u64 {
        self.price
            .price(offer.est_gpu_ms as u64, offer.bytes_in, offer.bytes_out)
            .max(self.floor)
    }

    /// The price charged for a job whose kernel ran out its time (receipt
    /// status `Timeout`): exactly the quote the provider accepted the job at
    /// (`OfferAccept.price`, never above the offer's `max_price`).
    ///
    /// Unlike [`Policy::charge`], whose schedule only the provider knows,
    /// this rule is one a coordinator verifies from what it saw: the receipt's
    /// price must equal the quote it accepted. A kernel that runs out its
    /// time held the device until the limit the requester's deadline set, so
    /// the requester pays what it agreed to for the job, and never more.
    /// Every other failure is charged 0.
    pub fn charge_timeout(&self, quote: u64) -> u64 {
        quote
    }

    /// The price charged for metered usage: the schedule, at least the floor,
    /// at most what the requester offered.
    pub fn charge(&self, usage: &Usage, max_price: u64) -> u64 {
        let gpu_ms = usage.gpu_time_us.div_ceil(1000);
        self.price
            .price(gpu_ms, usage.bytes_in, usage.bytes_out)
            .max(self.floor)
            .min(max_price)
    }
}
