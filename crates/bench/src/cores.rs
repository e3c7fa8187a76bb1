//! How the server's threads shared the cores over a scenario: the time
//! each ran, and the time it was ready to run but waited for a core, from
//! the kernel's `/proc/<pid>/task/<tid>/schedstat`; and how much of the
//! machine's CPU time its host took, from `/proc/stat`.
//!
//! On a small machine shared with the load generator, that wait is where
//! time goes that no profile of the server's own code shows: a request
//! whose thread waits for a core is slower however little it computes,
//! and moving work from one thread to another changes nothing while every
//! core is taken.
//!
//! On a virtual machine the host may also run other guests on the cores
//! this one thinks it has: the kernel counts that time as stolen. A
//! scenario that ran while the host took a third of the cores is slower
//! for it, whatever the build, so every row says how much was taken.

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
    } else if name == crate::sqlite::WRITER_THREAD {
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

/// The whole machine's CPU time, in clock ticks summed over its CPUs: all
/// of it, and what the host took for other guests ("steal").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostTime {
    pub all_ticks: u64,
    pub stolen_ticks: u64,
}

impl HostTime {
    /// Reads `/proc/stat`; zero where the kernel does not tell.
    fn read() -> Self {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text))
            .unwrap_or_default()
    }

    /// Adds a later interval's ticks.
    pub fn add(&mut self, later: HostTime) {
        self.all_ticks += later.all_ticks;
        self.stolen_ticks += later.stolen_ticks;
    }

    fn since(self, earlier: HostTime) -> HostTime {
        HostTime {
            all_ticks: self.all_ticks.saturating_sub(earlier.all_ticks),
            stolen_ticks: self.stolen_ticks.saturating_sub(earlier.stolen_ticks),
        }
    }

    /// The share of the machine's CPU time the host took; `None` where
    /// nothing was counted.
    pub fn stolen_share(&self) -> Option<f64> {
        (self.all_ticks > 0).then(|| self.stolen_ticks as f64 / self.all_ticks as f64)
    }

    /// "12 %", or "–" where nothing was counted.
    pub fn stolen_text(&self) -> String {
        self.stolen_share()
            .map_or_else(|| "–".to_owned(), |share| format!("{:.0} %", share * 100.0))
    }
}

/// The first line of `/proc/stat`, "cpu  user nice system idle iowait irq
/// softirq steal guest guest_nice" in clock ticks: the first eight make up
/// all the time (guest time is already counted in user), the eighth is the
/// stolen part.
fn parse_proc_stat(text: &str) -> Option<HostTime> {
    let line = text.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let stolen_ticks = *ticks.get(7)?;
    Some(HostTime {
        all_ticks: ticks.iter().sum(),
        stolen_ticks,
    })
}

/// The server's runtime workers and writer over one scenario, and the
/// machine's time the host took meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreShare {
    pub wall_ns: u64,
    pub runtime: Spent,
    pub writer: Spent,
    pub host: HostTime,
}

impl CoreShare {
    pub fn merge(&mut self, later: CoreShare) {
        self.wall_ns += later.wall_ns;
        self.runtime.merge(later.runtime);
        self.writer.merge(later.writer);
        self.host.add(later.host);
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
    host: HostTime,
    at: Instant,
}

impl CoreMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            last: read(pid),
            host: HostTime::read(),
            at: Instant::now(),
        }
    }

    pub fn take(&mut self) -> CoreShare {
        let now = read(self.pid);
        let host = HostTime::read();
        let mut share = CoreShare {
            wall_ns: u64::try_from(self.at.elapsed().as_nanos()).unwrap_or(u64::MAX),
            host: host.since(self.host),
            ..CoreShare::default()
        };
        self.host = host;
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
        assert_eq!(kind(crate::sqlite::WRITER_THREAD), Some(Kind::Writer));
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
            host: HostTime::default(),
        };
        assert_eq!(share.runtime.shares(share.wall_ns), Some((0.3, 0.4)));
        assert_eq!(share.wait_text(), "runtime 40 %, writer 12 %");
        assert_eq!(CoreShare::default().wait_text(), "–");
    }

    #[test]
    fn proc_stat_gives_all_time_and_the_stolen_part() {
        let text = "cpu  285446 0 82574 154240 5113 0 30027 6465 0 0\n\
                    cpu0 142000 0 41000 77000 2500 0 15000 3200 0 0\n";
        let host = parse_proc_stat(text).unwrap();
        assert_eq!(
            host,
            HostTime {
                all_ticks: 285_446 + 82_574 + 154_240 + 5_113 + 30_027 + 6_465,
                stolen_ticks: 6_465,
            }
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn the_stolen_share_is_of_the_time_between_two_readings() {
        let before = HostTime {
            all_ticks: 1_000,
            stolen_ticks: 10,
        };
        let after = HostTime {
            all_ticks: 1_400,
            stolen_ticks: 110,
        };
        let host = after.since(before);
        assert_eq!(host.stolen_share(), Some(0.25));
        assert_eq!(host.stolen_text(), "25 %");
        assert_eq!(HostTime::default().stolen_share(), None);
        assert_eq!(HostTime::default().stolen_text(), "–");

        let mut share = CoreShare {
            host,
            ..CoreShare::default()
        };
        share.merge(CoreShare {
            host: HostTime {
                all_ticks: 600,
                stolen_ticks: 0,
            },
            ..CoreShare::default()
        });
        assert_eq!(share.host.stolen_share(), Some(0.1));
    }
}
