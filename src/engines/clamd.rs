//! ClamAV through clamd's `INSTREAM` command: the raw message goes over in chunks, clamd decodes
//! its MIME parts and archives itself (`ScanMail`, `ScanArchive`) and answers with the first
//! signature that matched.
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::Look;
use crate::scan::{
    Detection, ENGINE_CLAMAV, EngineRun, EngineStatus, KIND_SIGNATURE, KIND_TOO_LARGE_FOR_ENGINE, Verdict,
};

/// Where clamd listens: `tcp://HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(host_port) = s.strip_prefix("tcp://") {
            let host_port = host_port.trim_end_matches('/');
            return match host_port.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Address::Tcp(host_port.to_owned()))
                }
                _ => Err(format!("{s:?}: expected tcp://HOST:PORT")),
            };
        }
        if let Some(path) = s.strip_prefix("unix://").or_else(|| s.strip_prefix("unix:")) {
            return match path.is_empty() {
                true => Err(format!("{s:?}: expected unix:PATH")),
                false => Ok(Address::Unix(PathBuf::from(path))),
            };
        }
        Err(format!("{s:?}: expected tcp://HOST:PORT or unix:PATH"))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What is sent per `INSTREAM` chunk.
const CHUNK: usize = 64 * 1024;
/// How long clamd's version is remembered: it changes when its signatures are reloaded.
const VERSION_FOR: Duration = Duration::from_secs(60);

/// A clamd to send messages to.
pub struct Clamd {
    address: Address,
    /// The longest one message's scan may take, connecting included.
    timeout: Duration,
    version: Mutex<Option<(Instant, Version)>>,
}

#[derive(Clone)]
struct Version {
    engine: String,
    database: Option<String>,
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl Clamd {
    pub fn new(address: Address, timeout: Duration) -> Self {
        Clamd { address, timeout, version: Mutex::new(None) }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Connection>> {
        Ok(match &self.address {
            Address::Tcp(host_port) => {
                let stream = TcpStream::connect(host_port).await?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            Address::Unix(path) => Box::new(UnixStream::connect(path).await?),
        })
    }

    /// Sends `command` (and `body` as `INSTREAM` chunks) and reads the answer up to its NUL.
    async fn ask(&self, command: &str, body: Option<&[u8]>) -> Result<String, String> {
        let mut connection =
            self.connect().await.map_err(|e| format!("cannot reach clamd at {}: {e}", self.address))?;
        let sent = async {
            connection.write_all(format!("z{command}\0").as_bytes()).await?;
            if let Some(body) = body {
                for chunk in body.chunks(CHUNK) {
                    connection.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
                    connection.write_all(chunk).await?;
                }
                connection.write_all(&0u32.to_be_bytes()).await?;
            }
            connection.flush().await
        }
        .await;
        // Past its StreamMaxLength clamd answers and closes while we still write: the answer
        // says why, so it is read whether or not the write went through.
        let mut answer = Vec::new();
        let read = (&mut connection).take(4096).read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer).trim_end_matches(['\0', '\n']).to_owned();
        match (sent, read) {
            (_, Ok(_)) if !answer.is_empty() => Ok(answer),
            (Err(e), _) | (_, Err(e)) => Err(format!("clamd at {} broke off: {e}", self.address)),
            _ => Err(format!("clamd at {} closed without answering", self.address)),
        }
    }

    /// clamd's version and signature database version, remembered for a minute.
    async fn version(&self) -> Result<Version, String> {
        if let Some((at, version)) = self.version.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && at.elapsed() < VERSION_FOR
        {
            return Ok(version);
        }
        let answer = self.ask("VERSION", None).await?;
        // `ClamAV 1.4.6/27480/Sat Dec  5 09:27:01 2026`, or only `ClamAV 1.4.6` without the
        // official daily database.
        let mut fields = answer.splitn(3, '/');
        let engine = fields.next().unwrap_or_default().trim().to_owned();
        let database = match (fields.next(), fields.next()) {
            (Some(number), Some(date)) => Some(format!("daily {number} ({})", date.trim())),
            (Some(number), None) => Some(format!("daily {number}")),
            _ => None,
        };
        let version = Version { engine, database };
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), version.clone()));
        Ok(version)
    }

    /// clamd answers `PING`: its version, or why not.
    pub async fn ping(&self) -> Result<String, String> {
        let answer = tokio::time::timeout(super::PING_TIMEOUT, self.ask("PING", None))
            .await
            .map_err(|_| format!("clamd at {} did not answer PING in time", self.address))??;
        if answer != "PONG" {
            return Err(format!("clamd at {} answered PING with {answer:?}", self.address));
        }
        Ok(self.version().await?.engine)
    }

    /// Scans one raw message.
    pub async fn scan(&self, raw: &[u8]) -> Look {
        let started = Instant::now();
        let scanned = tokio::time::timeout(self.timeout, async {
            let version = self.version().await?;
            let answer = self.ask("INSTREAM", Some(raw)).await?;
            Ok::<_, String>((version, answer))
        })
        .await;
        let millis = started.elapsed().as_millis() as u64;
        let (version, answer) = match scanned {
            Ok(Ok(scanned)) => scanned,
            Ok(Err(error)) => return Look::failed(ENGINE_CLAMAV, EngineStatus::Error, error, millis),
            Err(_) => {
                let error = format!("clamd at {} took longer than {:?}", self.address, self.timeout);
                return Look::failed(ENGINE_CLAMAV, EngineStatus::Timeout, error, millis);
            }
        };
        let run =
            |status| EngineRun::new(ENGINE_CLAMAV, status, version.engine.clone(), version.database.clone(), millis);
        match read_answer(&answer, raw.len()) {
            Ok(detections) => Look { run: run(EngineStatus::Ok), detections },
            Err(error) => {
                let mut run = run(EngineStatus::Error);
                run.error = Some(error);
                Look { run, detections: Vec::new() }
            }
        }
    }
}

/// What clamd's answer to `INSTREAM` found, or why it is not an answer.
fn read_answer(answer: &str, size: usize) -> Result<Vec<Detection>, String> {
    let answer = answer.strip_prefix("stream: ").unwrap_or(answer);
    if answer == "OK" {
        return Ok(Vec::new());
    }
    if let Some(signature) = answer.strip_suffix(" FOUND") {
        let signature = signature.trim().to_owned();
        // Heuristics and potentially unwanted applications are findings, not known malware.
        let verdict = match signature.starts_with("Heuristics.") || signature.starts_with("PUA.") {
            true => Verdict::Suspicious,
            false => Verdict::Malicious,
        };
        let description = format!("ClamAV signature {signature} matched the message");
        let mut detection = Detection::builtin(KIND_SIGNATURE, description, None, Vec::new(), verdict);
        detection.engine = ENGINE_CLAMAV.to_owned();
        detection.rule = Some(signature);
        return Ok(vec![detection]);
    }
    if answer.contains("size limit exceeded") {
        // It would be refused on every retry: not looked at, and said so, like an archive bound.
        let description =
            format!("the message ({size} bytes) is larger than clamd's StreamMaxLength: ClamAV did not scan it");
        let mut detection =
            Detection::builtin(KIND_TOO_LARGE_FOR_ENGINE, description, None, Vec::new(), Verdict::Suspicious);
        detection.engine = ENGINE_CLAMAV.to_owned();
        return Ok(vec![detection]);
    }
    Err(format!("clamd answered {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_or_unix() {
        assert_eq!("tcp://127.0.0.1:3310".parse(), Ok(Address::Tcp("127.0.0.1:3310".into())));
        assert_eq!("tcp://[::1]:3310".parse(), Ok(Address::Tcp("[::1]:3310".into())));
        assert_eq!("unix:/run/clamav/clamd.ctl".parse(), Ok(Address::Unix("/run/clamav/clamd.ctl".into())));
        assert_eq!("unix:///run/clamd.sock".parse(), Ok(Address::Unix("/run/clamd.sock".into())));
        for bad in ["127.0.0.1:3310", "tcp://host", "tcp://:3310", "unix:", "http://x:1"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_become_detections() {
        assert_eq!(read_answer("stream: OK", 10), Ok(Vec::new()));
        let found = read_answer("stream: Win.Test.EICAR_HDB-1 FOUND", 10).unwrap();
        assert_eq!((found[0].rule.as_deref(), found[0].verdict), (Some("Win.Test.EICAR_HDB-1"), Verdict::Malicious));
        assert_eq!(found[0].engine, "clamav");
        let heuristic = read_answer("stream: Heuristics.Encrypted.Zip FOUND", 10).unwrap();
        assert_eq!(heuristic[0].verdict, Verdict::Suspicious);
        let large = read_answer("INSTREAM size limit exceeded. ERROR", 30_000_000).unwrap();
        assert_eq!((large[0].kind.as_str(), large[0].verdict), (KIND_TOO_LARGE_FOR_ENGINE, Verdict::Suspicious));
        assert!(read_answer("stream: lstat() failed. ERROR", 10).is_err());
    }
}
