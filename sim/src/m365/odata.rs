//! The OData query options the simulator serves on Graph collections and entities:
//! `$select`, `$filter` equality clauses typed as in Graph's v1.0 metadata, `$top` and
//! `@odata.nextLink` paging with opaque skip tokens.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Map, Value};

use super::directory::is_guid;

/// An OData error: HTTP status, `error.code`, `error.message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "Request_BadRequest", message)
    }

    pub fn not_found(key: &str) -> Self {
        Self::new(404, "Request_ResourceNotFound", format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ))
    }

    pub fn denied() -> Self {
        Self::new(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// The error JSON, with the `innerError` Graph adds to every error.
    pub fn body(&self, request_id: &str, client_request_id: &str, now: DateTime<Utc>) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }
        })
    }
}

/// The OData query options the simulator understands.
#[derive(Debug, Default)]
pub(crate) struct Query {
    select: Option<Vec<String>>,
    filter: Option<Vec<Clause>>,
    top: Option<usize>,
    skip: usize,
    /// All options in order except `$skiptoken`, to rebuild `@odata.nextLink`.
    carried: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Result<Query, GraphError> {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.as_str() {
                "$select" => {
                    q.select = Some(
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "$filter" => q.filter = Some(parse_filter(&v)?),
                "$top" => {
                    let top = v.parse::<usize>().ok().filter(|n| (1..=999).contains(n)).ok_or_else(|| {
                        GraphError::bad_request(format!("Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."))
                    })?;
                    q.top = Some(top);
                }
                "$skiptoken" => {
                    q.skip = decode_skiptoken(&v)
                        .ok_or_else(|| GraphError::bad_request("Invalid skip token."))?;
                    continue;
                }
                "$expand" | "$orderby" | "$count" | "$search" | "$skip" => {
                    return Err(GraphError::bad_request(format!(
                        "The query option '{k}' is not supported by the simulator."
                    )))
                }
                _ => {}
            }
            q.carried.push((k, v));
        }
        Ok(q)
    }
}

/// One `prop eq value` clause of a `$filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    prop: String,
    value: String,
    /// A quoted string literal (`'…'`), not a bare GUID or boolean literal.
    quoted: bool,
}

/// `prop eq 'value' [and prop eq 'value' …]`, the equality filters directory objects support.
/// Values are quoted strings (`''` escapes a quote), or bare GUID and boolean literals
/// (`resourceId eq 8fce…`); which one a property takes is its type's business (see
/// [`Page::collection`]).
fn parse_filter(text: &str) -> Result<Vec<Clause>, GraphError> {
    let invalid = || GraphError::bad_request(format!("Invalid filter clause: '{text}'."));
    let mut clauses = Vec::new();
    let mut rest = text.trim();
    loop {
        let (prop, after) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
        let after = after
            .trim_start()
            .strip_prefix("eq ")
            .ok_or_else(invalid)?
            .trim_start();
        let quoted = after.starts_with('\'');
        let (value, after) = filter_value(after).ok_or_else(invalid)?;
        clauses.push(Clause {
            prop: prop.to_string(),
            value,
            quoted,
        });
        rest = after.trim();
        if rest.is_empty() {
            return Ok(clauses);
        }
        let (and, next) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
        if !and.eq_ignore_ascii_case("and") {
            return Err(invalid());
        }
        rest = next.trim_start();
    }
}

/// One filter value at the start of `text`, and what follows it.
fn filter_value(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('\'') else {
        let (literal, tail) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let valid = is_guid(literal) || literal == "true" || literal == "false";
        return valid.then(|| (literal.to_string(), tail));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if matches!(chars.peek(), Some((_, '\''))) => {
                value.push('\'');
                chars.next();
            }
            '\'' => return Some((value, &quoted[i + 1..])),
            _ => value.push(c),
        }
    }
    None
}

/// What next links percent-encode in query keys and values: `$`, `,`, `'` and
/// parentheses stay readable, as in Graph's own links.
const QUERY_PART: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

const SKIPTOKEN_PREFIX: &str = "RFNwdAIA";

fn encode_skiptoken(offset: usize) -> String {
    let body =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("sim-offset:{offset}"));
    format!("{SKIPTOKEN_PREFIX}{body}")
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let body = token.strip_prefix(SKIPTOKEN_PREFIX)?;
    let text = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?,
    )
    .ok()?;
    text.strip_prefix("sim-offset:")?.parse().ok()
}

/// Filterable properties typed `Edm.Guid` (compared with bare GUID literals); every other
/// filterable property is an `Edm.String` and takes a quoted string, as in Graph's metadata
/// (`oAuth2PermissionGrant.clientId` is a string: `clientId eq '…'`).
fn guid_typed(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "appRoleAssignment" => &["appRoleId", "principalId", "resourceId"],
        _ => &[],
    }
}

/// Filterable properties per entity type (Graph supports `eq` on these).
fn filterable(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "servicePrincipal" => &["id", "appId", "displayName", "servicePrincipalType"],
        "oAuth2PermissionGrant" => &["id", "clientId", "consentType", "principalId", "resourceId"],
        "application" => &["id", "appId", "displayName"],
        "appRoleAssignment" => &["appRoleId", "principalId", "resourceId"],
        _ => &[],
    }
}

pub(crate) struct Page<'a> {
    /// Graph endpoint as clients reach it (no trailing slash), for `@odata` links.
    pub base: &'a str,
    /// Items per page when the client sends no `$top`.
    pub page_size: usize,
    pub raw_path: &'a str,
    pub query: &'a Query,
}

impl Page<'_> {
    pub(crate) fn collection(
        &self,
        context: &str,
        type_name: &str,
        items: Vec<Value>,
    ) -> Result<Value, GraphError> {
        let mut items = items;
        if let Some(clauses) = &self.query.filter {
            for Clause { prop, quoted, .. } in clauses {
                if !filterable(type_name).contains(&prop.as_str()) {
                    let resource =
                        format!("{}{}", type_name[..1].to_ascii_uppercase(), &type_name[1..]);
                    return Err(GraphError::new(400, "Request_UnsupportedQuery", format!(
                        "Unsupported or invalid query filter clause specified for property '{prop}' of resource '{resource}'."
                    )));
                }
                let (want, found) = match (guid_typed(type_name).contains(&prop.as_str()), quoted) {
                    (true, true) => ("Edm.Guid", "Edm.String"),
                    (false, false) => ("Edm.String", "Edm.Guid"),
                    _ => continue,
                };
                return Err(GraphError::new(400, "BadRequest", format!(
                    "A binary operator with incompatible types was detected. Found operand types '{want}' and '{found}' for operator kind 'Equal'."
                )));
            }
            items.retain(|item| {
                clauses.iter().all(|Clause { prop, value, .. }| {
                    item.get(prop).is_some_and(|v| match v {
                        Value::String(text) => text.eq_ignore_ascii_case(value),
                        Value::Bool(b) => b.to_string() == *value,
                        _ => false,
                    })
                })
            });
        }
        let (items, context) = project(items, type_name, self.query.select.as_deref(), context)?;
        let size = self.query.top.unwrap_or(self.page_size).max(1);
        let start = self.query.skip.min(items.len());
        let end = (start + size).min(items.len());
        let mut body = Map::new();
        body.insert("@odata.context".into(), Value::String(context));
        if end < items.len() {
            let skiptoken = ("$skiptoken".to_string(), encode_skiptoken(end));
            let query: Vec<String> = self
                .query
                .carried
                .iter()
                .chain(std::iter::once(&skiptoken))
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, QUERY_PART),
                        utf8_percent_encode(v, QUERY_PART)
                    )
                })
                .collect();
            let next = format!("{}/v1.0/{}?{}", self.base, self.raw_path, query.join("&"));
            body.insert("@odata.nextLink".into(), Value::String(next));
        }
        body.insert("value".into(), Value::Array(items[start..end].to_vec()));
        Ok(Value::Object(body))
    }
}

pub(crate) fn entity(
    context: &str,
    type_name: &str,
    item: Value,
    query: &Query,
) -> Result<Value, GraphError> {
    let (mut items, context) = project(vec![item], type_name, query.select.as_deref(), context)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{context}/$entity")),
    );
    if let Value::Object(fields) = items.remove(0) {
        body.extend(fields);
    }
    Ok(Value::Object(body))
}

/// Applies `$select` to `items` and returns the matching `@odata.context`.
fn project(
    items: Vec<Value>,
    type_name: &str,
    select: Option<&[String]>,
    context: &str,
) -> Result<(Vec<Value>, String), GraphError> {
    let Some(select) = select else {
        return Ok((items, context.to_string()));
    };
    let known: Vec<String> = items
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_else(|| properties_of(type_name));
    for name in select {
        if !known.contains(name) {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
            )));
        }
    }
    let projected = items
        .into_iter()
        .map(|item| {
            let mut out = Map::new();
            for name in select {
                if let Some(v) = item.get(name) {
                    out.insert(name.clone(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    Ok((projected, format!("{context}({})", select.join(","))))
}

/// Property names per type, for `$select` validation on empty collections.
fn properties_of(type_name: &str) -> Vec<String> {
    let names: &[&str] = match type_name {
        "servicePrincipal" => &[
            "id",
            "deletedDateTime",
            "accountEnabled",
            "appDisplayName",
            "appId",
            "appOwnerOrganizationId",
            "appRoleAssignmentRequired",
            "appRoles",
            "displayName",
            "keyCredentials",
            "oauth2PermissionScopes",
            "passwordCredentials",
            "replyUrls",
            "servicePrincipalNames",
            "servicePrincipalType",
            "signInAudience",
            "tags",
        ],
        "appRoleAssignment" => &[
            "id",
            "deletedDateTime",
            "appRoleId",
            "createdDateTime",
            "principalDisplayName",
            "principalId",
            "principalType",
            "resourceDisplayName",
            "resourceId",
        ],
        "oAuth2PermissionGrant" => &[
            "id",
            "clientId",
            "consentType",
            "principalId",
            "resourceId",
            "scope",
        ],
        "application" => &[
            "id",
            "deletedDateTime",
            "appId",
            "createdDateTime",
            "displayName",
            "identifierUris",
            "keyCredentials",
            "passwordCredentials",
            "publisherDomain",
            "requiredResourceAccess",
            "signInAudience",
            "web",
        ],
        _ => &[],
    };
    names.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_equality_clauses_joined_by_and() {
        let clause = |prop: &str, value: &str, quoted: bool| Clause {
            prop: prop.into(),
            value: value.into(),
            quoted,
        };
        assert_eq!(
            parse_filter("clientId eq 'a''b' and consentType eq 'AllPrincipals'").unwrap(),
            [
                clause("clientId", "a'b", true),
                clause("consentType", "AllPrincipals", true)
            ]
        );
        assert_eq!(
            parse_filter("resourceId eq 8fce32da-1246-437b-99cd-76d1d4677bd5 and appRoleId eq 'x'")
                .unwrap(),
            [
                clause("resourceId", "8fce32da-1246-437b-99cd-76d1d4677bd5", false),
                clause("appRoleId", "x", true)
            ]
        );
        assert!(parse_filter("clientId eq x").is_err());
        assert!(parse_filter("clientId ne 'x'").is_err());
        assert!(parse_filter("clientId eq 'x' or id eq 'y'").is_err());
    }

    #[test]
    fn skiptokens_round_trip() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(42)), Some(42));
        assert_eq!(decode_skiptoken("garbage"), None);
    }
}
