//! Headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! scripts/install-test-deps.sh) driven through WebDriver, and the steps an admin takes on the
//! Quick Start page ([`QuickStart`]), shared by the browser tests. Screenshots go under
//! target/quickstart-screens/.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::Command;

/// How long a step may take.
pub const T: Duration = Duration::from_secs(45);

/// Flags for headless Chromium on a shared build machine, with a profile of its own.
fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,1400",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// chromedriver on a free loopback port. It leads its own process group with the browser it
/// starts, and the group is killed on drop, so a failing test leaves no browser behind.
pub struct Driver {
    _child: sim::process::ChildProcess,
    pub url: String,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A folder removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Driver {
    pub async fn start() -> (Driver, Client) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = sim::process::spawn_child(command)
            .expect("chromedriver runs (scripts/install-test-deps.sh installs chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let profile =
            std::env::temp_dir().join(format!("quickstart-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium_binary(), "args": chromium_args(&profile)}),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            // chromedriver speaks plain HTTP on loopback.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        (
            Driver {
                _child: child,
                url,
                _profile: tempdir::Dir(profile),
            },
            client,
        )
    }
}

fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or(&"/usr/bin/chromium")
        .to_string()
}

/// Where the screenshots go.
pub fn screens_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/quickstart-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser on one tenant's Quick Start page.
pub struct QuickStart {
    pub browser: Client,
    pub step: usize,
}

impl QuickStart {
    /// Saves a screenshot named after the step.
    pub async fn screenshot(&mut self, name: &str) {
        self.step += 1;
        let png = self.browser.screenshot().await.expect("screenshot");
        let path = screens_dir().join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).unwrap();
    }

    /// Opens a Quick Start link and marks the document, so a reload would show.
    pub async fn open(&mut self, url: &str) {
        self.browser.goto(url).await.expect("page opens");
        self.browser
            .wait()
            .for_element(Locator::Css("#consents"))
            .await
            .expect("the page lists the consents");
        self.mark_document().await;
    }

    /// Marks the document, so a reload would show in [`QuickStart::not_reloaded`].
    pub async fn mark_document(&self) {
        self.browser
            .execute("window.quickStartMark = 'unchanged'; return null;", vec![])
            .await
            .unwrap();
    }

    /// Whether the document is still the one [`QuickStart::open`] (or the last landing) marked.
    pub async fn not_reloaded(&self) -> bool {
        self.browser
            .execute("return window.quickStartMark === 'unchanged';", vec![])
            .await
            .unwrap()
            == json!(true)
    }

    /// `(key, state, label)` of each consent row, top to bottom.
    pub async fn rows(&self) -> Vec<(String, String, String)> {
        let mut rows = Vec::new();
        for row in self
            .browser
            .find_all(Locator::Css("li.consent"))
            .await
            .unwrap()
        {
            let key = row.attr("data-key").await.unwrap().unwrap_or_default();
            let state = row.attr("data-state").await.unwrap().unwrap_or_default();
            let label = row
                .find(Locator::Css(".badge"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            rows.push((key, state, label));
        }
        rows
    }

    /// Waits up to [`T`] for an element matching `css`; `what` says what it shows.
    pub async fn wait_for(&self, css: &str, what: &str) {
        self.browser
            .wait()
            .at_most(T)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{what} ({css}): {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Clicks a consent's button as the admin would: Microsoft's consent page, the operator's
    /// callback, and back on this page.
    pub async fn grant(&mut self, key: &str) {
        let link = self
            .browser
            .find(Locator::Css(&format!("#consent-{key}-link")))
            .await
            .unwrap();
        assert_eq!(
            link.text().await.unwrap(),
            "Grant consent",
            "{key} has a button"
        );
        let page = self.browser.current_url().await.unwrap();
        link.click().await.unwrap();
        let deadline = Instant::now() + T;
        // Back on the same page, a new document (the marker is gone) with the rows.
        loop {
            let here = self.browser.current_url().await.unwrap();
            let marked = self.not_reloaded().await;
            if here == page && !marked && self.browser.find(Locator::Css("#consents")).await.is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "not back on the page: {here}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.mark_document().await;
    }

    /// Waits, without reloading, until `key`'s row shows `state`.
    pub async fn wait_row(&self, key: &str, state: &str) {
        let deadline = Instant::now() + T;
        loop {
            let rows = self.rows().await;
            if rows.iter().any(|(k, s, _)| k == key && s == state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never showed {state}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits, without reloading, until the status says Ready.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + T;
        while self.text("#overall").await != "Ready" {
            assert!(
                Instant::now() < deadline,
                "never Ready: {}",
                self.text("#summary").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
