//! The customer's side of recording: what the customer's Teams administrator must still do
//! before a single call is recorded, and the `RecordingPolicy` condition that says so.
//!
//! A service can be deployed and `Ready` while the customer has not yet told Teams to invite
//! its bots: an application instance (resource account) for each bot's application
//! (`New-CsOnlineApplicationInstance`, `Sync-CsOnlineApplicationInstance`), a compliance
//! recording policy naming the first bot's instance — with the paired bot's instance as its
//! paired application for Pro — and the policy granted to the users to record. Graph does not
//! show these policies; the bots see the policy work when the first policy-based invite for a
//! user of the tenant arrives, and report it (`POST /bots/v1/…/policy-invite` with a token of
//! their ServiceAccount, see `src/http/report.rs`), which sets `status.firstPolicyInvite`. Until then the condition is
//! `False` with the steps' values, and `Ready` (still `True`, as before) says the service is
//! deployed and waiting for the customer's recording policy.

use super::*;

/// The audience of the token the bots report with: a projected service account token of
/// the bots' own ServiceAccount, good for nothing else (the API server refuses it).
pub const REPORT_AUDIENCE: &str = "recording-operator";
/// Where the bots find that token (the kubelet renews it before it expires).
pub const REPORT_TOKEN_DIR: &str = "/var/run/secrets/recording-operator";
/// File name of the token in [`REPORT_TOKEN_DIR`].
pub const REPORT_TOKEN_FILE: &str = "token";
/// Lifetime the kubelet asks for (it renews at 80%).
const REPORT_TOKEN_SECONDS: i64 = 3600;

/// The ServiceAccount of a service's bots (`system:serviceaccount:<namespace>:<this>`).
pub fn bot_service_account(service: &str) -> String {
    format!("{service}-bot")
}

/// One application instance the customer's admin must create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyApp {
    /// `primary` or `paired`.
    pub role: String,
    /// The bot's application (client) id.
    pub app_id: String,
    /// A suggested UPN of the resource account, in the customer's domain.
    pub upn: String,
    pub display_name: String,
}

/// Everything the customer's admin must do for one service, with the tenant's own values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySteps {
    pub service: String,
    /// The first bot's application, then (Pro) the paired bot's.
    pub apps: Vec<PolicyApp>,
    /// A suggested name of the compliance recording policy.
    pub policy_name: String,
    /// When the bots received the first policy-based invite (RFC 3339), once reported.
    pub first_invite: Option<String>,
}

/// The steps of `service` of `tenant`: the app ids are the service's own app registration's,
/// or the platform applications' (`recording` and `redundantRecording` consents).
pub fn policy_steps(
    service: &RecordingService,
    tenant: &Tenant,
    config: &OperatorConfig,
) -> PolicySteps {
    let name = service.name_any();
    let domain = &tenant.spec.domain;
    let server = &config.server_name;
    let apps = bot_roles(tenant.spec.license)
        .into_iter()
        .map(|role| {
            let app_id = match &service.spec.app_registration {
                Some(reg) => reg.client_id.to_ascii_lowercase(),
                None => config
                    .consents
                    .get(role.consent_key())
                    .map(|c| c.app_id.clone())
                    .unwrap_or_default(),
            };
            let suffix = match role {
                BotRole::Primary => String::new(),
                BotRole::Paired => "-paired".into(),
            };
            PolicyApp {
                role: role.component().into(),
                app_id,
                upn: format!("{server}-{name}{suffix}@{domain}"),
                display_name: format!(
                    "{} recording{}",
                    service.spec.short_name,
                    suffix.replace('-', " ")
                ),
            }
        })
        .collect();
    PolicySteps {
        service: name.clone(),
        apps,
        policy_name: format!("{server}-{name}"),
        first_invite: service
            .status
            .as_ref()
            .and_then(|s| s.first_policy_invite.clone()),
    }
}

/// PowerShell single quotes: a `'` doubled.
fn ps(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl PolicySteps {
    /// The Teams PowerShell commands, in order, with this service's values.
    pub fn powershell(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for app in &self.apps {
            let var = if app.role == "paired" {
                "$paired"
            } else {
                "$bot"
            };
            lines.push(format!(
                "{var} = New-CsOnlineApplicationInstance -UserPrincipalName {} -DisplayName {} -ApplicationId {}",
                ps(&app.upn),
                ps(&app.display_name),
                ps(&app.app_id)
            ));
            lines.push(format!(
                "Sync-CsOnlineApplicationInstance -ObjectId {var}.ObjectId -ApplicationId {}",
                ps(&app.app_id)
            ));
        }
        let policy = ps(&self.policy_name);
        lines.push(format!(
            "New-CsTeamsComplianceRecordingPolicy -Identity {policy} -Enabled $true -Description 'Teams compliance recording'"
        ));
        let paired = if self.apps.iter().any(|a| a.role == "paired") {
            " -ComplianceRecordingPairedApplications @(New-CsTeamsComplianceRecordingPairedApplication -Id $paired.ObjectId)"
        } else {
            ""
        };
        lines.push(format!(
            "Set-CsTeamsComplianceRecordingPolicy -Identity {policy} -ComplianceRecordingApplications @(New-CsTeamsComplianceRecordingApplication -Parent {policy} -Id $bot.ObjectId{paired})"
        ));
        lines.push(format!(
            "Grant-CsTeamsComplianceRecordingPolicy -Identity 'user@{}' -PolicyName {policy}",
            self.apps
                .first()
                .and_then(|a| a.upn.split_once('@'))
                .map_or("", |(_, d)| d)
        ));
        lines
    }

    /// The condition: `True` once the bots reported the first policy invite, else `False`
    /// with what is left to do.
    pub fn condition(&self) -> Desired {
        match &self.first_invite {
            Some(at) => Desired::new(
                RECORDING_POLICY,
                Status::True,
                reason::POLICY_INVITE_RECEIVED,
                format!("the bots received the tenant's first policy-based invite at {at}"),
            ),
            None => {
                let apps: Vec<String> = self
                    .apps
                    .iter()
                    .map(|a| format!("{} bot app {}", a.role, a.app_id))
                    .collect();
                let paired = if self.apps.len() > 1 {
                    " with the paired bot's instance as its paired application (New-CsTeamsComplianceRecordingPairedApplication)"
                } else {
                    ""
                };
                Desired::new(
                    RECORDING_POLICY,
                    Status::False,
                    reason::CUSTOMER_POLICY_PENDING,
                    format!(
                        "waiting for the customer's Teams admin: an application instance per bot app (New-CsOnlineApplicationInstance, Sync-CsOnlineApplicationInstance: {}), a compliance recording policy {:?} naming the first bot's instance (New-CsTeamsComplianceRecordingPolicy, New-CsTeamsComplianceRecordingApplication){paired}, granted to the users to record (Grant-CsTeamsComplianceRecordingPolicy); the Quick Start page lists the commands",
                        apps.join(", "),
                        self.policy_name
                    ),
                )
            }
        }
    }
}

/// Gives a bot pod what its report needs: `POLICY_REPORT_URL` (with a `publicUrl`) and
/// `POLICY_REPORT_TOKEN_FILE`, a projected token of the pod's ServiceAccount for
/// [`REPORT_AUDIENCE`] (the pod still mounts no token the API server accepts).
pub fn add_report_token(
    pod: &mut PodSpec,
    service: &str,
    namespace: &str,
    config: &OperatorConfig,
) {
    use k8s_openapi::api::core::v1::{
        ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeProjection,
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "report-token".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(REPORT_AUDIENCE.into()),
                    expiration_seconds: Some(REPORT_TOKEN_SECONDS),
                    path: REPORT_TOKEN_FILE.into(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let Some(container) = pod.containers.first_mut() else {
        return;
    };
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "report-token".into(),
            mount_path: REPORT_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    let env = container.env.get_or_insert_with(Vec::new);
    env.push(EnvVar {
        name: "POLICY_REPORT_TOKEN_FILE".into(),
        value: Some(format!("{REPORT_TOKEN_DIR}/{REPORT_TOKEN_FILE}")),
        ..Default::default()
    });
    if let Some(base) = config.public_url.as_deref() {
        env.push(EnvVar {
            name: "POLICY_REPORT_URL".into(),
            value: Some(format!(
                "{}{}",
                base.trim_end_matches('/'),
                crate::http::report::report_path(namespace, service)
            )),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(pro: bool, invite: Option<&str>) -> PolicySteps {
        let mut apps = vec![PolicyApp {
            role: "primary".into(),
            app_id: "a1".into(),
            upn: "recording-main@contoso.onmicrosoft.com".into(),
            display_name: "Rec recording".into(),
        }];
        if pro {
            apps.push(PolicyApp {
                role: "paired".into(),
                app_id: "a2".into(),
                upn: "recording-main-paired@contoso.onmicrosoft.com".into(),
                display_name: "Rec recording paired".into(),
            });
        }
        PolicySteps {
            service: "main".into(),
            apps,
            policy_name: "recording-main".into(),
            first_invite: invite.map(Into::into),
        }
    }

    #[test]
    fn the_steps_name_the_apps_and_pair_them_for_pro() {
        let essentials = steps(false, None).powershell().join("\n");
        assert!(essentials.contains("New-CsOnlineApplicationInstance -UserPrincipalName 'recording-main@contoso.onmicrosoft.com'"));
        assert!(essentials.contains("-ApplicationId 'a1'"));
        assert!(!essentials.contains("PairedApplication"));
        assert!(essentials.contains("Grant-CsTeamsComplianceRecordingPolicy -Identity 'user@contoso.onmicrosoft.com' -PolicyName 'recording-main'"));
        let pro = steps(true, None).powershell().join("\n");
        assert!(pro.contains("-ApplicationId 'a2'"));
        assert!(
            pro.contains("New-CsTeamsComplianceRecordingPairedApplication -Id $paired.ObjectId")
        );
        let c = steps(true, None).condition();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::False, reason::CUSTOMER_POLICY_PENDING)
        );
        assert!(
            c.message.contains("primary bot app a1") && c.message.contains("paired bot app a2"),
            "{}",
            c.message
        );
        let c = steps(true, Some("2026-12-07T10:00:00Z")).condition();
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::True, reason::POLICY_INVITE_RECEIVED)
        );
    }

    #[test]
    fn quotes_in_values_stay_inside_their_string() {
        assert_eq!(ps("O'Brien"), "'O''Brien'");
    }
}
