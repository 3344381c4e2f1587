use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

pub(super) const TENANT_ID: &str = "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d";

pub(super) fn tenant(license: &str, ready: bool) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "contoso", "uid": "tenant-uid", "generation": 1},
        "spec": {
            "customerName": "contoso-customer",
            "domain": "contoso.onmicrosoft.com",
            "tenantId": TENANT_ID,
            "shortName": "contoso",
            "contactEmails": ["ops@example.com"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"],
            "license": license,
            "includedUsers": 100,
            "storage": {"location": "westeurope"},
            "retention": {"unlimited": true, "days": 365}
        },
        "status": {
            "storage": [
                {"location": "westeurope", "role": "default", "endpoint": "https://rec.blob.core.windows.net/contoso", "ready": true},
                {"location": "northeurope", "role": "paired", "ready": false}
            ],
            "conditions": [{
                "type": "Ready", "status": if ready { "True" } else { "False" },
                "reason": if ready { "Ready" } else { reason::CONSENTS_MISSING },
                "message": if ready { "all good" } else { "The customer's Global admin must grant consent for recording." },
                "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 1
            }]
        }
    }))
    .unwrap()
}

pub(super) fn service(name: &str, namespace: &str, spec: serde_json::Value) -> RecordingService {
    let mut full = json!({"tenantRef": "contoso", "shortName": "Contoso", "licensedUsers": 25});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "RecordingService",
        "metadata": {"name": name, "namespace": namespace, "uid": "service-uid", "generation": 3},
        "spec": full
    }))
    .unwrap()
}

fn with_app_registration() -> RecordingService {
    service(
        "main",
        "tenant-contoso",
        json!({"appRegistration": {
            "tenantId": TENANT_ID,
            "clientId": "6D2F9A41-3B5C-4E7D-8F10-A2B3C4D5E6F7",
            "clientSecretRef": {"name": "bot-credentials"}
        }}),
    )
}

pub(super) fn config() -> OperatorConfig {
    let mut config = OperatorConfig::default();
    for (i, consent) in config.consents.values_mut().enumerate() {
        consent.app_id = format!("00000000-0000-4000-8000-{i:012}");
    }
    config
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<(&'a str, &'a str)> {
    conditions::find(conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str()))
}

#[test]
fn essentials_runs_one_bot_and_pro_a_pair_kept_apart() {
    let svc = service("main", "tenant-contoso", json!({}));
    let essentials = desired_objects(
        &svc,
        &tenant("Essentials", true),
        TENANT_ID,
        None,
        &config(),
        &BTreeMap::new(),
    );
    let names: Vec<String> = essentials
        .stateful_sets
        .iter()
        .map(|d| d.name_any())
        .collect();
    assert_eq!(names, ["main-hue"]);
    assert_eq!(essentials.disruption_budgets.len(), 1);
    let pod = essentials.stateful_sets[0]
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(pod.affinity.is_none() && pod.topology_spread_constraints.is_none());

    let pro = desired_objects(
        &svc,
        &tenant("Pro", true),
        TENANT_ID,
        None,
        &config(),
        &BTreeMap::new(),
    );
    let names: Vec<String> = pro.stateful_sets.iter().map(|d| d.name_any()).collect();
    assert_eq!(names, ["main-hue", "main-hue-paired"]);
    assert_eq!(pro.disruption_budgets.len(), 1, "one budget over both bots");
    let budget = pro.disruption_budgets[0].spec.clone().unwrap();
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    let selected = budget.selector.unwrap().match_labels.unwrap();
    assert!(
        !selected.contains_key("app.kubernetes.io/component"),
        "the first and the paired bot: {selected:?}"
    );
    let primary = pro.stateful_sets[0].spec.clone().unwrap();
    let paired = pro.stateful_sets[1].spec.clone().unwrap();
    let term = &paired
        .template
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_labels.as_ref(),
        primary.selector.match_labels.as_ref(),
        "the paired bot avoids exactly the first bot's pods"
    );
    for spec in [&primary, &paired] {
        let spread = spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .topology_spread_constraints
            .clone()
            .unwrap();
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(spread[0].max_skew, 1);
    }
    assert_ne!(
        primary.selector, paired.selector,
        "the two Deployments never select each other's pods"
    );

    // Everything is owned by the service and carries the tenant and instance labels.
    let metas = [
        &pro.service_account.metadata,
        &pro.config_map.metadata,
        &pro.service.metadata,
        &pro.network_policy.metadata,
        &pro.stateful_sets[1].metadata,
        &pro.disruption_budgets[0].metadata,
    ];
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("service-uid", Some(true))
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["recording.m365.io/tenant"], "contoso");
        assert_eq!(labels["app.kubernetes.io/instance"], "main");
        assert_eq!(labels["app.kubernetes.io/name"], "recording-bot");
        assert_eq!(meta.namespace.as_deref(), Some("tenant-contoso"));
    }
}

#[test]
fn the_bot_configuration_carries_the_tenant_and_never_a_secret() {
    let svc = with_app_registration();
    let children = desired_objects(
        &svc,
        &tenant("Pro", true),
        TENANT_ID,
        None,
        &config(),
        &BTreeMap::new(),
    );
    let text = &children.config_map.data.as_ref().unwrap()[BOT_CONFIG_FILE];
    let parsed: BotConfig = serde_json::from_str(text).unwrap();
    assert_eq!(parsed.tenant_id, TENANT_ID);
    assert_eq!(
        parsed.retention,
        RetentionConfig {
            unlimited: true,
            days: None
        }
    );
    assert_eq!(parsed.storage.len(), 1, "only locations with an endpoint");
    assert_eq!(
        parsed.storage[0].endpoint,
        "https://rec.blob.core.windows.net/contoso"
    );
    assert_eq!(parsed.bots.len(), 2);
    assert!(parsed
        .bots
        .iter()
        .all(|b| b.client_id == "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7"
            && b.source == "appRegistration"));
    assert!(
        !text.contains("bot-credentials"),
        "not even the Secret's name is needed"
    );

    // The secret reaches the pods only by reference, under the default key.
    for deployment in &children.stateful_sets {
        let env = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap();
        let secret = env
            .iter()
            .find(|e| e.name == "AZURE_CLIENT_SECRET")
            .unwrap();
        assert!(secret.value.is_none());
        let selector = secret
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("bot-credentials", DEFAULT_CLIENT_SECRET_KEY)
        );
    }

    // Without an app registration the bots sign in as the platform's recording apps.
    let platform = bot_config(
        &service("main", "tenant-contoso", json!({})),
        &tenant("Pro", true),
        TENANT_ID,
        &config(),
    );
    let cfg = config();
    assert_eq!(platform.bots[0].client_id, cfg.consents["recording"].app_id);
    assert_eq!(
        platform.bots[1].client_id,
        cfg.consents["redundantRecording"].app_id
    );
}

/// The configuration hash on the first bot's pod template.
pub(super) fn config_hash_of(children: &Children) -> String {
    children.stateful_sets[0]
        .spec
        .clone()
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

#[test]
fn verified_administrators_reach_the_bot_configuration_and_a_change_rolls_the_bots() {
    let svc = service("main", "tenant-contoso", json!({}));
    let with = |admins: serde_json::Value| {
        let mut t = tenant("Essentials", true);
        t.status.as_mut().unwrap().administrators = serde_json::from_value(admins).unwrap();
        t
    };
    let before = with(json!([
        {"upn": "admin@contoso.onmicrosoft.com", "state": "Verified"},
        {"upn": "ghost@contoso.onmicrosoft.com", "state": "Missing"},
        {"upn": "off@contoso.onmicrosoft.com", "state": "Disabled"}
    ]));
    let children = desired_objects(&svc, &before, TENANT_ID, None, &config(), &BTreeMap::new());
    let file = &children.config_map.data.as_ref().unwrap()[BOT_CONFIG_FILE];
    let read: BotConfig = serde_json::from_str(file).unwrap();
    assert_eq!(read.administrators, vec!["admin@contoso.onmicrosoft.com"]);
    let after = with(json!([
        {"upn": "admin@contoso.onmicrosoft.com", "state": "Verified"},
        {"upn": "ghost@contoso.onmicrosoft.com", "state": "Verified"},
        {"upn": "off@contoso.onmicrosoft.com", "state": "Disabled"}
    ]));
    let hash = |t: &Tenant| {
        config_hash_of(&desired_objects(
            &svc,
            t,
            TENANT_ID,
            None,
            &config(),
            &BTreeMap::new(),
        ))
    };
    assert_ne!(hash(&before), hash(&after));
}

#[test]
fn a_changed_configuration_rolls_the_bots() {
    let svc = service("main", "tenant-contoso", json!({}));
    let hash = |t: &Tenant| {
        config_hash_of(&desired_objects(
            &svc,
            t,
            TENANT_ID,
            None,
            &config(),
            &BTreeMap::new(),
        ))
    };
    let before = tenant("Essentials", true);
    let mut after = before.clone();
    after.spec.retention = crate::crd::tenant::RetentionSpec {
        unlimited: false,
        days: Some(90),
    };
    assert_eq!(hash(&before), hash(&before.clone()));
    assert_ne!(hash(&before), hash(&after));
}

#[test]
fn on_claims_each_bot_mounts_its_locations_claim() {
    let svc = service("main", "tenant-contoso", json!({}));
    let mut t = tenant("Pro", true);
    t.status.as_mut().unwrap().storage = serde_json::from_value(json!([
        {"location": "westeurope", "role": "default", "endpoint": "pvc://tenant-contoso/recordings-default", "ready": true},
        {"location": "northeurope", "role": "paired", "endpoint": "pvc://tenant-contoso/recordings-paired", "ready": true}
    ]))
    .unwrap();
    let claims = |t: &Tenant| -> Vec<(Option<String>, Option<String>)> {
        desired_objects(&svc, t, TENANT_ID, None, &config(), &BTreeMap::new())
            .stateful_sets
            .iter()
            .map(|d| {
                let pod = d.spec.clone().unwrap().template.spec.unwrap();
                let claim = pod
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|v| v.persistent_volume_claim)
                    .map(|c| c.claim_name);
                let mount = pod.containers[0]
                    .volume_mounts
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|m| m.name == "recordings")
                    .map(|m| m.mount_path);
                (claim, mount)
            })
            .collect()
    };
    let dir = Some(RECORDINGS_DIR.to_string());
    assert_eq!(
        claims(&t),
        [
            (Some("recordings-default".into()), dir.clone()),
            (Some("recordings-paired".into()), dir)
        ]
    );
    // On Azure Blob the bots write over HTTPS: no claim.
    assert_eq!(claims(&tenant("Pro", true)), [(None, None), (None, None)]);
}

#[test]
fn a_rotated_client_secret_rolls_the_bots() {
    let svc = service("main", "tenant-contoso", json!({}));
    let t = tenant("Essentials", true);
    let hash = |version: Option<&str>| {
        config_hash_of(&desired_objects(
            &svc,
            &t,
            TENANT_ID,
            version,
            &config(),
            &BTreeMap::new(),
        ))
    };
    assert_eq!(hash(Some("41")), hash(Some("41")));
    assert_ne!(hash(Some("41")), hash(Some("57")), "the Secret was updated");
    assert_ne!(hash(None), hash(Some("41")));
}

#[test]
fn bots_count_as_ready_once_their_rollout_is_done() {
    let deployment =
        |generation: i64, observed: i64, replicas: i32, updated: i32, available: i32| StatefulSet {
            metadata: ObjectMeta {
                name: Some("main-hue".into()),
                generation: Some(generation),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
                observed_generation: Some(observed),
                replicas,
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        };
    // Settled.
    assert_eq!(rolled_out_and_available(&deployment(2, 2, 1, 1, 1)), 1);
    // A new spec the Deployment controller has not seen yet.
    assert_eq!(rolled_out_and_available(&deployment(3, 2, 1, 1, 1)), 0);
    // Rolling: the old pod serves, the new one is not ready (or never will be).
    assert_eq!(rolled_out_and_available(&deployment(3, 3, 2, 1, 1)), 0);
    // Scaling 1 → 2 on the same template: one of two.
    assert_eq!(rolled_out_and_available(&deployment(4, 4, 2, 2, 1)), 1);
    // No status yet.
    assert_eq!(rolled_out_and_available(&StatefulSet::default()), 0);
}

#[test]
fn resources_always_have_requests_and_limits() {
    let configured = crate::config::BotsConfig::default().resources;
    let defaults = bot_resources(None, &configured);
    assert_eq!(defaults.requests.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(defaults.limits.as_ref().unwrap()["memory"].0, "8Gi");
    let partial: ResourceRequirements = serde_json::from_value(json!({
        "requests": {"cpu": "1"},
        "limits": {"memory": "4Gi"}
    }))
    .unwrap();
    let completed = bot_resources(Some(&partial), &configured);
    let requests = completed.requests.unwrap();
    let limits = completed.limits.unwrap();
    assert_eq!(
        (requests["cpu"].0.as_str(), limits["cpu"].0.as_str()),
        ("1", "1")
    );
    assert_eq!(
        (requests["memory"].0.as_str(), limits["memory"].0.as_str()),
        ("4Gi", "4Gi")
    );
}

#[test]
fn the_reconciler_rejects_what_the_api_server_would_and_what_only_it_can_see() {
    let t = tenant("Essentials", true);
    assert_eq!(
        validate(&service("main", "tenant-contoso", json!({})), Some(&t)),
        Ok(())
    );
    for short in ["ab", "abcdefghijklmnop", "con.toso", "con toso"] {
        let v = validate(
            &service("main", "tenant-contoso", json!({"shortName": short})),
            Some(&t),
        )
        .unwrap_err();
        assert!(v.names_field("spec.shortName"), "{short:?}: {v}");
    }
    let v = validate(
        &service("main", "tenant-contoso", json!({"licensedUsers": 501})),
        Some(&t),
    )
    .unwrap_err();
    assert!(v.names_field("spec.licensedUsers"), "{v}");
    let v = validate(&service("main", "default", json!({})), Some(&t)).unwrap_err();
    assert_eq!(v.to_string(), "metadata.namespace: a RecordingService of Tenant \"contoso\" must live in that tenant's namespace \"tenant-contoso\"");
    let v = validate(&service("main", "tenant-contoso", json!({})), None).unwrap_err();
    assert_eq!(
        v.to_string(),
        "spec.tenantRef: Tenant \"contoso\" does not exist"
    );
    let long = "a".repeat(53);
    assert!(
        validate(&service(&long, "tenant-contoso", json!({})), Some(&t))
            .unwrap_err()
            .names_field("metadata.name")
    );
    assert_eq!(
        validate(
            &service(&"a".repeat(52), "tenant-contoso", json!({})),
            Some(&t)
        ),
        Ok(())
    );
    assert!(
        validate(&service("9lives", "tenant-contoso", json!({})), Some(&t))
            .unwrap_err()
            .names_field("metadata.name")
    );
}

/// The status of a service held back by `blocker` (nothing provisioned, no bots).
fn blocked_status(svc: &RecordingService, t: &Tenant, blocker: Blocker) -> RecordingServiceStatus {
    compute_status(&Observed {
        service: svc,
        tenant: Some(t),
        blocker: Some(blocker),
        bots: vec![],
        auth: AuthState::NotUsed,
        policy: None,
        now: at("2026-11-23T12:00:00Z"),
    })
}

#[test]
fn an_invalid_service_is_stalled_and_provisions_nothing() {
    let t = tenant("Essentials", true);
    let svc = service("main", "tenant-contoso", json!({"shortName": "a.b"}));
    let violations = validate(&svc, Some(&t)).unwrap_err();
    let status = blocked_status(&svc, &t, Blocker::InvalidSpec(violations));
    assert_eq!(
        find(&status.conditions, READY),
        Some(("False", reason::INVALID_SPEC))
    );
    assert_eq!(
        find(&status.conditions, STALLED),
        Some(("True", reason::INVALID_SPEC))
    );
    assert_eq!(
        find(&status.conditions, BOTS_READY),
        Some(("Unknown", reason::NOT_PROVISIONED))
    );
    assert!(conditions::find(&status.conditions, READY)
        .unwrap()
        .message
        .contains("spec.shortName"));
    assert_eq!(status.bots_ready, None);
    assert!(status
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(3)));
}

fn bot(name: &str, ready: i32, desired: i32) -> BotStatus {
    BotStatus {
        name: name.into(),
        ready,
        desired,
    }
}

fn status_with(
    t: &Tenant,
    svc: &RecordingService,
    bots: Vec<BotStatus>,
    auth: AuthState,
) -> RecordingServiceStatus {
    compute_status(&Observed {
        service: svc,
        tenant: Some(t),
        blocker: None,
        bots,
        auth,
        policy: Some(policy_steps(svc, t, &config())),
        now: at("2026-11-23T12:00:00Z"),
    })
}

#[test]
fn ready_says_it_waits_for_the_customers_policy_until_a_bot_reports_an_invite() {
    let t = tenant("Pro", true);
    let mut svc = service("main", "tenant-contoso", json!({}));
    let status = status_with(
        &t,
        &svc,
        vec![bot("main-hue", 1, 1), bot("main-hue-paired", 1, 1)],
        AuthState::NotUsed,
    );
    assert_eq!(
        find(&status.conditions, READY),
        Some(("True", "Ready")),
        "Ready keeps its status"
    );
    let ready = conditions::find(&status.conditions, READY).unwrap();
    assert!(
        ready
            .message
            .starts_with("deployed, waiting for the customer's recording policy"),
        "{}",
        ready.message
    );
    assert_eq!(
        find(&status.conditions, RECORDING_POLICY),
        Some(("False", reason::CUSTOMER_POLICY_PENDING))
    );
    let policy = conditions::find(&status.conditions, RECORDING_POLICY).unwrap();
    let apps = &config().consents;
    for key in ["recording", "redundantRecording"] {
        assert!(
            policy.message.contains(&apps[key].app_id),
            "{} names the {key} app",
            policy.message
        );
    }

    svc.status = Some(RecordingServiceStatus {
        first_policy_invite: Some("2026-11-23T11:00:00Z".into()),
        ..status
    });
    let status = status_with(
        &t,
        &svc,
        vec![bot("main-hue", 1, 1), bot("main-hue-paired", 1, 1)],
        AuthState::NotUsed,
    );
    assert_eq!(
        find(&status.conditions, RECORDING_POLICY),
        Some(("True", reason::POLICY_INVITE_RECEIVED))
    );
    assert_eq!(
        status.first_policy_invite.as_deref(),
        Some("2026-11-23T11:00:00Z"),
        "carried over"
    );
    let ready = conditions::find(&status.conditions, READY).unwrap();
    assert!(
        ready.message.starts_with("the tenant is ready"),
        "{}",
        ready.message
    );
}

#[test]
fn ready_needs_the_tenant_the_bots_and_the_credentials() {
    let svc = service("main", "tenant-contoso", json!({}));
    let ok = status_with(
        &tenant("Pro", true),
        &svc,
        vec![bot("main-hue", 1, 1), bot("main-hue-paired", 1, 1)],
        AuthState::NotUsed,
    );
    assert_eq!(find(&ok.conditions, READY), Some(("True", "Ready")));
    assert_eq!(ok.bots_ready.as_deref(), Some("2/2"));
    assert_eq!(find(&ok.conditions, AUTHENTICATED), None);

    let down = status_with(
        &tenant("Pro", true),
        &svc,
        vec![bot("main-hue", 1, 1), bot("main-hue-paired", 0, 1)],
        AuthState::NotUsed,
    );
    assert_eq!(
        find(&down.conditions, BOTS_READY),
        Some(("False", reason::BOTS_NOT_READY))
    );
    assert_eq!(
        conditions::find(&down.conditions, BOTS_READY)
            .unwrap()
            .message,
        "bot replicas available: main-hue-paired 0/1"
    );
    assert_eq!(down.bots_ready.as_deref(), Some("1/2"));
    assert_eq!(
        find(&down.conditions, READY),
        Some(("False", reason::BOTS_NOT_READY))
    );

    let tenant_down = status_with(
        &tenant("Pro", false),
        &svc,
        vec![bot("main-hue", 1, 1)],
        AuthState::NotUsed,
    );
    let ready = conditions::find(&tenant_down.conditions, READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::TENANT_NOT_READY)
    );
    assert!(
        ready.message.contains("must grant consent for recording"),
        "{}",
        ready.message
    );

    let reg = with_app_registration();
    let refused = status_with(
        &tenant("Essentials", true),
        &reg,
        vec![bot("main-hue", 1, 1)],
        AuthState::Checked(AuthOutcome::Rejected {
            reason: reason::INVALID_CLIENT_SECRET,
            message: "refused".into(),
        }),
    );
    assert_eq!(
        find(&refused.conditions, AUTHENTICATED),
        Some(("False", reason::INVALID_CLIENT_SECRET))
    );
    assert_eq!(
        find(&refused.conditions, READY),
        Some(("False", reason::INVALID_CLIENT_SECRET))
    );
    assert_eq!(find(&refused.conditions, SECRET_EXPIRY), None);
    assert_eq!(refused.client_secret_expires_in_days, None);

    let pending = status_with(
        &tenant("Essentials", true),
        &reg,
        vec![bot("main-hue", 1, 1)],
        AuthState::Unavailable("throttled".into()),
    );
    assert_eq!(
        find(&pending.conditions, AUTHENTICATED),
        Some(("Unknown", reason::CHECK_FAILED))
    );
    assert_eq!(
        find(&pending.conditions, READY),
        Some(("False", reason::AUTHENTICATION_PENDING))
    );
}

#[test]
fn a_secret_under_thirty_days_from_expiry_is_a_warning_but_still_ready() {
    let reg = with_app_registration();
    let t = tenant("Essentials", true);
    let expiring_at = |end: &str| {
        status_with(
            &t,
            &reg,
            vec![bot("main-hue", 1, 1)],
            AuthState::Checked(AuthOutcome::Authenticated {
                expiry: Expiry::At(at(end)),
                owners: None,
                permissions: PermissionSource::AppRoleAssignments,
                consented_by: ConsentedBy::Unknown("no record".into()),
            }),
        )
    };
    let fine = expiring_at("2026-12-23T12:00:00Z");
    assert_eq!(fine.client_secret_expires_in_days, Some(30));
    assert_eq!(
        find(&fine.conditions, SECRET_EXPIRY),
        Some(("True", reason::CLIENT_SECRET_VALID))
    );
    let soon = expiring_at("2026-12-23T11:59:59Z");
    assert_eq!(soon.client_secret_expires_in_days, Some(29));
    assert_eq!(
        find(&soon.conditions, SECRET_EXPIRY),
        Some(("False", reason::CLIENT_SECRET_EXPIRING))
    );
    assert_eq!(
        find(&soon.conditions, AUTHENTICATED),
        Some(("True", "Authenticated"))
    );
    assert_eq!(find(&soon.conditions, READY), Some(("True", "Ready")));
    assert_eq!(
        conditions::find(&soon.conditions, SECRET_EXPIRY).unwrap().message,
        "the soonest client secret of application 6D2F9A41-3B5C-4E7D-8F10-A2B3C4D5E6F7 expires in 29 day(s), on 2026-12-23: add a new secret, update the Secret, then remove the old one"
    );

    let events = transition_events(Some(&fine), &soon);
    assert_eq!(events.len(), 1, "only the changed condition: {events:?}");
    assert_eq!(
        (events[0].0, events[0].1.as_str()),
        (true, reason::CLIENT_SECRET_EXPIRING)
    );
    assert!(transition_events(Some(&soon), &soon).is_empty());

    let unreadable = status_with(
        &t,
        &reg,
        vec![bot("main-hue", 1, 1)],
        AuthState::Checked(AuthOutcome::Authenticated {
            expiry: Expiry::Unreadable("no permission".into()),
            owners: None,
            permissions: PermissionSource::Token("the directory consent is not granted".into()),
            consented_by: ConsentedBy::Unknown("the audit log may not be read".into()),
        }),
    );
    assert_eq!(
        unreadable.recording_permissions_source.as_deref(),
        Some("TokenRoles")
    );
    let message = &conditions::find(&unreadable.conditions, AUTHENTICATED)
        .unwrap()
        .message;
    assert!(
        message.contains(
            "read from its token's roles claim, because the directory consent is not granted"
        ) && message.ends_with("who consented is not known: the audit log may not be read"),
        "{message}"
    );
    assert!(unreadable.app_registration_consented_by.is_empty());

    // The audit log names who consented; the assignments were the source.
    let consented = status_with(
        &t,
        &reg,
        vec![bot("main-hue", 1, 1)],
        AuthState::Checked(AuthOutcome::Authenticated {
            expiry: Expiry::At(at("2027-06-01T00:00:00Z")),
            owners: Some(vec![]),
            permissions: PermissionSource::AppRoleAssignments,
            consented_by: ConsentedBy::Users(vec!["admin@contoso.example".into()]),
        }),
    );
    assert_eq!(
        consented.recording_permissions_source.as_deref(),
        Some("AppRoleAssignments")
    );
    assert_eq!(
        consented.app_registration_consented_by,
        ["admin@contoso.example"]
    );
    let message = &conditions::find(&consented.conditions, AUTHENTICATED)
        .unwrap()
        .message;
    assert!(
        message.ends_with("the registration has no user owner; consented by admin@contoso.example"),
        "{message}"
    );
    assert_eq!(
        find(&unreadable.conditions, SECRET_EXPIRY),
        Some(("Unknown", reason::EXPIRY_UNKNOWN))
    );
    assert_eq!(unreadable.client_secret_expires_in_days, None);
}

#[test]
fn entra_refusals_become_reasons_and_passing_trouble_a_retry() {
    let svc = with_app_registration();
    let reg = svc.spec.app_registration.as_ref().unwrap();
    let reason = |e: GraphError| match classify_auth_error(&e, reg, "tenant-contoso") {
        Ok(AuthOutcome::Rejected { reason, message }) => (reason, message),
        other => panic!("{other:?}"),
    };
    let app = "x".to_string();
    let (r, m) = reason(GraphError::InvalidSecret {
        app_id: app.clone(),
    });
    assert_eq!(r, reason::INVALID_CLIENT_SECRET);
    assert!(
        m.contains("Secret tenant-contoso/bot-credentials key clientSecret"),
        "{m}"
    );
    assert_eq!(
        reason(GraphError::SecretExpired {
            app_id: app.clone()
        })
        .0,
        reason::CLIENT_SECRET_EXPIRED
    );
    assert_eq!(
        reason(GraphError::TenantNotFound {
            tenant: TENANT_ID.into()
        })
        .0,
        reason::TENANT_NOT_FOUND
    );
    assert_eq!(
        reason(GraphError::NotConsented {
            tenant: TENANT_ID.into(),
            app_id: app.clone(),
            code: 700016,
            detail: None,
        })
        .0,
        reason::APP_NOT_FOUND
    );
    assert_eq!(
        reason(GraphError::MissingSecret {
            app_id: app.clone(),
            reason: "the Secret does not exist".into()
        })
        .0,
        reason::SECRET_NOT_FOUND
    );
    let throttled = GraphError::Throttled {
        service: crate::graph::Service::Identity,
        retry_after: Duration::from_secs(3),
    };
    assert!(classify_auth_error(&throttled, reg, "tenant-contoso").is_err());
}

#[test]
fn events_follow_transitions_only() {
    let svc = service("main", "tenant-contoso", json!({}));
    let t = tenant("Essentials", true);
    let starting = status_with(&t, &svc, vec![bot("main-hue", 0, 1)], AuthState::NotUsed);
    let first = transition_events(None, &starting);
    let reasons: Vec<&str> = first.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        reasons,
        [
            reason::BOTS_NOT_READY,
            reason::CUSTOMER_POLICY_PENDING,
            reason::BOTS_NOT_READY
        ],
        "BotsReady, RecordingPolicy and Ready all start False"
    );
    assert!(first.iter().all(|e| e.0), "False conditions are Warnings");
    let running = status_with(&t, &svc, vec![bot("main-hue", 1, 1)], AuthState::NotUsed);
    let next = transition_events(Some(&starting), &running);
    assert_eq!(
        next.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
        [(false, "BotsReady"), (false, "Ready")]
    );
    assert!(!status_changed(
        Some(&running),
        &status_with(&t, &svc, vec![bot("main-hue", 1, 1)], AuthState::NotUsed)
    ));
}

/// The tenant's ResourceQuota bounds ephemeral storage, so a pod without ephemeral-storage
/// requests and limits would be refused: every bot container names a request and a limit for
/// every resource the quota bounds, and its `/tmp` has a size limit within that limit.
#[test]
fn bots_fit_the_tenant_quota_and_bound_their_tmp() {
    let t = tenant("Pro", true);
    let quota = crate::controller::tenant::desired_children(&t, &config()).quota;
    let hard = quota.spec.unwrap().hard.unwrap();
    assert!(hard.contains_key("limits.ephemeral-storage"), "{hard:?}");
    let svc = service("main", "tenant-contoso", json!({}));
    for deployment in
        desired_objects(&svc, &t, TENANT_ID, None, &config(), &BTreeMap::new()).stateful_sets
    {
        let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let resources = container.resources.clone().unwrap();
        for key in hard.keys() {
            let (kind, resource) = match key.split_once('.') {
                Some(("requests", r)) => (&resources.requests, r),
                Some(("limits", r)) => (&resources.limits, r),
                _ => continue,
            };
            assert!(
                kind.as_ref().is_some_and(|k| k.contains_key(resource)),
                "{}: no {key}",
                deployment.name_any()
            );
        }
        let tmp = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert_eq!(
            tmp.empty_dir.unwrap().size_limit,
            Some(Quantity(BOT_TMP_SIZE_LIMIT.into()))
        );
    }
}

#[test]
fn nothing_is_provisioned_or_checked_for_a_tenant_being_deleted() {
    let mut t = tenant("Essentials", true);
    t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
        "2026-12-01T00:00:00Z",
    )));
    let v = validate(&service("main", "tenant-contoso", json!({})), Some(&t)).unwrap_err();
    assert!(v.names_field("spec.tenantRef"), "{v}");
    assert!(v.to_string().contains("is being deleted"), "{v}");
}

#[test]
fn a_known_app_registration_of_another_tenant_is_refused_without_asking_entra() {
    let svc = with_app_registration();
    let registration = svc.spec.app_registration.as_ref().unwrap();
    assert_eq!(wrong_tenant(registration, &TENANT_ID.to_uppercase()), None);
    let Some(AuthOutcome::Rejected { reason, message }) =
        wrong_tenant(registration, "3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b")
    else {
        panic!("refused")
    };
    assert_eq!(reason, reason::WRONG_TENANT);
    assert!(
        message.contains("spec.appRegistration.tenantId"),
        "{message}"
    );
}

#[test]
fn the_token_must_hold_every_recording_permission() {
    let config = config();
    let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = roles(&[
        "calls.accessmedia.all",
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
        "Application.Read.All",
    ]);
    assert_eq!(recording_permissions_missing(Some(&all), &config), None);
    let some = roles(&["Calls.AccessMedia.All"]);
    assert_eq!(
        recording_permissions_missing(Some(&some), &config).unwrap(),
        "its token lacks the recording permission(s) Calls.JoinGroupCall.All, Calls.JoinGroupCallAsGuest.All"
    );
    assert!(recording_permissions_missing(None, &config)
        .unwrap()
        .contains("cannot be checked"));
}

#[test]
fn a_service_with_its_own_app_does_not_wait_for_the_platforms_recording_consents() {
    let mut t = tenant("Pro", false);
    let line = |name: &str, state: &str| json!({"name": name, "state": state});
    t.status.as_mut().unwrap().consents = serde_json::from_value(json!([
        line("login", "Granted"),
        line("directory", "Granted"),
        line("recording", "Pending"),
        line("redundantRecording", "Pending"),
        line("instantMessages", "Granted"),
        {"name": "teamsApp", "state": "Pending", "optional": true}
    ]))
    .unwrap();
    let own = with_app_registration();
    let platform = service("main", "tenant-contoso", json!({}));
    assert_eq!(tenant_readiness(&own, &t).map(|r| r.0), Some(true));
    assert_eq!(tenant_readiness(&platform, &t).map(|r| r.0), Some(false));
    // Any other consent missing holds both back.
    t.status.as_mut().unwrap().consents[4].state = crate::crd::ConsentState::Pending;
    assert_eq!(tenant_readiness(&own, &t).map(|r| r.0), Some(false));
}

#[test]
fn a_service_repeating_a_short_name_or_over_the_licence_is_held_back_with_the_numbers() {
    let t = tenant("Essentials", true);
    let created = |s: &mut RecordingService, at: &str| {
        s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            at.parse().unwrap(),
        ));
    };
    let mut first = service(
        "first",
        "tenant-contoso",
        json!({"shortName": "Rec", "licensedUsers": 80}),
    );
    created(&mut first, "2026-11-23T10:00:00Z");
    let mut again = service(
        "again",
        "tenant-contoso",
        json!({"shortName": "REC", "licensedUsers": 5}),
    );
    created(&mut again, "2026-11-23T11:00:00Z");
    let mut big = service(
        "big",
        "tenant-contoso",
        json!({"shortName": "Big", "licensedUsers": 30}),
    );
    created(&mut big, "2026-11-23T12:00:00Z");
    let all: Vec<Arc<RecordingService>> = [&first, &again, &big]
        .into_iter()
        .cloned()
        .map(Arc::new)
        .collect();

    assert_eq!(rule_blocker(&first, Some(&t), &all), None);
    let blocker = rule_blocker(&again, Some(&t), &all).unwrap();
    let status = blocked_status(&again, &t, blocker);
    assert_eq!(
        find(&status.conditions, CONFLICT),
        Some(("True", reason::ALREADY_IN_USE))
    );
    assert_eq!(
        find(&status.conditions, READY),
        Some(("False", reason::CONFLICT))
    );
    assert_eq!(
        find(&status.conditions, BOTS_READY),
        Some(("Unknown", reason::NOT_PROVISIONED))
    );
    let events = transition_events(None, &status);
    assert!(events.iter().any(|(warning, why, note)| *warning
        && why == reason::CONFLICT
        && note.contains(r#"RecordingService "first""#)));

    let blocker = rule_blocker(&big, Some(&t), &all).unwrap();
    let status = blocked_status(&big, &t, blocker);
    let ready = conditions::find(&status.conditions, READY).unwrap();
    assert_eq!(ready.reason, reason::LICENSED_USERS_EXCEEDED);
    assert!(ready.message.starts_with("licensedUsers 30 would bring the tenant's licensed users to 110 of 100 included (older services use 80)"), "{}", ready.message);
    assert_eq!(find(&status.conditions, CONFLICT), None);
}

#[test]
fn a_bot_rollout_is_settled_once_every_instance_runs_the_update_revision() {
    let stateful_set =
        |generation: i64, observed: i64, ready: i32, updated: i32, current: &str| StatefulSet {
            metadata: ObjectMeta {
                name: Some("main-hue".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
                observed_generation: Some(observed),
                replicas: 2,
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                updated_replicas: Some(updated),
                current_revision: Some(current.into()),
                update_revision: Some("main-hue-new".into()),
                ..Default::default()
            }),
        };
    assert!(settled(&stateful_set(3, 3, 2, 2, "main-hue-new")));
    // The StatefulSet controller has not seen the latest spec yet.
    assert!(!settled(&stateful_set(4, 3, 2, 2, "main-hue-new")));
    // One instance replaced, the other still on the old revision.
    assert!(!settled(&stateful_set(3, 3, 2, 1, "main-hue-old")));
    // Every instance updated, one not ready yet.
    assert!(!settled(&stateful_set(3, 3, 1, 2, "main-hue-new")));
    // No status yet.
    assert!(!settled(&StatefulSet::default()));
}
