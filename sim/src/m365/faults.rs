//! Faults on demand and what the tests count: throttling (429 with `Retry-After`, or
//! 503/504 bursts) for one tenant or for everyone, added latency, and request counters per
//! endpoint per tenant.

use std::collections::BTreeMap;
use std::time::Duration;

/// Answer the next `count` matching requests with `status` instead of serving them.
///
/// On Graph, a 429 applies to each unit of work: a plain request, or one item of a
/// `$batch` (the batch itself still answers 200, with the item at 429, as Graph's
/// per-request throttling does). A 503 or 504 applies to whole HTTP requests, a `$batch`
/// included, the way a gateway failure does. On the token endpoint every status applies
/// to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// Tenant id or domain; `None` throttles every tenant.
    pub tenant: Option<String>,
    /// 429, 503 or 504.
    pub status: u16,
    /// Value of the `Retry-After` header, in seconds; no header when `None`.
    pub retry_after_secs: Option<u64>,
    /// How many requests (or batch items) to refuse before serving normally again.
    pub count: u32,
}

/// Requests seen, per endpoint kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// `/.well-known/openid-configuration` documents.
    pub discovery: u64,
    /// JWKS (`/discovery/v2.0/keys`).
    pub keys: u64,
    /// Admin-consent page visits.
    pub admin_consent: u64,
    /// Token requests (successful or not).
    pub token: u64,
    /// Token requests that got an error (throttling included).
    pub token_errors: u64,
    /// Plain Graph GET requests.
    pub graph_get: u64,
    /// `POST /v1.0/$batch` requests.
    pub graph_batch: u64,
    /// Requests carried inside `$batch` bodies.
    pub batch_items: u64,
    /// Requests or batch items refused by a [`Throttle`].
    pub throttled: u64,
}

impl EndpointCounts {
    /// HTTP round trips to Graph (plain requests plus batches).
    pub fn graph_requests(&self) -> u64 {
        self.graph_get + self.graph_batch
    }

    /// Graph units of work (plain requests plus every batch item).
    pub fn graph_operations(&self) -> u64 {
        self.graph_get + self.batch_items
    }
}

/// Request counters: totals, and per tenant id for requests that named a known tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: EndpointCounts,
    pub per_tenant: BTreeMap<String, EndpointCounts>,
}

impl RequestCounts {
    /// The counts of one tenant (all zero when it saw no request).
    pub fn tenant(&self, tenant_id: &str) -> EndpointCounts {
        self.per_tenant
            .get(&tenant_id.to_ascii_lowercase())
            .copied()
            .unwrap_or_default()
    }

    /// Adds one to the counter `pick` selects, in the totals and for `tenant`.
    pub(crate) fn bump(&mut self, tenant: Option<&str>, pick: fn(&mut EndpointCounts) -> &mut u64) {
        *pick(&mut self.total) += 1;
        if let Some(t) = tenant {
            *pick(self.per_tenant.entry(t.to_string()).or_default()) += 1;
        }
    }
}

/// Where a throttle applies (a 401 applies where a 429 does: to units of work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Graph request or batch item (any status).
    GraphWork,
    /// A whole `$batch` HTTP request (503/504 only).
    GraphBatch,
    /// A `$batch` item (429 only).
    GraphBatchItem,
    Token,
}

/// Active faults. Throttle tenants are stored as resolved tenant ids.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    graph: Vec<Throttle>,
    token: Vec<Throttle>,
    /// Added to every response.
    pub latency: Duration,
    /// Added to the responses of one tenant (by tenant id).
    pub tenant_latency: BTreeMap<String, Duration>,
}

impl Faults {
    pub fn add_graph(&mut self, t: Throttle) {
        self.graph.push(t);
    }

    pub fn add_token(&mut self, t: Throttle) {
        self.token.push(t);
    }

    /// The extra delay of `tenant`'s requests.
    pub fn latency_of(&self, tenant: Option<&str>) -> Duration {
        tenant
            .and_then(|t| self.tenant_latency.get(t))
            .copied()
            .unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.graph.clear();
        self.token.clear();
    }

    /// Consumes one refusal of the first throttle matching `tenant` and `target`, if any:
    /// returns the status and `Retry-After` to answer with.
    pub fn take(&mut self, target: Target, tenant: Option<&str>) -> Option<(u16, Option<u64>)> {
        let list = match target {
            Target::Token => &mut self.token,
            _ => &mut self.graph,
        };
        let applies = |t: &Throttle| match target {
            Target::GraphWork | Target::Token => true,
            Target::GraphBatch => ![429, 401].contains(&t.status),
            Target::GraphBatchItem => [429, 401].contains(&t.status),
        };
        let hit = list.iter_mut().find(|t| {
            t.count > 0
                && applies(t)
                && match (&t.tenant, tenant) {
                    (None, _) => true,
                    (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                    (Some(_), None) => false,
                }
        })?;
        hit.count -= 1;
        let answer = (hit.status, hit.retry_after_secs);
        list.retain(|t| t.count > 0);
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(tenant: Option<&str>, status: u16, count: u32) -> Throttle {
        Throttle {
            tenant: tenant.map(str::to_string),
            status,
            retry_after_secs: Some(7),
            count,
        }
    }

    #[test]
    fn throttles_are_consumed_per_tenant_and_per_kind() {
        let mut f = Faults::default();
        f.add_graph(throttle(Some("t1"), 429, 2));
        f.add_graph(throttle(None, 503, 1));
        assert_eq!(f.take(Target::GraphBatch, Some("t1")), Some((503, Some(7))));
        assert_eq!(f.take(Target::GraphBatch, Some("t1")), None);
        assert_eq!(f.take(Target::GraphBatchItem, Some("t2")), None);
        assert_eq!(
            f.take(Target::GraphBatchItem, Some("t1")),
            Some((429, Some(7)))
        );
        assert_eq!(f.take(Target::GraphWork, Some("t1")), Some((429, Some(7))));
        assert_eq!(f.take(Target::GraphWork, Some("t1")), None);
        assert_eq!(f.take(Target::Token, Some("t1")), None);
    }
}
