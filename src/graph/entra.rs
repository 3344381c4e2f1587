//! The identity platform's error answers (`error`, `error_description`, `error_codes`) and
//! what each means to the operator.

use serde::{Deserialize, Serialize};

use super::error::{GraphError, Service};
use super::http::DEFAULT_THROTTLE_WAIT;

/// The token endpoint's error body, with the Entra fields the standard one drops.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EntraErrorResponse {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl std::fmt::Display for EntraErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl oauth2::ErrorResponse for EntraErrorResponse {}

impl EntraErrorResponse {
    /// The AADSTS code: first of `error_codes`, else read from the description.
    pub fn code(&self) -> Option<u64> {
        self.error_codes
            .first()
            .copied()
            .or_else(|| self.error_description.as_deref().and_then(aadsts_code))
    }

    /// The description without the trace/correlation ids and timestamp Entra appends, so the
    /// text is the same from one request to the next.
    ///
    /// Entra puts them on lines of their own (`\r\n` before each), so the cut is at the
    /// first "Trace ID:" whatever precedes it.
    pub fn stable_description(&self) -> String {
        let text = self.error_description.as_deref().unwrap_or_default();
        let cut = text.find("Trace ID:").unwrap_or(text.len());
        text[..cut].trim().to_owned()
    }
}

/// Turns a token-endpoint refusal into the operator's meaning of it.
///
/// The OAuth `error` decides first (RFC 6749 section 5.2 and Entra's additions); the AADSTS
/// code only refines within that answer, since Microsoft documents the codes as subject to
/// change. A code the operator does not know keeps the refusal's own words.
pub fn classify_token_error(tenant: &str, app_id: &str, body: &EntraErrorResponse) -> GraphError {
    let code = body.code();
    let not_consented = |code: u64, detail: Option<String>| GraphError::NotConsented {
        tenant: tenant.to_owned(),
        app_id: app_id.to_owned(),
        code,
        detail,
    };
    let misconfigured = |setting: &'static str| GraphError::Misconfigured {
        tenant: tenant.to_owned(),
        app_id: app_id.to_owned(),
        detail: body.stable_description(),
        setting,
    };
    let rejected = || GraphError::TokenRejected {
        app_id: app_id.to_owned(),
        error: body.error.clone(),
        code,
        description: body.stable_description(),
    };
    match (body.error.as_str(), code) {
        // "Try again later", whatever the HTTP status: throttling or a passing outage.
        ("server_error" | "temporarily_unavailable" | "invalid_request", Some(90055 | 50196)) => {
            GraphError::Throttled {
                service: Service::Identity,
                retry_after: DEFAULT_THROTTLE_WAIT,
            }
        }
        ("server_error" | "temporarily_unavailable", _) => GraphError::Unavailable {
            service: Service::Identity,
            reason: format!("{}: {}", body.error, body.stable_description()),
            retry_after: None,
        },
        // The client could not be authenticated: its secret, or its presence in the tenant.
        ("invalid_client", Some(7000215)) => GraphError::InvalidSecret {
            app_id: app_id.to_owned(),
        },
        ("invalid_client", Some(7000222)) => GraphError::SecretExpired {
            app_id: app_id.to_owned(),
        },
        ("invalid_client" | "unauthorized_client", Some(code @ (7000229 | 700016))) => {
            not_consented(code, None)
        }
        // The tenant.
        ("invalid_tenant", _) | ("invalid_request", Some(90002 | 900023)) => {
            GraphError::TenantNotFound {
                tenant: tenant.to_owned(),
            }
        }
        ("invalid_request", Some(900382)) => GraphError::OtherCloud {
            tenant: tenant.to_owned(),
            cloud_instance: None,
            region_scope: None,
            expected: None,
        },
        // What the operator asks for: a resource or scope this cloud does not know, a tenant
        // this authority does not reach. Never the customer's doing.
        ("invalid_resource", _) | (_, Some(500011)) => {
            misconfigured("cloud.graphEndpoint and cloud.preset: Microsoft Graph's resource must be the one of the tenant's national cloud")
        }
        ("invalid_scope", _) => {
            misconfigured("cloud.graphEndpoint: the token scope is `{graphEndpoint}/.default`")
        }
        (_, Some(50020)) => misconfigured(
            "cloud.authorityHost and cloud.preset, and the Tenant's tenant id: the tenant is not reachable through this authority",
        ),
        // Consent required (a delegated-flow answer, read the same way).
        ("invalid_grant" | "consent_required", Some(code @ 65001)) => {
            not_consented(code, Some(body.stable_description()))
        }
        _ => rejected(),
    }
}

/// The number in `AADSTS<digits>:` at the start of (or anywhere in) an error description.
pub fn aadsts_code(description: &str) -> Option<u64> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> EntraErrorResponse {
        serde_json::from_str(json).unwrap()
    }

    const TENANT: &str = "4a7c1d2e-0000-4000-8000-00000000c0de";
    const APP: &str = "8b0f7a52-0000-4000-8000-000000000003";

    #[test]
    fn missing_service_principal_is_not_consented_in_both_forms() {
        let unauthorized = body(
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier '8b0f7a52-0000-4000-8000-000000000003' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant. Trace ID: 1e0b Correlation ID: 77aa Timestamp: 2025-09-18 01:17:37Z","error_codes":[700016],"timestamp":"2025-09-18 01:17:37Z","trace_id":"1e0b","correlation_id":"77aa","error_uri":"https://login.microsoftonline.com/error?code=700016"}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &unauthorized),
            GraphError::NotConsented {
                tenant: TENANT.into(),
                app_id: APP.into(),
                code: 700016,
                detail: None,
            }
        );
        let missing_sp = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000229: The client application 8b0f7a52-0000-4000-8000-000000000003 is missing service principal in the tenant 4a7c1d2e-0000-4000-8000-00000000c0de. Trace ID: 2f Correlation ID: 3a Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000229]}"#,
        );
        let err = classify_token_error(TENANT, APP, &missing_sp);
        assert_eq!(
            err.to_string(),
            "application 8b0f7a52-0000-4000-8000-000000000003 has no service principal in tenant 4a7c1d2e-0000-4000-8000-00000000c0de (AADSTS7000229): admin consent not given"
        );
        // The same code under an `error` that does not mean "client not found" is not read
        // as a missing consent.
        let odd = body(
            r#"{"error":"invalid_grant","error_description":"AADSTS700016: Application not found.","error_codes":[700016]}"#,
        );
        assert!(matches!(
            classify_token_error(TENANT, APP, &odd),
            GraphError::TokenRejected { .. }
        ));
    }

    #[test]
    fn resource_principal_not_found_and_50020_name_the_configuration() {
        // As Entra sends it: the trace id, correlation id and timestamp on lines of their own.
        let resource = body(
            "{\"error\":\"invalid_resource\",\"error_description\":\"AADSTS500011: The resource principal named https://graph.microsoft.us was not found in the tenant named Contoso.\\r\\nTrace ID: 5d1c\\r\\nCorrelation ID: 0f2e\\r\\nTimestamp: 2025-09-18 01:17:37Z\",\"error_codes\":[500011]}",
        );
        let err = classify_token_error(TENANT, APP, &resource);
        assert_eq!(
            err.to_string(),
            "the token endpoint refused application 8b0f7a52-0000-4000-8000-000000000003 in tenant 4a7c1d2e-0000-4000-8000-00000000c0de (AADSTS500011: The resource principal named https://graph.microsoft.us was not found in the tenant named Contoso.): this is the operator's configuration, not a missing consent: check cloud.graphEndpoint and cloud.preset: Microsoft Graph's resource must be the one of the tenant's national cloud"
        );
        let guest = body(
            r#"{"error":"invalid_request","error_description":"AADSTS50020: User account from identity provider does not exist in tenant.","error_codes":[50020]}"#,
        );
        let err = classify_token_error(TENANT, APP, &guest);
        assert!(
            matches!(err, GraphError::Misconfigured { setting, .. } if setting.starts_with("cloud.authorityHost")),
            "{err:?}"
        );
        assert!(
            !err.to_string().contains("admin consent not given"),
            "{err}"
        );
        let scope = body(
            r#"{"error":"invalid_scope","error_description":"AADSTS1002012: The provided value for scope x is not valid.","error_codes":[1002012]}"#,
        );
        assert!(matches!(
            classify_token_error(TENANT, APP, &scope),
            GraphError::Misconfigured { .. }
        ));
    }

    #[test]
    fn a_cross_cloud_refusal_names_the_other_cloud() {
        let cross = body(
            r#"{"error":"invalid_request","error_description":"AADSTS900382: Confidential Client is not supported in Cross Cloud request.","error_codes":[900382]}"#,
        );
        let err = classify_token_error(TENANT, APP, &cross);
        assert!(matches!(err, GraphError::OtherCloud { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "tenant 4a7c1d2e-0000-4000-8000-00000000c0de belongs to another national cloud (AADSTS900382: cross-cloud request refused), not to the cloud this operator is configured for: onboard it with an operator whose cloud.preset is that tenant's cloud"
        );
    }

    #[test]
    fn token_endpoint_throttling_codes_wait() {
        let b = body(
            r#"{"error":"invalid_request","error_description":"AADSTS90055: TenantThrottlingError.","error_codes":[90055]}"#,
        );
        let err = classify_token_error(TENANT, APP, &b);
        assert!(matches!(err, GraphError::Throttled { .. }), "{err:?}");
    }

    #[test]
    fn trace_lines_are_cut_whatever_separates_them() {
        for sep in ["\r\n", " ", "\n"] {
            let b = EntraErrorResponse {
                error: "unauthorized_client".into(),
                error_description: Some(format!(
                    "AADSTS7000112: Application is disabled.{sep}Trace ID: 1{sep}Correlation ID: 2{sep}Timestamp: 2025-09-18 01:17:37Z"
                )),
                ..body(r#"{"error":"x"}"#)
            };
            assert_eq!(
                b.stable_description(),
                "AADSTS7000112: Application is disabled.",
                "{sep:?}"
            );
        }
    }

    #[test]
    fn try_again_answers_are_an_outage_not_a_refusal() {
        for error in ["server_error", "temporarily_unavailable"] {
            let b = body(&format!(
                r#"{{"error":"{error}","error_description":"AADSTS90033: A transient error has occurred. Please try again.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2025-09-18 01:17:37Z","error_codes":[90033]}}"#
            ));
            let err = classify_token_error(TENANT, APP, &b);
            assert!(err.is_transient(), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("the Microsoft identity platform is unavailable: {error}: AADSTS90033: A transient error has occurred. Please try again.")
            );
        }
    }

    #[test]
    fn secret_problems_are_for_the_platform_team() {
        let invalid = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '8b0f7a52-0000-4000-8000-000000000003'. Trace ID: a Correlation ID: b Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000215]}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &invalid).to_string(),
            "the client secret of application 8b0f7a52-0000-4000-8000-000000000003 is invalid (AADSTS7000215): the platform team must correct the operator's configuration"
        );
        // Code only in the description (no error_codes array).
        let expired = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '8b0f7a52-0000-4000-8000-000000000003' are expired. Visit the Azure portal to create new keys for your app."}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &expired),
            GraphError::SecretExpired { app_id: APP.into() }
        );
    }

    #[test]
    fn unknown_tenant_and_other_codes() {
        let not_found = body(
            r#"{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nosuch.example' not found.","error_codes":[90002]}"#,
        );
        assert!(matches!(
            classify_token_error("nosuch.example", APP, &not_found),
            GraphError::TenantNotFound { .. }
        ));
        let consent_required = body(
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application. Trace ID: 9 Correlation ID: 8 Timestamp: 2025-09-18 01:17:37Z","error_codes":[65001]}"#,
        );
        assert!(matches!(
            classify_token_error(TENANT, APP, &consent_required),
            GraphError::NotConsented { code: 65001, .. }
        ));
        let other = body(
            r#"{"error":"unauthorized_client","error_description":"AADSTS7000112: Application '8b0f7a52-0000-4000-8000-000000000003'(recording-hue) is disabled. Trace ID: 9 Correlation ID: 8 Timestamp: 2025-09-18 01:17:37Z","error_codes":[7000112]}"#,
        );
        assert_eq!(
            classify_token_error(TENANT, APP, &other).to_string(),
            "the token endpoint refused application 8b0f7a52-0000-4000-8000-000000000003 (unauthorized_client, AADSTS7000112): AADSTS7000112: Application '8b0f7a52-0000-4000-8000-000000000003'(recording-hue) is disabled."
        );
    }

    #[test]
    fn aadsts_code_is_read_from_the_description() {
        assert_eq!(
            aadsts_code("AADSTS7000215: Invalid client secret provided."),
            Some(7000215)
        );
        assert_eq!(aadsts_code("no code here"), None);
    }
}
