//! The processes under test: building the release server, making its API
//! key, starting it (and the ceiling) and watching their memory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::Result;
use crate::cores::{CoreMeter, CoreShare};

/// Log lines kept from each process, the last ones.
const LOG_TAIL: usize = 200;

/// The workspace root, from where this crate lives.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `cargo build --release -p endusers`, then the path of the binary.
pub fn build_server(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: cargo build --release -p endusers");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "endusers"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()?;
    if !status.success() {
        return Err(format!("cargo build --release -p endusers failed: {status}").into());
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let binary = target.join("release").join("endusers");
    if !binary.is_file() {
        return Err(format!("{} is missing after the build", binary.display()).into());
    }
    Ok(binary)
}

/// `endusers --database-url URL keys create`: its stdout is the key.
pub fn create_key(binary: &Path, dir: &Path, database_url: &str) -> Result<String> {
    let output = Command::new(binary)
        .current_dir(dir)
        .env_remove("ENDUSERS_CONFIG")
        .args([
            "--database-url",
            database_url,
            "keys",
            "create",
            "--name",
            "bench",
        ])
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "endusers keys create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let key = String::from_utf8(output.stdout)?.trim().to_owned();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("endusers keys create printed {key:?}, not one key").into());
    }
    Ok(key)
}

/// What a process wrote to stderr: the last lines, and how many were
/// warnings or errors.
#[derive(Debug, Default)]
pub struct Log {
    pub tail: VecDeque<String>,
    pub warnings: u64,
    pub errors: u64,
}

/// A running process that announced `listening on ADDR` on stderr; killed
/// when dropped.
pub struct Process {
    name: String,
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
}

impl Process {
    /// Starts `program args` in `dir` and waits for its address.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Result<Self> {
        let mut child = Command::new(program)
            .current_dir(dir)
            .env_remove("ENDUSERS_CONFIG")
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name}: no stderr").into());
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        // Drains stderr for the whole life of the process.
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if !announced && let Some(at) = line.find("listening on ") {
                    let addr = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    announced = tx.send(addr).is_ok();
                }
                let mut log = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if line.contains("WARN") {
                    log.warnings += 1;
                }
                if line.contains("ERROR") {
                    log.errors += 1;
                }
                if log.tail.len() == LOG_TAIL {
                    log.tail.pop_front();
                }
                log.tail.push_back(line);
            }
        });
        let mut process = Self {
            name: name.to_owned(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                process.addr = addr
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .map_err(|e| format!("{name}: listening on {addr:?}: {e}"))?;
                Ok(process)
            }
            Err(_) => Err(format!(
                "{name} did not report `listening on ADDR`; its log:\n{}",
                process.log_text()
            )
            .into()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        let log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("bench: {} exited with {status}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} did not stop in {grace:?}; killing it", self.name);
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process, in KiB: (VmRSS, VmHWM).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What a process (and, beside it, this one) used between two calls of
/// [`UsageSampler::take`]: its highest VmRSS, sampled every 50 ms, and the
/// CPU time of both.
pub struct UsageSampler {
    pid: u32,
    peak: Peak,
    /// The process's CPU time at the last take, in clock ticks.
    cpu_ticks: AtomicU64,
    /// This process's, likewise.
    client_cpu_ticks: AtomicU64,
    cores: Mutex<CoreMeter>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time the process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Memory and CPU time over one scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The highest VmRSS sampled during the scenario.
    pub max_kib: u64,
    /// CPU seconds the process used during the scenario.
    pub cpu_seconds: f64,
    /// CPU seconds this process (the load generator) used meanwhile: it
    /// shares the machine with the server, so it is part of every ratio.
    pub client_cpu_seconds: f64,
    /// VmHWM at its end: the peak since the process started.
    pub hwm_kib: u64,
    /// How the server's threads shared the cores.
    pub cores: CoreShare,
}

impl Usage {
    /// These figures and a later scenario's, as one scenario.
    pub fn merge(&mut self, later: Usage) {
        self.max_kib = self.max_kib.max(later.max_kib);
        self.hwm_kib = later.hwm_kib;
        self.cpu_seconds += later.cpu_seconds;
        self.client_cpu_seconds += later.client_cpu_seconds;
        self.cores.merge(later.cores);
    }
}

/// The highest value a sampling function gave, asked every 50 ms until
/// this is dropped.
struct Peak {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Peak {
    fn start(sample: impl Fn() -> Option<u64> + Send + 'static) -> Self {
        let peak = Self {
            max: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (max, stop) = (Arc::clone(&peak.max), Arc::clone(&peak.stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(value) = sample() {
                    max.fetch_max(value, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        peak
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl UsageSampler {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            peak: Peak::start(move || memory_kib(pid).map(|(rss, _)| rss)),
            cpu_ticks: AtomicU64::new(cpu_ticks(pid).unwrap_or(0)),
            client_cpu_ticks: AtomicU64::new(cpu_ticks(std::process::id()).unwrap_or(0)),
            cores: Mutex::new(CoreMeter::start(pid)),
        }
    }

    /// What was used since the last call, and starts over.
    pub fn take(&self) -> Usage {
        let (rss, hwm) = memory_kib(self.pid).unwrap_or_default();
        let sampled = self.peak.max.swap(rss, Ordering::Relaxed);
        let seconds_since = |pid: u32, last: &AtomicU64| {
            let ticks = cpu_ticks(pid).unwrap_or(0);
            let before = last.swap(ticks, Ordering::Relaxed);
            ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND
        };
        Usage {
            max_kib: sampled.max(rss),
            hwm_kib: hwm,
            cpu_seconds: seconds_since(self.pid, &self.cpu_ticks),
            client_cpu_seconds: seconds_since(std::process::id(), &self.client_cpu_ticks),
            cores: self
                .cores
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        }
    }
}

/// The largest size a file reached over the whole run, sampled every 50 ms:
/// for SQLite's log (`-wal`), which a checkpoint that never completes lets
/// grow without end while every other figure looks normal.
pub struct FileSizePeak {
    peak: Peak,
    seen: Arc<AtomicBool>,
}

impl FileSizePeak {
    pub fn start(path: std::path::PathBuf) -> Self {
        let seen = Arc::new(AtomicBool::new(false));
        let saw = Arc::clone(&seen);
        let peak = Peak::start(move || {
            let len = std::fs::metadata(&path).ok()?.len();
            saw.store(true, Ordering::Relaxed);
            Some(len)
        });
        Self { peak, seen }
    }

    /// `None` when the file never appeared (a path read wrongly would
    /// otherwise pass for a log that stayed empty).
    pub fn bytes(&self) -> Option<u64> {
        self.seen
            .load(Ordering::Relaxed)
            .then(|| self.peak.max.load(Ordering::Relaxed))
    }
}
