//! The reverse proxies Debian 12 ships (nginx 1.22, HAProxy 2.6, Caddy 2.6) as real processes
//! on free loopback ports, with the configurations of `deploy/` rendered by
//! `deploy/render.sh`, and an HTTPS client that trusts a test certificate.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::PATIENCE;
use crate::tls::Certificate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
    Caddy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Nginx, Kind::Haproxy, Kind::Caddy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Caddy => "caddy",
        }
    }
}

/// A free loopback port (bound and let go: the proxy binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port()
}

/// A proxy process and the folder of its configuration, pid and logs; stopped and removed
/// when dropped.
pub struct Proxy {
    pub kind: Kind,
    pub port: u16,
    child: Child,
    run: PathBuf,
}

impl Proxy {
    /// Starts `kind` on `port` in front of `edges` (one or two), with deploy/'s shipped
    /// configuration and `certificate`, or with `None` the untouched one (plain HTTP, first
    /// edge only). Returns once it accepts connections.
    pub async fn start(
        kind: Kind,
        port: u16,
        edges: &[SocketAddr],
        certificate: Option<&Certificate>,
    ) -> Self {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let run = std::env::temp_dir().join(format!(
            "tickscope-{}-{}-{}",
            kind.name(),
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&run);
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut render = Command::new(deploy.join("render.sh"));
        render
            .arg(kind.name())
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .env("EDGE_A", edges[0].to_string())
            .env("EDGE_B", edges.get(1).unwrap_or(&edges[0]).to_string());
        match certificate {
            Some(certificate) => {
                render
                    .env("CERT", &certificate.cert)
                    .env("KEY", &certificate.key);
            }
            None => {
                render.arg("--untouched");
            }
        }
        let rendered = render.arg(&run).output().expect("running deploy/render.sh");
        assert!(
            rendered.status.success(),
            "render.sh: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let config = String::from_utf8(rendered.stdout)
            .expect("a path")
            .trim()
            .to_owned();
        let log = std::fs::File::create(run.join("proxy.log")).expect("the proxy's log");
        // deploy/proxy.sh execs the proxy: the child is the proxy itself.
        let mut command = Command::new(deploy.join("proxy.sh"));
        command.args([kind.name(), &config]);
        let child = command
            .stdout(log.try_clone().expect("the log again"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "starting {} (scripts/setup.sh --proxies installs it): {err}",
                    kind.name()
                )
            });
        let mut proxy = Self {
            kind,
            port,
            child,
            run,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening: {}",
                    kind.name(),
                    proxy.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} is not listening on {port}: {}",
                kind.name(),
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy
    }

    /// What the proxy wrote to its log and error log so far.
    pub fn log(&self) -> String {
        ["proxy.log", "nginx-error.log", "nginx-startup.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.run.join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `http://127.0.0.1:PORT` (untouched) or `https://localhost:PORT` (shipped).
    pub fn origin(&self, tls: bool) -> String {
        if tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // nginx's master takes its workers down on SIGTERM (a SIGKILL would orphan them);
        // HAProxy stops at once on it. Caddy waits for open streams to end unless killed.
        let signal = match self.kind {
            Kind::Caddy => libc::SIGKILL,
            _ => libc::SIGTERM,
        };
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

/// An answer to [`https_get`]: status, headers (names in lower case) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 GET of `path` over TLS to `localhost:port`, trusting `certificate`, on a
/// connection of its own (`Connection: close`), so a round-robin balancer may send each one
/// anywhere.
pub async fn https_get(certificate: &Certificate, port: u16, path: &str) -> Answer {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certificate.der.clone()))
        .expect("the test certificate as a root");
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the proxy");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("a TLS handshake with the proxy");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE * 3, tls.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .ok();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A chunked body's data.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
