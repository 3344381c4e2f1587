//! The Microsoft cloud the operator talks to: authority host and Graph endpoint.

use serde::{Deserialize, Serialize};
use url::Url;

// ---------------------------------------------------------------------------------------------
// Cloud: authority host and Graph endpoint
// ---------------------------------------------------------------------------------------------

/// A Microsoft cloud whose hosts are known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CloudPreset {
    /// Global Azure: `login.microsoftonline.com`, `graph.microsoft.com`.
    #[default]
    Public,
    /// US Government (GCC High): `login.microsoftonline.us`, `graph.microsoft.us`.
    UsGov,
    /// US Government DoD: `login.microsoftonline.us`, `dod-graph.microsoft.us`.
    #[serde(rename = "usGovDoD")]
    UsGovDoD,
    /// Azure operated by 21Vianet: `login.chinacloudapi.cn`, `microsoftgraph.chinacloudapi.cn`.
    China,
}

impl CloudPreset {
    /// The Microsoft identity platform host of the cloud.
    pub fn authority_host(self) -> &'static str {
        match self {
            CloudPreset::Public => "https://login.microsoftonline.com",
            CloudPreset::UsGov | CloudPreset::UsGovDoD => "https://login.microsoftonline.us",
            CloudPreset::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The Microsoft Graph endpoint of the cloud.
    pub fn graph_endpoint(self) -> &'static str {
        match self {
            CloudPreset::Public => "https://graph.microsoft.com",
            CloudPreset::UsGov => "https://graph.microsoft.us",
            CloudPreset::UsGovDoD => "https://dod-graph.microsoft.us",
            CloudPreset::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// The cloud: a preset, optionally with explicit hosts that override it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CloudConfig {
    /// Default `public`.
    pub preset: CloudPreset,
    /// Overrides the preset's authority host (env `RECORDING_OPERATOR_AUTHORITY_HOST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Overrides the preset's Graph endpoint (env `RECORDING_OPERATOR_GRAPH_ENDPOINT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_endpoint: Option<String>,
}

impl CloudConfig {
    /// The authority host in effect, without a trailing slash, e.g.
    /// `https://login.microsoftonline.com`.
    pub fn authority_host(&self) -> Result<Url, String> {
        let raw = self
            .authority_host
            .as_deref()
            .unwrap_or(self.preset.authority_host());
        let url = base_url(raw)
            .map_err(|why| format!("cloud.authorityHost: {:?} {why}", strip_userinfo(raw)))?;
        https_unless_loopback(&url)
            .map_err(|why| format!("cloud.authorityHost: {:?} {why}", url.as_str()))?;
        Ok(url)
    }

    /// The Graph endpoint in effect (scheme + host, optionally a path prefix), e.g.
    /// `https://graph.microsoft.com`.
    pub fn graph_endpoint(&self) -> Result<Url, String> {
        let raw = self
            .graph_endpoint
            .as_deref()
            .unwrap_or(self.preset.graph_endpoint());
        base_url(raw).map_err(|why| format!("cloud.graphEndpoint: {:?} {why}", strip_userinfo(raw)))
    }

    /// The app-only scope for Graph: `{graph endpoint}/.default`.
    pub fn graph_scope(&self) -> Result<String, String> {
        Ok(graph_default_scope(&self.graph_endpoint()?))
    }
}

/// `{graph endpoint}/.default`, the scope of app-only Graph tokens and of admin consent.
pub fn graph_default_scope(graph_endpoint: &Url) -> String {
    format!("{}/.default", graph_endpoint.as_str().trim_end_matches('/'))
}

/// Parses an absolute http(s) base URL without query or fragment; the path keeps no trailing
/// slash so `{base}/{segment}` joins cleanly.
fn base_url(raw: &str) -> Result<Url, &'static str> {
    let url = Url::parse(raw.trim()).map_err(|_| "is not an absolute URL")?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("must be an http(s) URL");
    }
    if url.host_str().is_none() {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password (credentials belong in a Secret)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment");
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Plain `http://` only to a loopback host (the demo and the tests, whose simulators listen
/// there): anywhere else the sign-in tokens and consent redirects would cross the network in
/// the clear.
pub(super) fn https_unless_loopback(url: &Url) -> Result<(), &'static str> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() == "https" || loopback {
        Ok(())
    } else {
        Err("must be https:// (plain http:// is accepted only for a loopback host, as in the demo)")
    }
}

/// `text` (a URL, or anything that may hold one) without the `user:password@` of its
/// authority, if it has one: endpoints are shown in errors, logs and status.
pub fn strip_userinfo(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &text[..authority_start], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// `url` without its query string and fragment (where SAS tokens live) and without the
/// `user:password@` of its authority. Text that is not a
/// URL loses everything from the first `?` on, to be safe.
pub fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    strip_userinfo(&url[..end])
}
