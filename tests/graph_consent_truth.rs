//! Consent states that hold on the real Microsoft cloud, checked against the simulator set
//! the way the real services behave: listing permission grants needs `Directory.Read.All`,
//! users consent for themselves (`Principal` grants), tokens may be opaque, AADSTS answers
//! that point at the configuration, tenants of another national cloud, and a token Graph
//! stops accepting on one item of a `$batch`.

mod common;

use std::time::Duration;

use recording_operator::graph::{CheckState, GraphError};
use sim::m365::NationalCloud;

use common::consent_world::*;

const USER: &str = "0b0b0b0b-1111-4222-8333-444455556666";

// ---- 1. Delegated consents ----------------------------------------------------------------

#[tokio::test]
async fn a_users_own_consent_is_not_admin_consent() {
    let w = world().await;
    w.grant(CONTOSO, "directory");
    // A user signs in and consents for themselves: the enterprise application appears.
    w.sim.user_consent(CONTOSO, &w.app_id("login"), USER);
    assert!(w
        .sim
        .service_principal_id(CONTOSO, &w.app_id("login"))
        .is_some());
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let login = check.get("login").unwrap();
    assert_eq!(login.state, CheckState::Partial, "{}", login.message);
    assert_eq!(login.missing, ["openid", "profile", "User.Read"]);
    assert!(
        login.message.contains("consentType Principal"),
        "{}",
        login.message
    );

    // The admin consents for the organisation: now it counts.
    w.grant(CONTOSO, "login");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    assert_eq!(state(&check, "login"), CheckState::Granted);
}

#[tokio::test]
async fn grants_the_directory_token_may_not_list_are_never_granted() {
    let w = world().await;
    // An older consent of the directory app, from before it asked for Directory.Read.All.
    w.grant_directory_without_directory_read(CONTOSO);
    w.grant(CONTOSO, "login");
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Partial);
    assert_eq!(directory.missing, ["Directory.Read.All"]);
    // Application permissions are still read from Graph...
    assert_eq!(state(&check, "recording"), CheckState::Granted);
    // ...delegated scopes are not, and the status says why and who must act.
    let login = check.get("login").unwrap();
    assert_eq!(login.state, CheckState::Unverified, "{}", login.message);
    assert!(
        login.message.contains("oauth2PermissionGrants")
            && login
                .message
                .contains("Directory.Read.All is not granted (yet)"),
        "{}",
        login.message
    );
}

#[tokio::test]
async fn a_configuration_without_directory_read_is_an_error_not_a_grant() {
    // The configuration of the old default: the directory app does not ask for it.
    let w = world_with(seed(), |config, _| {
        config
            .consents
            .get_mut("directory")
            .unwrap()
            .application_permissions
            .retain(|p| p != "Directory.Read.All");
    })
    .await;
    w.grant_directory_without_directory_read(CONTOSO);
    w.grant(CONTOSO, "login");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    assert_eq!(state(&check, "directory"), CheckState::Granted);
    let login = check.get("login").unwrap();
    assert_eq!(login.state, CheckState::Error, "{}", login.message);
    assert!(
        login
            .message
            .contains("consents.directory.applicationPermissions"),
        "{}",
        login.message
    );
}

// ---- 2. Opaque tokens -----------------------------------------------------------------------

#[tokio::test]
async fn opaque_tokens_verify_everything_through_graph() {
    let w = world().await;
    w.sim.set_opaque_tokens(true);
    let specs = w.specs(true);
    w.grant_all(CONTOSO, &specs);
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_all_granted(&check);
    assert_eq!(w.sim.counts().tenant(CONTOSO).token, 1, "the directory's");

    // A permission withdrawn from the directory app itself is seen in Graph.
    w.sim
        .revoke_permission(CONTOSO, &w.app_id("directory"), "Group.Read.All");
    let check = w.checker.check_now(CONTOSO, &specs).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(directory.state, CheckState::Partial);
    assert_eq!(directory.missing, ["Group.Read.All"]);
}

#[tokio::test]
async fn an_opaque_token_without_the_directory_consent_is_unverified_not_an_error() {
    let w = world().await;
    w.sim.set_opaque_tokens(true);
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    let recording = check.get("recording").unwrap();
    assert_eq!(recording.state, CheckState::Unverified);
    assert!(
        recording.message.contains("not a readable JWT")
            && recording.message.contains("directory consent"),
        "{}",
        recording.message
    );
    assert_eq!(state(&check, "directory"), CheckState::Pending);
}

#[tokio::test]
async fn app_role_assignments_are_the_truth_over_a_cached_tokens_roles() {
    let w = world_with(seed(), |config, _| {
        config.polling.check_cache_ttl = Duration::ZERO;
    })
    .await;
    let specs = w.specs(false);
    w.grant_all(CONTOSO, &specs);
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_eq!(state(&check, "directory"), CheckState::Granted);
    // Withdrawn within the cached token's hour: its roles still list it, Graph does not.
    w.sim
        .revoke_permission(CONTOSO, &w.app_id("directory"), "User.Read.All");
    let check = w.checker.check_now(CONTOSO, &specs).await;
    let directory = check.get("directory").unwrap();
    assert_eq!(
        directory.state,
        CheckState::Partial,
        "{}",
        directory.message
    );
    assert_eq!(directory.missing, ["User.Read.All"]);
}

// ---- 3. AADSTS answers that name the configuration -----------------------------------------

#[tokio::test]
async fn a_graph_resource_the_tenant_does_not_know_names_the_configuration() {
    // A Graph endpoint the cloud does not know (as a US Gov endpoint on the public cloud):
    // AADSTS500011, which is the platform's to fix, not the customer's.
    let w = world_with(seed(), |config, _| {
        config.cloud.graph_endpoint = Some(format!(
            "{}/elsewhere",
            config.cloud.graph_endpoint.clone().unwrap()
        ));
    })
    .await;
    w.grant(CONTOSO, "directory");
    w.grant(CONTOSO, "recording");
    let check = w.checker.check_now(CONTOSO, &w.specs(false)).await;
    for key in ["directory", "recording"] {
        let c = check.get(key).unwrap();
        assert_eq!(c.state, CheckState::Error, "{key}: {}", c.message);
        assert!(
            c.message.contains("AADSTS500011") && c.message.contains("cloud.graphEndpoint"),
            "{key}: {}",
            c.message
        );
        assert!(
            !c.message.contains("admin consent not given"),
            "{}",
            c.message
        );
    }
}

// ---- 4. Tenants of another national cloud ---------------------------------------------------

#[tokio::test]
async fn a_tenant_of_another_cloud_is_reported_as_such() {
    let w = world().await;
    let gov = "60760760-0000-4000-8000-000000000005";
    w.sim
        .add_tenant_in_cloud(gov, &["agency.us"], NationalCloud::UsGov);
    let expected = "tenant agency.us belongs to the microsoftonline.us cloud (tenant_region_scope USGov), not to microsoftonline.com that this operator is configured for: onboard it with an operator whose cloud.preset is that tenant's cloud";
    let err = w.checker.resolve_tenant_id("agency.us").await.unwrap_err();
    assert!(matches!(err, GraphError::OtherCloud { .. }), "{err:?}");
    assert_eq!(err.to_string(), expected);

    // Checked by its id (a Tenant with spec.tenantId): the token endpoint refuses the
    // cross-cloud request, and the tenant's OpenID document names its cloud.
    let check = w.checker.check_now(gov, &w.specs(false)).await;
    for c in check.consents.iter() {
        assert_eq!(c.state, CheckState::Error, "{}: {}", c.key, c.message);
        assert_eq!(c.message, expected.replace("agency.us", gov));
    }
}

// ---- 5. A token Graph refuses on one batch item ---------------------------------------------

#[tokio::test]
async fn a_401_on_one_batch_item_gets_a_new_token_before_any_error() {
    let w = world_with(seed(), |config, _| {
        config.polling.granted_interval = Duration::from_secs(600);
    })
    .await;
    let specs = w.specs(false);
    w.grant_all(CONTOSO, &specs);
    w.checker.check_now(CONTOSO, &specs).await;
    w.sim.reset_counts();
    w.sim.reject_tokens_on_graph(CONTOSO, 1);
    let check = w.checker.check_now(CONTOSO, &specs).await;
    assert_all_granted(&check);
    let counts = w.sim.counts().tenant(CONTOSO);
    assert_eq!(counts.token, 1, "one new directory token");
    assert_eq!(
        counts.graph_batch, 2,
        "the batch with the refused item, again"
    );

    // Every item refused, with the new token too: never Granted.
    w.sim.reject_tokens_on_graph(CONTOSO, 100);
    let check = w.checker.check_now(CONTOSO, &specs).await;
    let login = check.get("login").unwrap();
    assert_eq!(login.state, CheckState::Unverified, "{}", login.message);
    assert!(
        login.message.contains("InvalidAuthenticationToken"),
        "{}",
        login.message
    );
}
