//! MailDev, an SMTP server that keeps what it receives and lists it over a REST API, as a
//! test and demo harness — never part of the operator.
//!
//! Nothing is installed at run time: the harness finds `node_modules/.bin/maildev` (put there
//! by `scripts/install-test-deps.sh`, i.e. `npm install maildev@2.2.1`) in the workspace, or
//! takes the path in `MAILDEV_BIN`. Each [`MailDev`] listens on two free loopback ports (SMTP
//! and the web UI with its REST API, `GET /email`) and stops when dropped; it is started with
//! [`crate::process::spawn_child`], so it also dies with the process that started it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::Command;

use crate::process::{find_node_tool, spawn_child, wait_until_serving, ChildProcess, Startup};

/// The MailDev release the tests were written against (see the install script).
pub const MAILDEV_VERSION: &str = "2.2.1";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why MailDev could not be found, started or read.
#[derive(Debug, thiserror::Error)]
pub enum MailDevError {
    #[error(
        "MailDev not found (looked for node_modules/.bin/maildev above {searched} and in \
         MAILDEV_BIN): run scripts/install-test-deps.sh"
    )]
    NotInstalled { searched: String },
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MailDev did not answer on {web} within {seconds} s; its output: {output}")]
    NotAnswering {
        web: String,
        seconds: u64,
        output: String,
    },
    #[error("MailDev exited before answering; its output: {output}")]
    Exited { output: String },
    #[error("MailDev's REST API: {0}")]
    Api(String),
}

/// An address as MailDev lists it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Address {
    pub address: String,
    #[serde(default)]
    pub name: String,
}

/// One e-mail MailDev received (the fields the tests read).
#[derive(Clone, Debug, Deserialize)]
pub struct Email {
    pub id: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub from: Vec<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
    #[serde(default, rename = "replyTo")]
    pub reply_to: Vec<Address>,
    /// The plain text part.
    #[serde(default)]
    pub text: Option<String>,
    /// The HTML part.
    #[serde(default)]
    pub html: Option<String>,
    /// Headers, lower-case names.
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
}

impl Email {
    /// The recipients' addresses.
    pub fn recipients(&self) -> Vec<String> {
        self.to.iter().map(|a| a.address.clone()).collect()
    }
}

/// Options of one MailDev.
#[derive(Clone, Debug, Default)]
pub struct MailDevOptions {
    /// Require SMTP AUTH with this user and password.
    pub incoming_auth: Option<(String, String)>,
}

/// A running MailDev.
pub struct MailDev {
    program: PathBuf,
    smtp_port: u16,
    web_port: u16,
    options: MailDevOptions,
    child: Option<ChildProcess>,
}

impl MailDev {
    /// Starts MailDev on two free loopback ports.
    pub async fn start() -> Result<Self, MailDevError> {
        Self::start_with(MailDevOptions::default()).await
    }

    /// Starts MailDev with `options`.
    pub async fn start_with(options: MailDevOptions) -> Result<Self, MailDevError> {
        let mut maildev = MailDev {
            program: find_maildev()?,
            smtp_port: free_loopback_port()?,
            web_port: free_loopback_port()?,
            options,
            child: None,
        };
        maildev.launch().await?;
        Ok(maildev)
    }

    /// The SMTP port on 127.0.0.1.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The web UI (and REST API) base URL.
    pub fn web_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    /// Every e-mail received so far, oldest first.
    pub async fn emails(&self) -> Result<Vec<Email>, MailDevError> {
        let response = reqwest::get(format!("{}/email", self.web_url()))
            .await
            .map_err(|e| MailDevError::Api(e.to_string()))?;
        response
            .json::<Vec<Email>>()
            .await
            .map_err(|e| MailDevError::Api(e.to_string()))
    }

    /// Waits until at least `n` e-mails arrived (or `timeout` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Email>, MailDevError> {
        let deadline = Instant::now() + timeout;
        loop {
            let emails = self.emails().await?;
            if emails.len() >= n || Instant::now() >= deadline {
                return Ok(emails);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (received e-mails are lost).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.stop(Duration::from_secs(5)).await;
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--smtp".into(),
            self.smtp_port.to_string(),
            "--web".into(),
            self.web_port.to_string(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--web-ip".into(),
            "127.0.0.1".into(),
            "--silent".into(),
        ];
        if let Some((user, pass)) = &self.options.incoming_auth {
            args.extend([
                "--incoming-user".into(),
                user.clone(),
                "--incoming-pass".into(),
                pass.clone(),
            ]);
        }
        args
    }

    async fn launch(&mut self) -> Result<(), MailDevError> {
        let mut command = Command::new(&self.program);
        command
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_child(command).map_err(|source| MailDevError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        let web = self.web_url();
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client builds");
        let smtp_port = self.smtp_port;
        let startup = wait_until_serving(&mut child, START_TIMEOUT, || async {
            let web_up = probe
                .get(format!("{web}/email"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            web_up
                && tokio::net::TcpStream::connect(("127.0.0.1", smtp_port))
                    .await
                    .is_ok()
        })
        .await;
        match startup {
            Startup::Serving => {
                self.child = Some(child);
                Ok(())
            }
            Startup::Exited(output) => Err(MailDevError::Exited { output }),
            Startup::TimedOut(output) => Err(MailDevError::NotAnswering {
                web,
                seconds: START_TIMEOUT.as_secs(),
                output,
            }),
        }
    }
}

fn find_maildev() -> Result<PathBuf, MailDevError> {
    find_node_tool("MAILDEV_BIN", "maildev")
        .map_err(|searched| MailDevError::NotInstalled { searched })
}

fn free_loopback_port() -> Result<u16, MailDevError> {
    crate::process::free_loopback_port().map_err(MailDevError::Port)
}
