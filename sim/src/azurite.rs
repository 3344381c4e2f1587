//! Azurite, the Azure Storage emulator, as a test and demo harness — never part of the operator.
//!
//! Nothing is installed at run time: the harness finds `node_modules/.bin/azurite-blob` (put
//! there by `scripts/install-test-deps.sh`, i.e. `npm install azurite@3.37.0`) in the
//! workspace, or takes the path in `AZURITE_BLOB_BIN`. Each [`Azurite`] runs its own blob
//! service on `127.0.0.1:<free port>` with a fresh data folder, and stops it when dropped; the
//! emulator is started with [`crate::process::spawn_child`], so it also dies with the process
//! that started it, even one killed outright.
//!
//! Several storage accounts run side by side in one emulator (Azurite's `AZURITE_ACCOUNTS`):
//! each has its own path-style endpoint `http://127.0.0.1:<port>/<account>` and its own key, so
//! "one storage account per region" is simulated with one account per region. The well-known
//! development account `devstoreaccount1` with its published key is always present.
//!
//! Credentials are minted the way Azure does it: account SAS and container (service) SAS tokens,
//! HMAC-SHA256 over the string-to-sign with the account key. The operator receives them as SAS
//! URLs, the same code path a bring-your-own-storage customer's SAS URL takes.
//!
//! Old data, for the retention tests: [`Azurite::set_clock_behind`] makes the next
//! [`Azurite::start_again`] run the emulator under libfaketime (Debian's `faketime` package,
//! preloaded with a relative offset), so the blobs written then carry creation times that far
//! in the past by Azurite's own clock; a later restart on the real clock over the same data
//! folder serves them as the old blobs they are.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::process::{find_node_tool, spawn_child, wait_until_serving, ChildProcess, Startup};

/// The development account every Azure Storage emulator knows.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The published key of [`DEV_ACCOUNT`] (public knowledge, printed in Microsoft's docs).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The Azurite release the storage tests were written against (see the install script).
pub const AZURITE_VERSION: &str = "3.37.0";
/// The SAS version the harness signs with (`sv`); Azurite 3.37 accepts it.
pub const SAS_VERSION: &str = "2025-11-05";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the emulator could not be found, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error(
        "Azurite not found (looked for node_modules/.bin/azurite-blob above {searched} and in \
         AZURITE_BLOB_BIN): run scripts/install-test-deps.sh"
    )]
    NotInstalled { searched: String },
    #[error("invalid storage account name {0:?}: 3-24 lowercase letters and digits")]
    InvalidAccountName(String),
    #[error("unknown storage account {0:?} in this emulator")]
    UnknownAccount(String),
    #[error("cannot create the emulator's data folder: {0}")]
    DataDir(#[source] std::io::Error),
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Azurite did not answer on {endpoint} within {seconds} s; its output: {output}")]
    NotAnswering {
        endpoint: String,
        seconds: u64,
        output: String,
    },
    #[error(
        "libfaketime not found (looked for {searched}, and FAKETIME_LIB): run \
         scripts/install-test-deps.sh"
    )]
    NoFaketime { searched: String },
    #[error("Azurite exited before answering on {endpoint}; its output: {output}")]
    Exited { endpoint: String, output: String },
}

/// One storage account served by the emulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzuriteAccount {
    pub name: String,
    /// Base64 account key, as Azure shows it.
    pub key: String,
}

impl AzuriteAccount {
    /// The development account with its published key.
    pub fn dev() -> Self {
        Self {
            name: DEV_ACCOUNT.to_string(),
            key: DEV_ACCOUNT_KEY.to_string(),
        }
    }

    /// An extra account whose key is derived from its name: stable across runs, distinct per
    /// account, and never valid anywhere but this emulator.
    pub fn derived(name: &str) -> Result<Self, AzuriteError> {
        let valid = (3..=24).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(AzuriteError::InvalidAccountName(name.to_string()));
        }
        let first = Sha256::digest(format!("azurite-sim-key-1:{name}"));
        let second = Sha256::digest(format!("azurite-sim-key-2:{name}"));
        let key: Vec<u8> = first.iter().chain(second.iter()).copied().collect();
        Ok(Self {
            name: name.to_string(),
            key: BASE64.encode(key),
        })
    }
}

/// Permissions of an account SAS, in the order Azure canonicalises them (`rwdlac…`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SasPermissions {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub list: bool,
    pub add: bool,
    pub create: bool,
}

impl SasPermissions {
    /// What the operator needs on a platform account: create, read, update and delete containers.
    pub const OPERATOR: Self = Self {
        read: true,
        write: true,
        delete: true,
        list: true,
        add: true,
        create: true,
    };
    /// A read-only credential: read and list.
    pub const READ_LIST: Self = Self {
        read: true,
        write: false,
        delete: false,
        list: true,
        add: false,
        create: false,
    };

    fn account_form(&self) -> String {
        [
            (self.read, 'r'),
            (self.write, 'w'),
            (self.delete, 'd'),
            (self.list, 'l'),
            (self.add, 'a'),
            (self.create, 'c'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }

    /// Container SAS permissions use Azure's service-SAS order (`racwdl`).
    fn container_form(&self) -> String {
        [
            (self.read, 'r'),
            (self.add, 'a'),
            (self.create, 'c'),
            (self.write, 'w'),
            (self.delete, 'd'),
            (self.list, 'l'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// A running (or stopped) Azurite blob service.
pub struct Azurite {
    program: PathBuf,
    port: u16,
    accounts: Vec<AzuriteAccount>,
    /// Declared before the data folder, so a dropped emulator is killed before its folder goes.
    child: Option<ChildProcess>,
    data_dir: tempfile::TempDir,
    /// How far behind the real clock the emulator's clock runs (libfaketime), if at all.
    clock_behind: Option<Duration>,
}

impl Azurite {
    /// Starts the emulator with the development account only.
    pub async fn start() -> Result<Self, AzuriteError> {
        Self::start_with_accounts(&[]).await
    }

    /// Starts the emulator with the development account plus one account per name (3–24
    /// lowercase letters and digits), each with its own derived key.
    pub async fn start_with_accounts(extra: &[&str]) -> Result<Self, AzuriteError> {
        Self::start_behind(extra, None).await
    }

    /// [`Azurite::start_with_accounts`] with the emulator's clock `behind` the real one (see
    /// [`Azurite::set_clock_behind`]).
    pub async fn start_behind(
        extra: &[&str],
        behind: Option<Duration>,
    ) -> Result<Self, AzuriteError> {
        let program = find_azurite_blob()?;
        let mut accounts = vec![AzuriteAccount::dev()];
        for name in extra {
            if *name != DEV_ACCOUNT {
                accounts.push(AzuriteAccount::derived(name)?);
            }
        }
        let data_dir = tempfile::Builder::new()
            .prefix("azurite-")
            .tempdir()
            .map_err(AzuriteError::DataDir)?;
        let port = free_loopback_port()?;
        let mut azurite = Self {
            program,
            port,
            accounts,
            child: None,
            data_dir,
            clock_behind: behind,
        };
        azurite.launch().await?;
        Ok(azurite)
    }

    /// `http://127.0.0.1:<port>`: the blob service root.
    pub fn blob_service_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn accounts(&self) -> &[AzuriteAccount] {
        &self.accounts
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:<port>/<account>`.
    pub fn account_endpoint(&self, account: &str) -> Result<String, AzuriteError> {
        self.account(account)?;
        Ok(format!("{}/{account}", self.blob_service_url()))
    }

    /// The command line the harness runs (for reports and debugging).
    pub fn command_line(&self) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.args());
        parts.join(" ")
    }

    /// The emulator's process id while it runs: the node process that holds the port.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildProcess::id)
    }

    /// Whether the emulator process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the emulator and waits for it to exit; the data folder is kept for
    /// [`Azurite::start_again`].
    ///
    /// Azurite gets SIGTERM first so it writes its metadata to disk (a killed Azurite forgets
    /// containers created in its last seconds); SIGKILL follows if it has not exited in time.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.stop(STOP_TIMEOUT).await;
        }
    }

    /// Sets how far in the past the emulator's clock runs from its next start on (`None`: the
    /// real clock). Needs libfaketime.
    pub fn set_clock_behind(&mut self, behind: Option<Duration>) {
        self.clock_behind = behind;
    }

    /// Starts the emulator again on the same port with the same data folder and accounts.
    pub async fn start_again(&mut self) -> Result<(), AzuriteError> {
        self.stop().await;
        self.launch().await
    }

    /// An account SAS token (query string without `?`) for the blob service, valid for
    /// `valid_for`, with resource types service, container and object.
    pub fn account_sas(
        &self,
        account: &str,
        permissions: SasPermissions,
        valid_for: Duration,
    ) -> Result<String, AzuriteError> {
        self.account_sas_until(account, permissions, SystemTime::now() + valid_for)
    }

    /// An account SAS token that expires at `expiry` (which may be in the past).
    pub fn account_sas_until(
        &self,
        account: &str,
        permissions: SasPermissions,
        expiry: SystemTime,
    ) -> Result<String, AzuriteError> {
        let account = self.account(account)?;
        Ok(account_sas_token(
            &account.name,
            &account.key,
            &permissions.account_form(),
            &sas_time(expiry),
        ))
    }

    /// A container (service) SAS token (query string without `?`) for one container.
    pub fn container_sas(
        &self,
        account: &str,
        container: &str,
        permissions: SasPermissions,
        valid_for: Duration,
    ) -> Result<String, AzuriteError> {
        self.container_sas_until(
            account,
            container,
            permissions,
            SystemTime::now() + valid_for,
        )
    }

    /// A container SAS token that expires at `expiry` (which may be in the past).
    pub fn container_sas_until(
        &self,
        account: &str,
        container: &str,
        permissions: SasPermissions,
        expiry: SystemTime,
    ) -> Result<String, AzuriteError> {
        let account = self.account(account)?;
        Ok(container_sas_token(
            &account.name,
            &account.key,
            container,
            &permissions.container_form(),
            &sas_time(expiry),
        ))
    }

    /// `http://127.0.0.1:<port>/<account>/<container>?<container SAS>`: what a
    /// bring-your-own-storage customer hands over.
    pub fn container_sas_url(
        &self,
        account: &str,
        container: &str,
        permissions: SasPermissions,
        valid_for: Duration,
    ) -> Result<String, AzuriteError> {
        self.container_sas_url_until(
            account,
            container,
            permissions,
            SystemTime::now() + valid_for,
        )
    }

    /// A container SAS URL that expires at `expiry` (which may be in the past).
    pub fn container_sas_url_until(
        &self,
        account: &str,
        container: &str,
        permissions: SasPermissions,
        expiry: SystemTime,
    ) -> Result<String, AzuriteError> {
        let sas = self.container_sas_until(account, container, permissions, expiry)?;
        Ok(format!(
            "{}/{container}?{sas}",
            self.account_endpoint(account)?
        ))
    }

    /// A client for the data helpers below: account-SAS requests to this emulator.
    pub fn data_client(&self, account: &str) -> Result<BlobData, AzuriteError> {
        Ok(BlobData {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
            endpoint: self.account_endpoint(account)?,
            sas: self.account_sas(
                account,
                SasPermissions::OPERATOR,
                Duration::from_secs(3 * 365 * 86_400),
            )?,
        })
    }

    fn account(&self, name: &str) -> Result<&AzuriteAccount, AzuriteError> {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| AzuriteError::UnknownAccount(name.to_string()))
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            self.port.to_string(),
            "--location".into(),
            self.data_dir.path().display().to_string(),
            "--silent".into(),
            "--disableTelemetry".into(),
        ]
    }

    fn accounts_env(&self) -> String {
        self.accounts
            .iter()
            .map(|a| format!("{}:{}", a.name, a.key))
            .collect::<Vec<_>>()
            .join(";")
    }

    async fn launch(&mut self) -> Result<(), AzuriteError> {
        let mut command = Command::new(&self.program);
        if let Some(behind) = self.clock_behind {
            command
                .env("LD_PRELOAD", find_libfaketime()?)
                .env("FAKETIME", format!("-{}s", behind.as_secs()))
                // Timers keep the real pace; only the wall clock is moved.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        command
            .args(self.args())
            .env("AZURITE_ACCOUNTS", self.accounts_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_child(command).map_err(|source| AzuriteError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        let endpoint = self.blob_service_url();
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client builds");
        // Any HTTP answer (an unauthenticated request gets 403) means the service is up.
        let startup = wait_until_serving(&mut child, START_TIMEOUT, || async {
            probe
                .get(format!("{endpoint}/{DEV_ACCOUNT}?comp=list"))
                .send()
                .await
                .is_ok()
        })
        .await;
        match startup {
            Startup::Serving => {
                self.child = Some(child);
                Ok(())
            }
            Startup::Exited(output) => Err(AzuriteError::Exited { endpoint, output }),
            Startup::TimedOut(output) => Err(AzuriteError::NotAnswering {
                endpoint,
                seconds: START_TIMEOUT.as_secs(),
                output,
            }),
        }
    }
}

/// Test data in one account of the emulator, written and read over its REST API with an
/// account SAS: containers, block blobs, leases, listings.
#[derive(Clone)]
pub struct BlobData {
    http: reqwest::Client,
    endpoint: String,
    sas: String,
}

/// A data request the emulator refused or did not answer.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct DataError {
    what: String,
    detail: String,
}

impl BlobData {
    async fn send(
        &self,
        what: String,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, DataError> {
        let response = request
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await
            .map_err(|e| DataError {
                what: what.clone(),
                detail: e.to_string(),
            })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Err(DataError {
                what,
                detail: format!("HTTP {status}: {body}"),
            })
        }
    }

    /// Creates a container with the given metadata (201; 409 if it exists is an error).
    pub async fn create_container(
        &self,
        container: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), DataError> {
        let mut request = self.http.put(format!(
            "{}/{container}?restype=container&{}",
            self.endpoint, self.sas
        ));
        for (name, value) in metadata {
            request = request.header(format!("x-ms-meta-{name}"), *value);
        }
        self.send(format!("create container {container}"), request)
            .await
            .map(|_| ())
    }

    /// Writes a block blob.
    pub async fn put_blob(
        &self,
        container: &str,
        blob: &str,
        content: Vec<u8>,
    ) -> Result<(), DataError> {
        let request = self
            .http
            .put(format!("{}/{container}/{blob}?{}", self.endpoint, self.sas))
            .header("x-ms-blob-type", "BlockBlob")
            .body(content);
        self.send(format!("put blob {container}/{blob}"), request)
            .await
            .map(|_| ())
    }

    /// Takes an infinite lease on a blob; returns the lease id.
    pub async fn lease_blob(&self, container: &str, blob: &str) -> Result<String, DataError> {
        let request = self
            .http
            .put(format!(
                "{}/{container}/{blob}?comp=lease&{}",
                self.endpoint, self.sas
            ))
            .header("x-ms-lease-action", "acquire")
            .header("x-ms-lease-duration", "-1")
            // A body-less PUT still states its length, as Azure requires.
            .header("content-length", "0");
        let response = self
            .send(format!("lease blob {container}/{blob}"), request)
            .await?;
        Ok(response
            .headers()
            .get("x-ms-lease-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string())
    }

    /// The names of every blob in the container, sorted (all pages).
    pub async fn blob_names(&self, container: &str) -> Result<Vec<String>, DataError> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let request = self.http.get(format!(
                "{}/{container}?restype=container&comp=list&maxresults=5000&marker={}&{}",
                self.endpoint,
                url::form_urlencoded::byte_serialize(marker.as_bytes()).collect::<String>(),
                self.sas
            ));
            let body = self
                .send(format!("list blobs of {container}"), request)
                .await?
                .text()
                .await
                .map_err(|e| DataError {
                    what: format!("list blobs of {container}"),
                    detail: e.to_string(),
                })?;
            names.extend(between_all(&body, "<Name>", "</Name>"));
            marker = between_all(&body, "<NextMarker>", "</NextMarker>")
                .next()
                .unwrap_or_default();
            if marker.is_empty() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Every text between `open` and `close` in `text` (the listing's XML is flat enough).
fn between_all<'a>(
    text: &'a str,
    open: &'a str,
    close: &'a str,
) -> impl Iterator<Item = String> + 'a {
    text.split(open)
        .skip(1)
        .filter_map(move |rest| rest.split_once(close).map(|(value, _)| value.to_string()))
}

/// An account SAS for the blob service (`ss=b`, `srt=sco`, HTTPS or HTTP), signed with the
/// account key as Azure specifies for versions 2020-12-06 and later.
pub fn account_sas_token(
    account: &str,
    key_base64: &str,
    permissions: &str,
    expiry: &str,
) -> String {
    let (services, resource_types, protocol) = ("b", "sco", "https,http");
    let string_to_sign = [
        account,
        permissions,
        services,
        resource_types,
        "", // start
        expiry,
        "", // IP range
        protocol,
        SAS_VERSION,
        "", // encryption scope
        "", // the account SAS string ends with a newline
    ]
    .join("\n");
    let signature = sign(key_base64, &string_to_sign);
    let pairs = [
        ("sv", SAS_VERSION),
        ("ss", services),
        ("srt", resource_types),
        ("sp", permissions),
        ("se", expiry),
        ("spr", protocol),
        ("sig", &signature),
    ];
    encode_query(&pairs)
}

/// A service SAS scoped to one container (`sr=c`), signed with the account key.
pub fn container_sas_token(
    account: &str,
    key_base64: &str,
    container: &str,
    permissions: &str,
    expiry: &str,
) -> String {
    let (resource, protocol) = ("c", "https,http");
    let canonical_resource = format!("/blob/{account}/{container}");
    let string_to_sign = [
        permissions,
        "", // start
        expiry,
        canonical_resource.as_str(),
        "", // stored access policy identifier
        "", // IP range
        protocol,
        SAS_VERSION,
        resource,
        "", // snapshot time
        "", // encryption scope
        "", // rscc
        "", // rscd
        "", // rsce
        "", // rscl
        "", // rsct
    ]
    .join("\n");
    let signature = sign(key_base64, &string_to_sign);
    let pairs = [
        ("sv", SAS_VERSION),
        ("sr", resource),
        ("sp", permissions),
        ("se", expiry),
        ("spr", protocol),
        ("sig", &signature),
    ];
    encode_query(&pairs)
}

/// A SAS time: UTC, whole seconds, `YYYY-MM-DDThh:mm:ssZ`.
pub fn sas_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn sign(key_base64: &str, string_to_sign: &str) -> String {
    let key = BASE64
        .decode(key_base64)
        .expect("emulator account keys are valid base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    query.finish()
}

/// `node_modules/.bin/azurite-blob` ([`find_node_tool`]), unless `AZURITE_BLOB_BIN` names it.
fn find_azurite_blob() -> Result<PathBuf, AzuriteError> {
    find_node_tool("AZURITE_BLOB_BIN", "azurite-blob")
        .map_err(|searched| AzuriteError::NotInstalled { searched })
}

/// Debian's libfaketime (package `faketime`), or the library `FAKETIME_LIB` names.
fn find_libfaketime() -> Result<PathBuf, AzuriteError> {
    if let Some(path) = std::env::var_os("FAKETIME_LIB") {
        return Ok(PathBuf::from(path));
    }
    let candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| AzuriteError::NoFaketime {
            searched: "/usr/lib/*/faketime/libfaketime.so.1".to_string(),
        })
}

fn free_loopback_port() -> Result<u16, AzuriteError> {
    crate::process::free_loopback_port().map_err(AzuriteError::Port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_sas_carries_the_fields_azure_expects() {
        let token = account_sas_token(DEV_ACCOUNT, DEV_ACCOUNT_KEY, "rl", "2030-01-01T00:00:00Z");
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(token.as_bytes())
            .into_owned()
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sv", "ss", "srt", "sp", "se", "spr", "sig"]);
        assert!(pairs.contains(&("se".into(), "2030-01-01T00:00:00Z".into())));
        // HMAC-SHA256 gives 32 bytes, 44 characters of base64.
        assert_eq!(pairs.last().unwrap().1.len(), 44);
    }

    #[test]
    fn derived_keys_are_stable_and_distinct() {
        let a = AzuriteAccount::derived("westeurope").unwrap();
        assert_eq!(a, AzuriteAccount::derived("westeurope").unwrap());
        assert_ne!(a.key, AzuriteAccount::derived("northeurope").unwrap().key);
        assert_eq!(BASE64.decode(&a.key).unwrap().len(), 64);
        assert!(AzuriteAccount::derived("West-Europe").is_err());
        assert!(AzuriteAccount::derived("ab").is_err());
    }

    #[test]
    fn sas_time_is_whole_seconds_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_893_456_000_123);
        assert_eq!(sas_time(at), "2030-01-01T00:00:00Z");
    }
}
