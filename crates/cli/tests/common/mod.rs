//! The harness for tests of the `endusers` binary: real processes, real
//! SQLite files, real signals.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../server/tests/common/test_redis.rs"]
pub mod test_redis;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_endusers");

pub fn endusers(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("ENDUSERS_CONFIG")
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The Python interpreter that runs the independent checkers:
/// `ENDUSERS_TEST_PYTHON` when set, else `python3` (scripts/test puts the
/// project's `.venv`, where it installs them, first on PATH).
pub fn python() -> Command {
    Command::new(std::env::var_os("ENDUSERS_TEST_PYTHON").unwrap_or_else(|| "python3".into()))
}

pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("data/endusers.db").display())
}

pub fn create_key(dir: &Path) -> String {
    let out = endusers(
        dir,
        &[
            "--database-url",
            &database_url(dir),
            "keys",
            "create",
            "--name",
            "ci",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is exactly the key: {stdout:?}");
    assert!(lines[0].starts_with("eu_"));
    lines[0].to_owned()
}

/// A running `endusers serve` on an ephemeral port.
pub struct Server {
    pub child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        Self::start_with_env(dir, &[])
    }

    /// Starts with extra `ENDUSERS_*` settings in the environment.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env_remove("ENDUSERS_CONFIG")
            .env("ENDUSERS_LOG", "info")
            // Limits are the subject of their own tests; bursts here must pass.
            .env("ENDUSERS_RATE_LIMIT_END_USER", "off")
            .env("ENDUSERS_RATE_LIMIT_GLOBAL", "off")
            .envs(env.iter().copied())
            .args([
                "--database-url",
                &database_url(dir),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let addr = line[at + 13..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server reports its address");
        Self {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                let log = self.log.lock().unwrap().clone();
                return (status, log);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}
