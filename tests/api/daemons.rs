//! Real detection daemons for the tests: ClamAV's clamd (Debian's `clamav-daemon`) with the
//! signatures in tests/fixtures/clamav, and rspamd (Debian's `rspamd`) with its stock rules. Each
//! runs in the foreground in a folder of its own, on a port of its own, and is killed on drop.
//! `.ci/run` installs both; a missing one fails the test, saying how to install it.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::fresh_dir;

fn program(name: &str, package: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: `apt-get install {package}` (.ci/run installs it), then run the tests again"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A running daemon; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    log: PathBuf,
    start: Box<dyn Fn() -> Child + Send + Sync>,
}

impl Daemon {
    fn launch(dir: PathBuf, log: PathBuf, start: Box<dyn Fn() -> Child + Send + Sync>) -> Daemon {
        let child = start();
        Daemon { child: Some(child), dir, log, start }
    }

    /// What it logged, for a failing assertion.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it: SIGTERM (rspamd then stops its workers too), SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg(child.id().to_string()).status().ok();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts it again, same folder, same port.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some((self.start)());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A clamd, and where to reach it.
pub struct Clamd {
    pub daemon: Daemon,
    /// `tcp://127.0.0.1:PORT`, for `--clamd`.
    pub address: String,
    port: u16,
}

/// clamd's `StreamMaxLength` in the tests: a test sends past it.
pub const CLAMD_STREAM_MAX: usize = 1024 * 1024;

impl Clamd {
    /// Starts clamd with the tests' signature database and waits until it answers.
    pub async fn start() -> Clamd {
        let clamd = program("clamd", "clamav-daemon");
        let dir = fresh_dir("clamd");
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        let signatures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clamav/mailsensor-test.ndb");
        std::fs::copy(signatures, db.join("mailsensor-test.ndb")).unwrap();
        let port = free_port();
        let log = dir.join("clamd.log");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {}\n\
                 StreamMaxLength {CLAMD_STREAM_MAX}\nMaxThreads 4\nPidFile {}\n",
                db.display(),
                log.display(),
                dir.join("clamd.pid").display()
            ),
        )
        .unwrap();
        let start = Box::new(move || {
            Command::new(&clamd)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("clamd starts")
        });
        let clamd = Clamd { daemon: Daemon::launch(dir, log, start), address: format!("tcp://127.0.0.1:{port}"), port };
        clamd.until_up().await;
        clamd
    }

    /// Waits until clamd answers `PING`.
    pub async fn until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !clamd_pongs(self.port).await {
            assert!(Instant::now() < deadline, "clamd did not answer within 60 s:\n{}", self.daemon.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn clamd_pongs(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let mut answer = Vec::new();
    stream.write_all(b"zPING\0").await.is_ok() && stream.read_to_end(&mut answer).await.is_ok() && answer == b"PONG\0"
}

/// An rspamd normal worker, and where to reach it.
pub struct Rspamd {
    pub daemon: Daemon,
    /// `http://127.0.0.1:PORT`, for `--rspamd`.
    pub url: String,
}

impl Rspamd {
    /// Starts rspamd with Debian's configuration, only its normal worker on a port of its own,
    /// DNS pointed at a closed local port (the tests have no network: every lookup fails fast),
    /// and waits until it answers `/ping`.
    pub async fn start() -> Rspamd {
        let rspamd = program("rspamd", "rspamd");
        let dir = fresh_dir("rspamd");
        let port = free_port();
        let conf = dir.join("conf");
        let overrides = conf.join("override.d");
        std::fs::create_dir_all(&overrides).unwrap();
        for (file, text) in [
            ("worker-normal.inc", format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n")),
            ("worker-controller.inc", "enabled = false;\n".to_owned()),
            ("worker-proxy.inc", "enabled = false;\n".to_owned()),
            ("logging.inc", "type = \"console\";\nlevel = \"warning\";\n".to_owned()),
            ("options.inc", "dns { nameserver = [\"127.0.0.1:9\"]; timeout = 0.2s; retransmits = 1; }\n".to_owned()),
        ] {
            std::fs::write(overrides.join(file), text).unwrap();
        }
        let root = is_root();
        for sub in ["db", "run", "log"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).unwrap();
            if root {
                // rspamd drops to its own user, which must be able to write these.
                let owned = Command::new("chown").arg("_rspamd:_rspamd").arg(&path).status().unwrap();
                assert!(owned.success(), "chown _rspamd {}", path.display());
            }
        }
        let log = dir.join("rspamd.log");
        let (home, out) = (dir.clone(), log.clone());
        let start = Box::new(move || {
            let mut command = Command::new(&rspamd);
            command.arg("-f").args(["-c", "/etc/rspamd/rspamd.conf"]);
            for (var, sub) in [("LOCAL_CONFDIR", "conf"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")] {
                command.arg("--var").arg(format!("{var}={}", home.join(sub).display()));
            }
            if root {
                // As root rspamd will not run without a user to drop to.
                command.args(["-u", "_rspamd", "-g", "_rspamd"]);
            }
            let log = std::fs::File::create(&out).unwrap();
            command.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("rspamd starts")
        });
        let rspamd = Rspamd { daemon: Daemon::launch(dir, log, start), url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !http
            .get(format!("{}/ping", rspamd.url))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "rspamd did not answer within 90 s:\n{}", rspamd.daemon.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rspamd
    }
}
