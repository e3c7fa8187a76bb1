//! How the server's threads shared the cores over a scenario: the time
//! each ran, and the time it was ready to run but waited for a core, from
//! the kernel's `/proc/<pid>/task/<tid>/schedstat`.
//!
//! On a small machine shared with the load generator, that wait is where
//! time goes that no profile of the server's own code shows: a request
//! whose thread waits for a core is slower however little it computes,
//! and moving work from one thread to another changes nothing while every
//! core is taken.

use std::collections::HashMap;
use std::time::Instant;

/// The threads the report tells apart, by the names the server gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The async runtime's workers: HTTP, handlers, webhook deliveries.
    Runtime,
    /// The store's single writer.
    Writer,
}

fn kind(name: &str) -> Option<Kind> {
    if name.starts_with("tokio") {
        Some(Kind::Runtime)
    } else if name == endusers_store::sqlite::WRITER_THREAD {
        Some(Kind::Writer)
    } else {
        None
    }
}

/// Nanoseconds run and waited for a core, summed over threads of one kind,
/// and how many of them ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub run_ns: u64,
    pub wait_ns: u64,
    pub threads: u64,
}

impl Spent {
    fn add(&mut self, run_ns: u64, wait_ns: u64) {
        self.run_ns += run_ns;
        self.wait_ns += wait_ns;
        self.threads += 1;
    }

    fn merge(&mut self, later: Spent) {
        self.run_ns += later.run_ns;
        self.wait_ns += later.wait_ns;
        self.threads = self.threads.max(later.threads);
    }

    /// Shares of `wall_ns` per thread that ran and that waited.
    pub fn shares(&self, wall_ns: u64) -> Option<(f64, f64)> {
        let per_thread = (wall_ns as f64) * (self.threads as f64);
        (per_thread > 0.0).then(|| {
            (
                self.run_ns as f64 / per_thread,
                self.wait_ns as f64 / per_thread,
            )
        })
    }
}

/// The server's runtime workers and writer over one scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreShare {
    pub wall_ns: u64,
    pub runtime: Spent,
    pub writer: Spent,
}

impl CoreShare {
    pub fn merge(&mut self, later: CoreShare) {
        self.wall_ns += later.wall_ns;
        self.runtime.merge(later.runtime);
        self.writer.merge(later.writer);
    }

    /// "runtime 42 %, writer 12 %": the share of its time each kind of
    /// thread waited for a core; "–" where the kernel does not tell.
    pub fn wait_text(&self) -> String {
        match (
            self.runtime.shares(self.wall_ns),
            self.writer.shares(self.wall_ns),
        ) {
            (Some((_, runtime)), Some((_, writer))) => format!(
                "runtime {:.0} %, writer {:.0} %",
                runtime * 100.0,
                writer * 100.0
            ),
            (Some((_, runtime)), None) => format!("runtime {:.0} %", runtime * 100.0),
            _ => "–".to_owned(),
        }
    }
}

/// Reads the threads' counters and gives what they spent since the last
/// call (threads born meanwhile count whole).
pub struct CoreMeter {
    pid: u32,
    last: HashMap<u32, (Kind, u64, u64)>,
    at: Instant,
}

impl CoreMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            last: read(pid),
            at: Instant::now(),
        }
    }

    pub fn take(&mut self) -> CoreShare {
        let now = read(self.pid);
        let mut share = CoreShare {
            wall_ns: u64::try_from(self.at.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ..CoreShare::default()
        };
        for (tid, &(kind, run, wait)) in &now {
            let (run_before, wait_before) = self
                .last
                .get(tid)
                .map_or((0, 0), |&(_, run, wait)| (run, wait));
            let ran = run.saturating_sub(run_before);
            if ran == 0 {
                continue;
            }
            let waited = wait.saturating_sub(wait_before);
            match kind {
                Kind::Runtime => share.runtime.add(ran, waited),
                Kind::Writer => share.writer.add(ran, waited),
            }
        }
        self.last = now;
        self.at = Instant::now();
        share
    }
}

/// Each named thread's kind and its run and wait nanoseconds; empty where
/// the kernel keeps no such counters.
fn read(pid: u32) -> HashMap<u32, (Kind, u64, u64)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Some(kind) = std::fs::read_to_string(path.join("comm"))
            .ok()
            .and_then(|name| kind(name.trim()))
        else {
            continue;
        };
        if let Some((run, wait)) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|text| parse_schedstat(&text))
        {
            threads.insert(tid, (kind, run, wait));
        }
    }
    threads
}

/// `schedstat` is "<ns on a core> <ns waiting for one> <time slices>".
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace();
    let run = fields.next()?.parse().ok()?;
    let wait = fields.next()?.parse().ok()?;
    Some((run, wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_run_and_wait() {
        assert_eq!(
            parse_schedstat("4521000 1200000 37\n"),
            Some((4_521_000, 1_200_000))
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn threads_are_told_apart_by_name() {
        assert_eq!(kind("tokio-rt-worker"), Some(Kind::Runtime));
        assert_eq!(kind("tokio-runtime-w"), Some(Kind::Runtime));
        assert_eq!(
            kind(endusers_store::sqlite::WRITER_THREAD),
            Some(Kind::Writer)
        );
        assert_eq!(kind("sqlite-read-0"), None);
    }

    #[test]
    fn shares_are_per_thread_of_the_wall_time() {
        let share = CoreShare {
            wall_ns: 1_000,
            runtime: Spent {
                run_ns: 600,
                wait_ns: 800,
                threads: 2,
            },
            writer: Spent {
                run_ns: 450,
                wait_ns: 120,
                threads: 1,
            },
        };
        assert_eq!(share.runtime.shares(share.wall_ns), Some((0.3, 0.4)));
        assert_eq!(share.wait_text(), "runtime 40 %, writer 12 %");
        assert_eq!(CoreShare::default().wait_text(), "–");
    }
}
