//! Two figures of the machine's own speed, taken before a run. Virtual
//! machines of the same name differ by several times in what they deliver
//! (clock rate, cache, memory behind nested paging), and every figure of a
//! run moves with them; these say which kind of machine a result came from,
//! so results from different machines are not read as the server changing.
//!
//! - Compute: SHA-256 over a buffer that stays in cache, one thread, MB/s.
//! - Memory: the latency of dependent loads at random places in 64 MiB,
//!   which misses the caches and the TLB much as SQLite's B-tree pages and
//!   the server's working set do.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// The machine's speed, as measured just before the run.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// SHA-256 throughput of one thread, MB/s.
    pub sha256_mb_per_s: f64,
    /// Nanoseconds per dependent load at a random place in 64 MiB.
    pub memory_latency_ns: f64,
}

/// Takes about a second.
pub fn measure() -> Calibration {
    Calibration {
        sha256_mb_per_s: sha256_throughput(Duration::from_millis(400)),
        memory_latency_ns: memory_latency(64 << 20, 4_000_000),
    }
}

fn sha256_throughput(for_at_least: Duration) -> f64 {
    let block = vec![0x5au8; 16 << 10];
    let started = Instant::now();
    let mut bytes = 0usize;
    while started.elapsed() < for_at_least {
        for _ in 0..64 {
            black_box(Sha256::digest(black_box(&block)));
            bytes += block.len();
        }
    }
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// Follows one random cycle through `bytes` of `u32` slots `steps` times:
/// each load's address is the previous load's value, so none can overlap.
fn memory_latency(bytes: usize, steps: usize) -> f64 {
    let slots = bytes / std::mem::size_of::<u32>();
    // Sattolo's shuffle of the identity makes a single cycle through every slot.
    let mut next: Vec<u32> = (0..slots).map(|i| i as u32).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for i in (1..slots).rev() {
        let j = rng.random_range(0..i);
        next.swap(i, j);
    }
    // Every page was written by the shuffle, so no page fault is timed.
    let mut at = 0u32;
    let started = Instant::now();
    for _ in 0..steps {
        at = next[at as usize];
    }
    black_box(at);
    started.elapsed().as_nanos() as f64 / steps as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_are_positive_and_finite() {
        let throughput = super::sha256_throughput(std::time::Duration::from_millis(10));
        let latency = super::memory_latency(1 << 20, 10_000);
        for figure in [throughput, latency] {
            assert!(figure.is_finite() && figure > 0.0, "{figure}");
        }
    }
}
