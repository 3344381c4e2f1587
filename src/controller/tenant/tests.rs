use super::*;
use crate::crd::ConsentGrantStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A valid Tenant of the given license, for tests in this and neighbouring modules.
pub(crate) fn tenant(license: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "contoso", "generation": 1,
                     "uid": "0b7c4e1a-2f3d-4c5b-8a9e-1d2c3b4a5f60"},
        "spec": {
            "customerName": "Contoso", "domain": "contoso.onmicrosoft.com",
            "shortName": "Contoso", "contactEmails": ["ops@contoso.com"],
            "adminUpns": ["admin@contoso.onmicrosoft.com"], "license": license,
            "includedUsers": 10, "storage": {"location": "westeurope"}
        }
    }))
    .unwrap()
}

/// The tenant's grants, each `None` (never checked) or checked with a state.
fn grants(
    config: &OperatorConfig,
    t: &Tenant,
    states: &[Option<ConsentState>],
) -> Vec<ConsentGrant> {
    let children = desired_children(t, config);
    assert_eq!(children.grants.len(), states.len());
    children
        .grants
        .into_iter()
        .zip(states)
        .map(|(mut g, state)| {
            g.status = state.map(|state| ConsentGrantStatus {
                state: Some(state),
                last_checked_at: Some(Time(Timestamp::from_second(1_000_000).unwrap())),
                ..Default::default()
            });
            g
        })
        .collect()
}

fn status(t: &Tenant, config: &OperatorConfig, grants: &[ConsentGrant]) -> TenantStatus {
    let consents = required_consents(t, config)
        .into_iter()
        .map(|r| {
            let name = consent_grant_name(r.key);
            (r, grants.iter().find(|g| g.name_any() == name))
        })
        .collect();
    compute_status(&Observed {
        tenant: t,
        tenant_id: Some("00000000-0000-0000-0000-0000000000c1".into()),
        blocker: None,
        consents,
        storage: None,
        licence: Default::default(),
        now: Timestamp::from_second(1_000_100).unwrap(),
    })
}

fn reason(s: &TenantStatus, type_: &str) -> (String, String) {
    let c = conditions::find(&s.conditions, type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[test]
fn a_blocked_tenant_keeps_its_storage_lines_and_says_storage_was_not_checked() {
    let config = OperatorConfig::default();
    let t = tenant("Essentials");
    let line = StorageLocationStatus {
        location: "westeurope".into(),
        role: "default".into(),
        name: None,
        endpoint: Some("https://recweu.blob.core.windows.net/contoso-default".into()),
        ready: true,
        message: None,
    };
    let s = compute_status(&Observed {
        tenant: &t,
        tenant_id: None,
        blocker: Some(Blocker::TenantIdUnavailable("throttled".into())),
        consents: required_consents(&t, &config)
            .into_iter()
            .map(|r| (r, None))
            .collect(),
        storage: Some(vec![line.clone()]),
        licence: Default::default(),
        now: Timestamp::from_second(1_000_100).unwrap(),
    });
    assert_eq!(s.storage, [line]);
    assert_eq!(
        reason(&s, STORAGE_READY),
        ("Unknown".into(), reason::NOT_CHECKED.into())
    );
    assert_eq!(reason(&s, READY).0, "False");
}

#[test]
fn before_the_first_checks_the_tenant_is_checking_not_missing_consents() {
    let config = OperatorConfig::default();
    let mut t = tenant("Essentials");
    let n = required_consents(&t, &config).len();
    let s = status(&t, &config, &grants(&config, &t, &vec![None; n]));
    assert_eq!(s.health, Some(Health::Warning));
    assert_eq!(
        reason(&s, READY),
        ("False".into(), CHECKING_CONSENTS.into())
    );
    assert_eq!(
        reason(&s, CONSENTS_GRANTED),
        ("Unknown".into(), CHECKING_CONSENTS.into())
    );
    assert_eq!(s.alarm.as_deref(), Some(CHECKING_MESSAGE));
    assert_eq!(transition_event(None, &s), None, "progress, not an alarm");

    // One grant answers Granted: the rest are still unchecked, the write may wait.
    let mut states = vec![None; n];
    states[0] = Some(ConsentState::Granted);
    let one = status(&t, &config, &grants(&config, &t, &states));
    t.status = Some(s.clone());
    let d = StatusDigest::of;
    assert!(status_changed(Some(&d(&s)), &d(&one)));
    assert!(may_wait_for_first_checks(Some(&d(&s)), &d(&one)));

    // One answers Pending: that is news for the customer, written with a Warning Event.
    states[0] = Some(ConsentState::Pending);
    let missing = status(&t, &config, &grants(&config, &t, &states));
    assert_eq!(reason(&missing, READY).1, reason::CONSENTS_MISSING);
    assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&missing)));
    let (warning, event_reason, note) = transition_event(Some(&s), &missing).unwrap();
    assert!(warning);
    assert_eq!(event_reason, reason::CONSENTS_MISSING);
    assert!(note.contains("must grant consent for"), "{note}");

    // All granted: Ready, written, with the Ready Event.
    let ready = status(
        &t,
        &config,
        &grants(&config, &t, &vec![Some(ConsentState::Granted); n]),
    );
    assert_eq!(ready.health, Some(Health::Ok));
    assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&ready)));
    assert_eq!(transition_event(Some(&s), &ready).unwrap().1, "Ready");
}

#[test]
fn the_write_decision_ignores_condition_times_and_a_status_recomputed_from_the_cache() {
    let config = OperatorConfig::default();
    let mut t = tenant("Pro");
    let n = required_consents(&t, &config).len();
    let granted = grants(&config, &t, &vec![Some(ConsentState::Granted); n]);
    let ready = status(&t, &config, &granted);

    // The same status computed a minute later: only condition times differ.
    let mut later = ready.clone();
    for c in &mut later.conditions {
        c.last_transition_time = Time(Timestamp::from_second(1_900_000_000).unwrap());
    }
    assert_eq!(StatusDigest::of(&ready), StatusDigest::of(&later));

    // A consent line that changes is a write, even while nothing else does.
    let mut other_url = ready.clone();
    other_url.consents[0].consent_url = Some("https://login.example/other".into());
    assert!(status_changed(
        Some(&StatusDigest::of(&ready)),
        &StatusDigest::of(&other_url)
    ));

    // The cached Tenant keeps its whole status (only metadata no reconcile reads is
    // dropped).
    t.status = Some(ready.clone());
    let mut cached = t.clone();
    crate::controller::slim(&mut cached);
    let kept = cached.status.as_ref().unwrap();
    assert_eq!(kept, &ready);
    assert_eq!(kept.tenant_id, ready.tenant_id);
    assert_eq!(kept.health, ready.health);
    assert_eq!(kept.storage, ready.storage);
    assert_eq!(
        conditions::find(&kept.conditions, READY),
        conditions::find(&ready.conditions, READY)
    );
    // A status recomputed from the cached Tenant is the status last written: no write.
    let again = status(&cached, &config, &granted);
    assert!(!status_changed(
        Some(&StatusDigest::of(&ready)),
        &StatusDigest::of(&again)
    ));
    assert_eq!(transition_event(cached.status.as_ref(), &again), None);
}

#[test]
fn a_status_change_beyond_the_consent_lines_is_written_while_checking() {
    let config = OperatorConfig::default();
    let t = tenant("Pro");
    let n = required_consents(&t, &config).len();
    let s = status(&t, &config, &grants(&config, &t, &vec![None; n]));
    let mut newer = s.clone();
    newer.observed_generation = Some(2);
    let d = StatusDigest::of;
    assert!(!may_wait_for_first_checks(Some(&d(&s)), &d(&newer)));
    assert!(
        !may_wait_for_first_checks(None, &d(&s)),
        "the first status is always written"
    );
}

#[test]
fn only_a_namespace_stamped_for_this_tenant_is_adopted() {
    let config = OperatorConfig::default();
    let t = tenant("Pro");
    let ours = desired_children(&t, &config).namespace;
    assert_eq!(
        ours.labels().get(TENANT_UID_LABEL).map(String::as_str),
        t.uid().as_deref()
    );
    assert_eq!(adoption_refusal(&ours, &t), None);

    // Someone's namespace of the same name: refused, saying how to hand it over.
    let theirs = Namespace {
        metadata: ObjectMeta {
            name: Some("tenant-contoso".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let refusal = adoption_refusal(&theirs, &t).unwrap();
    assert!(
        refusal.contains("\"tenant-contoso\" already exists"),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!("{TENANT_UID_LABEL}={}", t.uid().unwrap())),
        "{refusal}"
    );

    // Left by an earlier Tenant of the same name (deletionPolicy Retain): refused too.
    let mut earlier = ours.clone();
    earlier
        .labels_mut()
        .insert(TENANT_UID_LABEL.into(), "another-uid".into());
    earlier.metadata.owner_references = None;
    assert!(adoption_refusal(&earlier, &t)
        .unwrap()
        .contains("another Tenant's uid"));

    // Made by an operator from before the label: its owner reference names this Tenant.
    let mut unlabelled = ours;
    unlabelled.labels_mut().remove(TENANT_UID_LABEL);
    assert_eq!(adoption_refusal(&unlabelled, &t), None);
}

#[test]
fn a_tenant_in_conflict_names_the_older_one_and_counts_users_in_use() {
    let config = OperatorConfig::default();
    let t = tenant("Essentials");
    let conflict = crate::controller::rules::Conflict {
        field: "spec.domain",
        value: "contoso.onmicrosoft.com".into(),
        holder: "Tenant \"contoso-old\"".into(),
    };
    let s = compute_status(&Observed {
        tenant: &t,
        tenant_id: None,
        blocker: Some(Blocker::Conflict(vec![conflict])),
        consents: required_consents(&t, &config)
            .into_iter()
            .map(|r| (r, None))
            .collect(),
        storage: None,
        licence: crate::controller::rules::LicenceUse {
            in_use: 30,
            included: 100,
            ..Default::default()
        },
        now: Timestamp::from_second(1_000_100).unwrap(),
    });
    assert_eq!(reason(&s, READY), ("False".into(), reason::CONFLICT.into()));
    let c = conditions::find(&s.conditions, conditions::CONFLICT).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", reason::ALREADY_IN_USE)
    );
    assert!(
        c.message.contains(
            r#"spec.domain "contoso.onmicrosoft.com" is already used by Tenant "contoso-old""#
        ),
        "{}",
        c.message
    );
    assert_eq!(s.health, Some(Health::Warning));
    assert!(
        s.alarm.as_deref().unwrap().starts_with("Conflict: "),
        "{:?}",
        s.alarm
    );
    assert_eq!(s.users_in_use, Some(30));
    let (warning, why, _) = transition_event(None, &s).unwrap();
    assert!(warning);
    assert_eq!(why, reason::CONFLICT);
}

#[test]
fn first_ready_at_is_set_when_ready_first_turns_true_and_then_never_moves() {
    let config = OperatorConfig::default();
    let mut t = tenant("Pro");
    let n = required_consents(&t, &config).len();
    let granted = grants(&config, &t, &vec![Some(ConsentState::Granted); n]);
    let mut partial = granted.clone();
    partial[0].status.as_mut().unwrap().state = Some(ConsentState::Partial);

    let waiting = status(&t, &config, &partial);
    assert_eq!(waiting.first_ready_at, None, "never Ready yet");

    t.status = Some(waiting);
    let ready = status(&t, &config, &granted);
    let ready_at = conditions::find(&ready.conditions, READY)
        .unwrap()
        .last_transition_time
        .clone();
    assert_eq!(ready.first_ready_at, Some(ready_at.clone()));

    // Not Ready for a while, then Ready again: the first time stays.
    t.status = Some(ready);
    let troubled = status(&t, &config, &partial);
    assert_eq!(reason(&troubled, READY).0, "False");
    assert_eq!(troubled.first_ready_at, Some(ready_at));
    // (Set a day earlier than this test's clock, so that keeping it is visible.)
    let first = Time(Timestamp::from_second(1_000_100 - 86_400).unwrap());
    t.status = Some(TenantStatus {
        first_ready_at: Some(first.clone()),
        ..troubled
    });
    let mut again = status(&t, &config, &granted);
    assert_eq!(reason(&again, READY).0, "True");
    assert_eq!(again.first_ready_at, Some(first));

    // A Tenant Ready before the field existed: its Ready condition's transition time.
    let long_ago = Time(Timestamp::from_second(500_000).unwrap());
    again.first_ready_at = None;
    for c in &mut again.conditions {
        c.last_transition_time = long_ago.clone();
    }
    t.status = Some(again);
    let upgraded = status(&t, &config, &granted);
    assert_eq!(upgraded.first_ready_at, Some(long_ago));
    assert!(status_changed(
        t.status.as_ref().map(StatusDigest::of).as_ref(),
        &StatusDigest::of(&upgraded)
    ));
}

#[test]
fn the_tenant_quota_takes_the_configured_limits_over_the_defaults() {
    let t = tenant("Pro");
    let quota_of = |config: &OperatorConfig| {
        desired_children(&t, config)
            .quota
            .spec
            .and_then(|s| s.hard)
            .unwrap()
    };
    let default = quota_of(&OperatorConfig::default());
    assert_eq!(default["requests.cpu"].0, "16");
    let mut config = OperatorConfig::default();
    config
        .tenant_quota
        .hard
        .insert("requests.cpu".into(), "80".into());
    let raised = quota_of(&config);
    assert_eq!(raised["requests.cpu"].0, "80");
    assert_eq!(raised["requests.memory"], default["requests.memory"]);
    assert_eq!(raised.len(), default.len());
}
