//! Runs the built `tippen-server` binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The reference server, running as a child process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl Server {
    /// Starts the binary on a free port with `db` and the extra environment `env`, and waits
    /// for it to print its address.
    pub fn start(db: &Path, env: &[(&str, String)]) -> Server {
        Self::start_with(db, env, &[])
    }

    /// [`Server::start`] with extra arguments.
    pub fn start_with(db: &Path, env: &[(&str, String)], args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tippen-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env("RUST_LOG", "error")
            .env_remove("TIPPEN_CONFIG")
            .env_remove("TIPPEN_NO_DEMO")
            .env_remove("TIPPEN_LISTEN")
            .env_remove("TIPPEN_REDIS_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tippen-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base_url = loop {
            let line = lines
                .next()
                .expect("the server printed its address before exiting")
                .expect("read stdout");
            if let Some(url) = line.strip_prefix("tippen listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, base_url }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
