//! Microsoft Graph reads with an app-only token: single GETs with `@odata.nextLink` paging,
//! and JSON `$batch` (at most 20 requests per call, larger sets split) whose items each carry
//! their own status. `Retry-After` (seconds) on 429/503/504, of the whole answer or of one
//! item, becomes [`GraphError::Throttled`] / [`GraphError::Unavailable`] with that wait; OData
//! error bodies become [`GraphError::Graph`] with their `code` and `message`.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::error::{GraphError, Service};
use super::http::{
    clamp_seconds, describe_reqwest_error, join, parse_retry_after, DEFAULT_THROTTLE_WAIT,
};
use super::metrics::{Counters, GraphOutcome};
use super::token::AccessToken;

/// Graph answers at most this many requests per `$batch`.
pub const MAX_BATCH: usize = 20;
/// Paging stops after this many pages (a guard against a server that never ends a list).
const MAX_PAGES: usize = 100;

/// Characters escaped in an OData query value: controls, space and the URL delimiters.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>');

/// Percent-encodes an OData query value (`clientId eq '…'` → `clientId%20eq%20'…'`).
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

// ---------------------------------------------------------------------------------------------
// Errors as Graph writes them
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ODataErrorBody {
    error: ODataError,
}

#[derive(Deserialize)]
struct ODataError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a non-success Graph status (and its body and `Retry-After`) means.
pub fn classify_graph_failure(
    status: u16,
    retry_after: Option<Duration>,
    body: &Value,
) -> GraphError {
    let (code, message) = serde_json::from_value::<ODataErrorBody>(body.clone())
        .map(|b| (b.error.code, b.error.message))
        .unwrap_or_default();
    match status {
        429 => GraphError::Throttled {
            service: Service::Graph,
            retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
        },
        503 | 504 if retry_after.is_some() => GraphError::Throttled {
            service: Service::Graph,
            retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
        },
        500..=599 => GraphError::Unavailable {
            service: Service::Graph,
            reason: if code.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status} {code}")
            },
            retry_after,
        },
        _ => GraphError::Graph {
            status,
            code: if code.is_empty() {
                "Unknown".to_owned()
            } else {
                code
            },
            message,
        },
    }
}

fn outcome_of(status: u16, retry_after: Option<Duration>) -> GraphOutcome {
    match status {
        200..=299 => GraphOutcome::Success,
        429 => GraphOutcome::Throttled,
        503 | 504 if retry_after.is_some() => GraphOutcome::Throttled,
        500..=599 => GraphOutcome::ServerError,
        _ => GraphOutcome::ClientError,
    }
}

// ---------------------------------------------------------------------------------------------
// $batch
// ---------------------------------------------------------------------------------------------

/// One request inside a `$batch`: a GET of a URL relative to the version root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchRequest {
    pub id: String,
    pub method: &'static str,
    pub url: String,
}

impl BatchRequest {
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        BatchRequest {
            id: id.into(),
            method: "GET",
            url: url.into(),
        }
    }
}

/// The answer to one batched request.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchItem {
    pub id: String,
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Value,
}

impl BatchItem {
    /// The body when the item succeeded, else the item's error.
    pub fn result(&self) -> Result<&Value, GraphError> {
        if (200..300).contains(&self.status) {
            Ok(&self.body)
        } else {
            Err(classify_graph_failure(
                self.status,
                self.retry_after,
                &self.body,
            ))
        }
    }
}

/// Splits requests into `$batch` calls of at most `max` each, in order.
pub fn split_batches(requests: Vec<BatchRequest>, max: usize) -> Vec<Vec<BatchRequest>> {
    let max = max.max(1);
    let mut batches: Vec<Vec<BatchRequest>> = Vec::new();
    for request in requests {
        match batches.last_mut() {
            Some(last) if last.len() < max => last.push(request),
            _ => batches.push(vec![request]),
        }
    }
    batches
}

#[derive(Serialize)]
struct BatchBody<'a> {
    requests: &'a [BatchRequest],
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    responses: Vec<BatchAnswerItem>,
}

#[derive(Deserialize)]
struct BatchAnswerItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: Value,
}

/// Reads a `$batch` answer: each item with its status, `Retry-After` and body. Items the
/// answer lacks are reported as 500s so no request goes unanswered.
pub fn parse_batch_answer(
    requests: &[BatchRequest],
    answer: &Value,
) -> Result<Vec<BatchItem>, GraphError> {
    let answer: BatchAnswer =
        serde_json::from_value(answer.clone()).map_err(|e| GraphError::Protocol {
            service: Service::Graph,
            reason: format!("the $batch answer is not valid: {e}"),
        })?;
    let mut items: Vec<BatchItem> = answer
        .responses
        .into_iter()
        .map(|item| {
            let retry_after = item
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| match v {
                    Value::String(s) => parse_retry_after(s),
                    Value::Number(n) => n.as_u64().map(clamp_seconds),
                    _ => None,
                });
            BatchItem {
                id: item.id,
                status: item.status,
                retry_after,
                body: item.body,
            }
        })
        .collect();
    for request in requests {
        if !items.iter().any(|i| i.id == request.id) {
            items.push(BatchItem {
                id: request.id.clone(),
                status: 500,
                retry_after: None,
                body: Value::Null,
            });
        }
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Microsoft Graph v1.0 for app-only reads.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// `{graph endpoint}/v1.0`
    root: Url,
    counters: Arc<Counters>,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, graph_endpoint: &Url, counters: Arc<Counters>) -> Self {
        let root = Url::parse(&join(graph_endpoint, "v1.0")).expect("a base URL joins with v1.0");
        GraphClient {
            http,
            root,
            counters,
        }
    }

    /// The absolute URL of a path relative to the version root (`/servicePrincipals`).
    pub fn url(&self, relative: &str) -> String {
        join(&self.root, relative)
    }

    /// GETs one resource (`relative` to the version root, or an absolute `@odata.nextLink`).
    pub async fn get(
        &self,
        token: &AccessToken,
        relative_or_absolute: &str,
    ) -> Result<Value, GraphError> {
        let url = if relative_or_absolute.starts_with("http://")
            || relative_or_absolute.starts_with("https://")
        {
            // The bearer token goes to Microsoft Graph only, whatever a page links to.
            let origin = Url::parse(relative_or_absolute).map(|u| u.origin());
            if origin.as_ref().ok() != Some(&self.root.origin()) {
                return Err(GraphError::Protocol {
                    service: Service::Graph,
                    reason: format!(
                        "a next-page link outside {} was not followed",
                        self.root.origin().ascii_serialization()
                    ),
                });
            }
            relative_or_absolute.to_owned()
        } else {
            self.url(relative_or_absolute)
        };
        self.send(|| self.http.get(&url).bearer_auth(token.bearer()))
            .await
    }

    /// GETs a collection, following `@odata.nextLink` until the last page.
    pub async fn get_all(
        &self,
        token: &AccessToken,
        relative: &str,
    ) -> Result<Vec<Value>, GraphError> {
        let first = self.get(token, relative).await?;
        self.rest_of_pages(token, first).await
    }

    /// The items of a collection page plus those of the pages after it.
    pub async fn rest_of_pages(
        &self,
        token: &AccessToken,
        mut page: Value,
    ) -> Result<Vec<Value>, GraphError> {
        let mut values = Vec::new();
        for _ in 0..MAX_PAGES {
            if let Some(Value::Array(items)) = page.get_mut("value").map(Value::take) {
                values.extend(items);
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => {
                    let next = next.to_owned();
                    page = self.get(token, &next).await?;
                }
                None => return Ok(values),
            }
        }
        Err(GraphError::Protocol {
            service: Service::Graph,
            reason: format!("a collection has more than {MAX_PAGES} pages"),
        })
    }

    /// Sends `requests` as `$batch` calls of at most [`MAX_BATCH`] each, one after the other,
    /// and returns every item's answer. A failure of a whole call is returned as is.
    pub async fn batch(
        &self,
        token: &AccessToken,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<BatchItem>, GraphError> {
        let url = self.url("$batch");
        let mut items = Vec::with_capacity(requests.len());
        for chunk in split_batches(requests, MAX_BATCH) {
            let body = serde_json::to_value(BatchBody { requests: &chunk })
                .expect("batch body serializes");
            let answer = self
                .send(|| self.http.post(&url).bearer_auth(token.bearer()).json(&body))
                .await?;
            items.extend(parse_batch_answer(&chunk, &answer)?);
        }
        Ok(items)
    }

    /// Sends a request (retrying connection failures, never throttling), counts it, and reads
    /// the JSON body or the error.
    async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Value, GraphError> {
        let attempt = || async {
            match build().send().await {
                Ok(response) => Ok(response),
                Err(e) => {
                    self.counters.graph_request(GraphOutcome::NetworkError);
                    Err(e)
                }
            }
        };
        let response = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(2)
                    .with_jitter(),
            )
            .when(reqwest::Error::is_connect)
            .await
            .map_err(|e| GraphError::Unavailable {
                service: Service::Graph,
                reason: describe_reqwest_error(&e),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        self.counters.graph_request(outcome_of(status, retry_after));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GraphError::Unavailable {
                service: Service::Graph,
                reason: describe_reqwest_error(&e),
                retry_after: None,
            })?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if !(200..300).contains(&status) => Value::Null,
                Err(e) => {
                    return Err(GraphError::Protocol {
                        service: Service::Graph,
                        reason: format!("the answer is not JSON: {e}"),
                    })
                }
            }
        };
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(classify_graph_failure(status, retry_after, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_hold_at_most_twenty() {
        let requests: Vec<_> = (0..45)
            .map(|i| BatchRequest::get(i.to_string(), "/organization"))
            .collect();
        let batches = split_batches(requests, MAX_BATCH);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [20, 20, 5]
        );
        assert_eq!(batches[2][0].id, "40");
        assert!(split_batches(vec![], MAX_BATCH).is_empty());
    }

    #[test]
    fn batch_items_carry_their_own_status_and_retry_after() {
        let requests = vec![
            BatchRequest::get("1", "/servicePrincipals(appId='a')"),
            BatchRequest::get("2", "/servicePrincipals(appId='b')"),
            BatchRequest::get("3", "/servicePrincipals(appId='c')"),
        ];
        let answer = json!({"responses":[
            {"id":"2","status":429,"headers":{"Retry-After":"7","Content-Type":"application/json"},
             "body":{"error":{"code":"TooManyRequests","message":"Too many requests."}}},
            {"id":"1","status":200,"headers":{},"body":{"id":"sp-1","accountEnabled":true}}
        ]});
        let items = parse_batch_answer(&requests, &answer).unwrap();
        let by_id = |id: &str| items.iter().find(|i| i.id == id).unwrap();
        assert_eq!(by_id("1").result().unwrap()["id"], "sp-1");
        assert_eq!(
            by_id("2").result().unwrap_err(),
            GraphError::Throttled {
                service: Service::Graph,
                retry_after: Duration::from_secs(7)
            }
        );
        // The answer forgot item 3: it counts as a server error, never as success.
        assert!(by_id("3").result().unwrap_err().is_transient());

        // A huge wait, as a number or a string, is one hour.
        let answer = json!({"responses":[
            {"id":"1","status":429,"headers":{"Retry-After":99999999999999_u64},"body":{}},
            {"id":"2","status":429,"headers":{"Retry-After":"99999999999999"},"body":{}}
        ]});
        let items = parse_batch_answer(&requests[..2], &answer).unwrap();
        for item in items {
            assert_eq!(item.retry_after, Some(super::super::http::MAX_RETRY_AFTER));
        }
    }

    #[test]
    fn odata_errors_keep_code_and_message() {
        let body = json!({"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist or one of its queried reference-property objects are not present.","innerError":{"date":"2026-01-01T00:00:00","request-id":"r","client-request-id":"c"}}});
        let err = classify_graph_failure(404, None, &body);
        assert_eq!(
            err.to_string(),
            "Microsoft Graph answered 404 Request_ResourceNotFound: Resource 'x' does not exist or one of its queried reference-property objects are not present."
        );
        let err = classify_graph_failure(
            403,
            None,
            &json!({"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}),
        );
        assert!(
            matches!(err, GraphError::Graph { status: 403, ref code, .. } if code == "Authorization_RequestDenied")
        );
    }

    #[test]
    fn retry_after_on_503_and_504_is_throttling_without_it_an_outage() {
        let with = classify_graph_failure(503, Some(Duration::from_secs(3)), &Value::Null);
        assert_eq!(with.retry_after(), Some(Duration::from_secs(3)));
        assert!(matches!(with, GraphError::Throttled { .. }));
        let without = classify_graph_failure(504, None, &Value::Null);
        assert!(matches!(
            without,
            GraphError::Unavailable {
                retry_after: None,
                ..
            }
        ));
        assert_eq!(
            classify_graph_failure(429, None, &Value::Null).retry_after(),
            Some(DEFAULT_THROTTLE_WAIT)
        );
    }

    #[test]
    fn filter_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value("clientId eq 'a1b2'"),
            "clientId%20eq%20'a1b2'"
        );
    }
}
