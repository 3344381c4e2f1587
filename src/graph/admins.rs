//! The customer's default administrators (`spec.adminUpns`), looked up in their directory:
//! the rules (pure functions). The lookup itself is `GET /users/{upn}` for each, asked in
//! the same `$batch` as the consent checks once the `directory` consent's token can read
//! Graph; until then each is `NotChecked`.

use serde_json::Value;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::error::GraphError;

/// What a UPN must have encoded to be one path segment (`#` of guests' UPNs, `/`, `?`, `%`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// What the directory says about one administrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// The user exists and may sign in.
    Verified,
    /// No such user in the customer's directory.
    Missing,
    /// The user exists, but sign-in is blocked (`accountEnabled: false`).
    Disabled,
    /// Not looked up (yet): the `directory` consent is missing, or Graph could not answer.
    NotChecked,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Verified => "Verified",
            AdminState::Missing => "Missing",
            AdminState::Disabled => "Disabled",
            AdminState::NotChecked => "NotChecked",
        }
    }
}

/// One administrator's result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AdminCheck {
    pub upn: String,
    pub state: AdminState,
    /// For people: why, when not `Verified`.
    pub message: Option<String>,
}

impl AdminCheck {
    pub fn not_checked(upn: &str, why: &str) -> Self {
        AdminCheck {
            upn: upn.to_owned(),
            state: AdminState::NotChecked,
            message: Some(why.to_owned()),
        }
    }
}

/// `GET /users/{upn}` with just what the check needs (`accountEnabled` is only returned when
/// selected). The UPN is a path segment: percent-encoded.
pub fn user_url(upn: &str) -> String {
    format!(
        "/users/{}?$select=id,userPrincipalName,accountEnabled",
        utf8_percent_encode(upn, SEGMENT)
    )
}

/// Judges Graph's answer for `upn`; `previous` stands when Graph could not answer for now.
pub fn judge(
    upn: &str,
    answer: Result<&Value, GraphError>,
    previous: Option<&AdminCheck>,
) -> AdminCheck {
    let check = |state, message: Option<String>| AdminCheck {
        upn: upn.to_owned(),
        state,
        message,
    };
    match answer {
        Ok(user) if user["accountEnabled"] == Value::Bool(false) => check(
            AdminState::Disabled,
            Some(format!(
                "{upn} is blocked from signing in in the customer's directory"
            )),
        ),
        Ok(user) if user["id"].is_string() => check(AdminState::Verified, None),
        Ok(_) => check(
            AdminState::NotChecked,
            Some("Microsoft Graph answered a user without id".to_owned()),
        ),
        Err(GraphError::Graph { status: 404, .. }) => check(
            AdminState::Missing,
            Some(format!("{upn} does not exist in the customer's directory")),
        ),
        Err(GraphError::Graph { status: 403, .. }) => check(
            AdminState::NotChecked,
            Some("the directory consent may not read users (User.Read.All)".to_owned()),
        ),
        Err(e) if e.is_transient() => previous
            .filter(|p| p.upn == upn)
            .cloned()
            .unwrap_or_else(|| AdminCheck::not_checked(upn, &e.to_string())),
        Err(e) => AdminCheck::not_checked(upn, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph_error(status: u16) -> GraphError {
        GraphError::Graph {
            status,
            code: "x".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn users_are_verified_disabled_or_missing() {
        let upn = "ada@contoso.example";
        let ok = json!({"id": "1", "userPrincipalName": upn, "accountEnabled": true});
        assert_eq!(judge(upn, Ok(&ok), None).state, AdminState::Verified);
        let off = json!({"id": "1", "accountEnabled": false});
        assert_eq!(judge(upn, Ok(&off), None).state, AdminState::Disabled);
        assert_eq!(
            judge(upn, Err(graph_error(404)), None).state,
            AdminState::Missing
        );
        assert_eq!(
            judge(upn, Err(graph_error(403)), None).state,
            AdminState::NotChecked
        );
    }
}
