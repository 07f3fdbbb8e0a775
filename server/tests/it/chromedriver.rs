//! A chromedriver on a free port and headless Chromium sessions through it. Shared by the
//! browser test and the app budget benchmark (`examples/app_budget.rs`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// One browser at a time: the tests that drive Chromium measure lags and bytes, and on two
/// cores a second browser beside them is noise they would measure.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A chromedriver process, killed when dropped.
pub struct ChromeDriver {
    process: Child,
    url: String,
    /// The browser profile folder, unique to this driver, so its processes can be found.
    pub profile: PathBuf,
    /// Held until the driver and its browser are gone (fields drop after `Drop::drop`);
    /// `None` when the caller holds the turn for longer (`turn`).
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// The browser's turn, for a test that changes this machine's network while its browser runs
/// (a lab's TUN device on the host): any other browser would see the device come or go and
/// abort its requests with `ERR_NETWORK_CHANGED`. Hold it from before the change until the
/// change is undone, and start the driver with `ChromeDriver::start_in_turn`.
pub async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

impl ChromeDriver {
    /// Starts a driver once no other is running in this process.
    pub async fn start() -> Self {
        let turn = TURN.lock().await;
        Self::launch(Some(turn)).await
    }

    /// Starts a driver for a caller that holds the browser's turn (`turn`).
    pub async fn start_in_turn(_held: &tokio::sync::MutexGuard<'static, ()>) -> Self {
        Self::launch(None).await
    }

    async fn launch(turn: Option<tokio::sync::MutexGuard<'static, ()>>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("finding a free port")
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (scripts/setup.sh --browser installs it)");
        // Ready once it accepts connections; bounded, since a broken driver never will.
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "chromedriver did not start listening");
        let profile =
            std::env::temp_dir().join(format!("tickscope-chromium-{}-{port}", std::process::id()));
        Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            profile,
            _turn: turn,
        }
    }

    /// A new headless Chromium session with the flags this closed network needs.
    pub async fn browser(&self) -> Client {
        self.browser_with(&[]).await
    }

    /// [`Self::browser`] with `extra` flags (`--ignore-certificate-errors` for the tests'
    /// self-signed certificates).
    pub async fn browser_with(&self, extra: &[&str]) -> Client {
        self.session(&["--disable-quic"], extra).await
    }

    /// [`Self::browser`] with QUIC on, for WebTransport over HTTP/3 (the other tests keep it
    /// off: on this closed network Chromium would otherwise try QUIC for every origin).
    pub async fn browser_with_quic(&self) -> Client {
        self.session(&[], &[]).await
    }

    /// [`Self::browser_with_quic`] with `extra` flags.
    pub async fn browser_with_quic_and(&self, extra: &[&str]) -> Client {
        self.session(&[], extra).await
    }

    async fn session(&self, quic: &[&str], extra: &[&str]) -> Client {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
        ];
        args.extend(quic.iter().map(|flag| flag.to_string()));
        args.extend([
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1400,1150".into(),
            format!("--user-data-dir={}", self.profile.display()),
        ]);
        args.extend(extra.iter().map(|flag| flag.to_string()));
        let capabilities = json!({
            // The browser's log from the first request on: console messages and failed loads.
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        // chromedriver has, once in a full run, answered a new session with an empty body
        // (`NotW3C("")`) and no Chromium: a session that never began, tried again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&self.url)
                .await
            {
                Ok(browser) => return browser,
                Err(err) if attempt < 3 => {
                    println!("opening a Chromium session, attempt {attempt}: {err:?}");
                }
                Err(err) => panic!("opening a Chromium session: {err:?}"),
            }
        }
    }

    /// The pids of this driver's Chromium processes: those started with its profile folder.
    /// Chromium's helpers rewrite their command line into one space-separated string, so
    /// arguments are split at spaces as well as at NULs.
    pub fn browser_pids(&self) -> Vec<libc::pid_t> {
        let flag = format!("--user-data-dir={}", self.profile.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                cmdline
                    .split(|&byte| byte == 0 || byte == b' ')
                    .any(|arg| arg == flag.as_bytes())
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for ChromeDriver {
    /// Kills the driver and its browser. A session closed in order has ended the browser
    /// already; one left open by a failing test has not, and killing the driver alone would
    /// leave its Chromium running.
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        for pid in self.browser_pids() {
            // SAFETY: kill takes plain integers; a pid gone meanwhile only makes it fail.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// chromedriver's browser log (`POST /session/{id}/se/log`), which W3C WebDriver lacks.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Everything the browser logged since the last call, as (level, message).
pub async fn browser_log(browser: &Client) -> Vec<(String, String)> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .expect("reading the browser's log");
    log.as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            (
                entry["level"].as_str().unwrap_or_default().to_owned(),
                entry["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The errors the browser logged since the last call (from the session's first navigation
/// on): console errors, and resources that failed to load, such as a 404.
pub async fn console_errors(browser: &Client) -> Vec<String> {
    browser_log(browser)
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, message)| message)
        .collect()
}
