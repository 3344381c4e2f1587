use super::*;

#[test]
fn a_recheck_request_of_any_length_fits_the_status() {
    let grant_with = |value: &str| -> ConsentGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
            "metadata": {"name": "recording", "namespace": "tenant-contoso",
                         "annotations": {RECHECK_ANNOTATION: value}},
            "spec": {"tenantRef": "contoso", "consent": "recording",
                     "appId": "8b0f7a52-0000-4000-8000-000000000003"}
        }))
        .unwrap()
    };
    let short = grant_with("2026-11-26T15:00:00Z");
    assert_eq!(
        recheck_request(&short).as_deref(),
        Some("2026-11-26T15:00:00Z")
    );

    let long_value = format!("after the admin's call: {}", "x".repeat(100));
    let mut long = grant_with(&long_value);
    let recorded = recheck_request(&long).unwrap();
    assert_eq!(recorded.len(), 64, "{recorded}");
    assert!(recorded.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(recheck_requested(&long));
    long.status = Some(ConsentGrantStatus {
        last_recheck_request: Some(recorded),
        ..Default::default()
    });
    assert!(!recheck_requested(&long), "answered once, not again");
}

#[test]
fn a_tenant_wakes_its_grants_only_when_what_they_read_of_it_changes() {
    use crate::crd::TenantStatus;
    let tenant = crate::controller::tenant::tests::tenant("Pro");
    let before = tenant_facts(&tenant);

    // Its own conditions and consent lines, written twice per onboarding: not news.
    let mut checking = tenant.clone();
    checking.status = Some(TenantStatus {
        conditions: conditions::merge(
            &[],
            vec![Desired::new(READY, Status::False, "CheckingConsents", "x")],
            Some(1),
            Timestamp::from_second(1_800_000_000).unwrap(),
        ),
        ..Default::default()
    });
    assert_eq!(tenant_facts(&checking), before);

    // Its Entra tenant id, from the status or the spec, its deletion, another object.
    let mut resolved = checking.clone();
    resolved.status.as_mut().unwrap().tenant_id =
        Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b".into());
    assert_ne!(tenant_facts(&resolved), before);
    let mut pinned = tenant.clone();
    pinned.spec.tenant_id = Some("3f2b8c1e-6a4d-4e0f-9b7a-2c5d8e1f4a6b".into());
    assert_ne!(tenant_facts(&pinned), before);
    let mut deleting = tenant.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert_ne!(tenant_facts(&deleting), before);
    let mut again = tenant.clone();
    again.metadata.uid = Some("9d1e0c55-7a31-4f62-b0a8-5e4c3d2b1a09".into());
    assert_ne!(tenant_facts(&again), before);
}

#[test]
fn a_consent_that_disappears_is_revoked_not_pending() {
    assert_eq!(next_state(None, CheckState::Pending), ConsentState::Pending);
    assert_eq!(
        next_state(Some(ConsentState::Pending), CheckState::Pending),
        ConsentState::Pending
    );
    assert_eq!(
        next_state(Some(ConsentState::Granted), CheckState::Pending),
        ConsentState::Revoked
    );
    assert_eq!(
        next_state(Some(ConsentState::Partial), CheckState::Pending),
        ConsentState::Revoked
    );
    assert_eq!(
        next_state(Some(ConsentState::Revoked), CheckState::Granted),
        ConsentState::Granted
    );
    assert_eq!(
        next_state(Some(ConsentState::Granted), CheckState::Unknown),
        ConsentState::Granted,
        "throttling keeps the state"
    );
    assert_eq!(next_state(None, CheckState::Unknown), ConsentState::Pending);
}

fn grant_at(name: &str, created: i64, state: Option<ConsentState>) -> Arc<ConsentGrant> {
    let mut g: ConsentGrant = serde_json::from_value(json!({
        "apiVersion": "recording.m365.io/v1alpha1",
        "kind": "ConsentGrant",
        "metadata": {"name": name, "namespace": "tenant-a"},
        "spec": {"tenantRef": "a", "consent": name, "appId": "00000000-0000-0000-0000-000000000001"}
    }))
    .unwrap();
    g.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
    g.status = state.map(|state| ConsentGrantStatus {
        state: Some(state),
        ..Default::default()
    });
    Arc::new(g)
}

#[test]
fn siblings_in_the_same_state_count_pending_checks_from_the_same_instant() {
    let a = grant_at("login", 1_000_001, None);
    let b = grant_at("directory", 1_000_000, None);
    let c = grant_at("recording", 999_000, Some(ConsentState::Granted));
    let siblings = vec![a.clone(), b.clone(), c.clone()];
    let earliest = Timestamp::from_second(1_000_000).unwrap();
    assert_eq!(shared_since(&a, &siblings), Some(earliest));
    assert_eq!(shared_since(&b, &siblings), Some(earliest));
    assert_eq!(
        shared_since(&c, &siblings),
        Some(Timestamp::from_second(999_000).unwrap()),
        "a sibling in another state keeps its own"
    );
}

#[test]
fn the_next_check_counts_from_the_shared_check_not_from_each_reconcile() {
    let checked = Timestamp::from_second(1_000_000).unwrap();
    let later = Timestamp::from_second(1_000_002).unwrap();
    assert_eq!(
        next_wait(checked, Duration::from_secs(30), later),
        Duration::from_secs(28)
    );
    assert_eq!(
        next_wait(checked, Duration::from_secs(1), later),
        Duration::from_millis(200),
        "never in the past"
    );
}

#[test]
fn a_first_check_pending_or_granted_has_no_event_but_every_change_has_one() {
    let grant: ConsentGrant = serde_json::from_value(serde_json::json!({
        "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
        "metadata": {"name": "recording", "namespace": "tenant-contoso"},
        "spec": {"tenantRef": "contoso", "consent": "recording",
                 "appId": "1b4e29c8-1111-4a7b-9c3e-5f6a7b8c9d0e"}
    }))
    .unwrap();
    let status = |state| ConsentGrantStatus {
        state: Some(state),
        ..Default::default()
    };
    assert_eq!(
        transition_event(&grant, None, &status(ConsentState::Pending)),
        None
    );
    assert_eq!(
        transition_event(&grant, None, &status(ConsentState::Granted)),
        None,
        "granted before the operator first looked: the Tenant's Ready Event says it"
    );
    assert_eq!(
        transition_event(&grant, None, &status(ConsentState::Partial)).map(|e| e.1),
        Some(reason::CONSENT_PARTIAL),
        "a problem found by the first check is news"
    );
    assert_eq!(
        transition_event(
            &grant,
            Some(ConsentState::Pending),
            &status(ConsentState::Granted)
        )
        .map(|e| e.1),
        Some(reason::CONSENT_GRANTED)
    );
    assert_eq!(
        transition_event(
            &grant,
            Some(ConsentState::Error),
            &status(ConsentState::Pending)
        )
        .map(|e| e.1),
        Some(reason::CONSENT_PENDING),
        "recovering from an error to pending is news"
    );
    assert_eq!(
        transition_event(
            &grant,
            Some(ConsentState::Granted),
            &status(ConsentState::Granted)
        ),
        None
    );
}

#[test]
fn pending_checks_double_the_interval() {
    let t0 = Timestamp::from_second(1_000_000).unwrap();
    let at = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
    let initial = Duration::from_secs(30);
    assert_eq!(consecutive_pending(t0, t0, initial), 0);
    assert_eq!(consecutive_pending(t0, at(30), initial), 1);
    assert_eq!(consecutive_pending(t0, at(90), initial), 2);
    assert_eq!(consecutive_pending(t0, at(210), initial), 3);
}

#[test]
fn a_due_grant_takes_checks_started_since_the_middle_of_its_wait() {
    let at = |s: i64| Some(Time(Timestamp::from_second(1_000_000 + s).unwrap()));
    let status = |last, next| ConsentGrantStatus {
        last_checked_at: last,
        next_check_at: next,
        ..Default::default()
    };
    assert_eq!(
        share_from(&status(at(0), at(300))),
        at(150).map(|t| t.0),
        "a pending grant waiting 5 minutes takes a check up to 2.5 minutes old"
    );
    assert_eq!(
        share_from(&status(at(0), at(6 * 3600))),
        at(3 * 3600).map(|t| t.0)
    );
    assert_eq!(
        share_from(&status(None, at(30))),
        at(30).map(|t| t.0),
        "without a last check only a check since the due instant"
    );
    assert_eq!(share_from(&status(at(40), at(30))), at(30).map(|t| t.0));
    assert_eq!(share_from(&status(at(0), None)), None);
}

const TENANT: &str = "00000013-0000-4000-8000-00000000beef";

/// A grant last checked at `last` and due at `due` (seconds from the start of
/// [`play`]), in `state`, created long before.
#[test]
fn granted_grants_leave_their_wake_up_to_the_tenant_and_the_rest_keep_their_own() {
    let tenant = crate::controller::tenant::tests::tenant("Essentials");
    let wait = Duration::from_secs(6 * 3600);
    let granted = scheduled("login", ConsentState::Granted, 0, 21_600);
    let pending = scheduled("recording", ConsentState::Pending, 0, 300);
    let status = |g: &Arc<ConsentGrant>| g.status.clone();

    // A granted consent hands its next check to its (living) Tenant…
    assert_eq!(
        come_back(status(&granted).as_ref(), Some(&tenant), wait),
        None
    );
    // …but keeps its own timer when there is no Tenant to wake it, or it is going away.
    assert_eq!(come_back(status(&granted).as_ref(), None, wait), Some(wait));
    let mut leaving = tenant.clone();
    leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
    assert_eq!(
        come_back(status(&granted).as_ref(), Some(&leaving), wait),
        Some(wait)
    );
    // Pending consents are polled by their own timers (seconds to minutes).
    let short = Duration::from_secs(300);
    assert_eq!(
        come_back(status(&pending).as_ref(), Some(&tenant), short),
        Some(short)
    );

    // The Tenant wakes the granted grants that are due and comes back for the next one;
    // pending grants are not its business.
    let later = scheduled("directory", ConsentState::Granted, 0, 30_000);
    let grants = [granted.clone(), pending, later.clone()];
    let at = |s: i64| Timestamp::from_second(1_000_000 + s).unwrap();
    let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(100));
    assert!(due.is_empty());
    assert_eq!(next, Some(Duration::from_secs(21_500)));
    let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(21_600));
    assert_eq!(due, [ObjectRef::from_obj(granted.as_ref())]);
    assert_eq!(next, Some(Duration::from_secs(8_400)));
    let (due, next) = crate::controller::tenant::grants_to_wake(&grants, at(40_000));
    assert_eq!(due.len(), 2);
    assert_eq!(next, None);
}

fn scheduled(name: &str, state: ConsentState, last: i64, due: i64) -> Arc<ConsentGrant> {
    let mut g = (*grant_at(name, 1_000_000 - 86_400, Some(state))).clone();
    let status = g.status.as_mut().unwrap();
    status.last_checked_at = Some(Time(Timestamp::from_second(1_000_000 + last).unwrap()));
    status.next_check_at = Some(Time(Timestamp::from_second(1_000_000 + due).unwrap()));
    Arc::new(g)
}

/// Plays the controller's scheduling rules for one tenant over `hours`: the grant due
/// first is reconciled at its `nextCheckAt`; it takes the tenant's last check when that
/// started since [`share_from`], else it starts a check; then its status is written as
/// the reconcile writes it ([`wait_after_check`], [`status_after_check`]) (through JSON, so times keep whole seconds as on the API
/// server). Each grant finds the state given beside it. Returns the tenant's checks and
/// the first grant's polls (new `lastCheckedAt`s).
fn play(grants: &mut [(Arc<ConsentGrant>, CheckState)], hours: i64) -> (u32, u32) {
    let polling = crate::config::PollingConfig::default();
    let start = Timestamp::from_second(1_000_000).unwrap();
    let end = start + SignedDuration::from_hours(hours);
    let due = |g: &ConsentGrant| g.status.as_ref().unwrap().next_check_at.clone().unwrap().0;
    let (mut last_check, mut checks, mut polls) = (None::<Timestamp>, 0, 0);
    loop {
        let i = (0..grants.len())
            .min_by_key(|i| due(&grants[*i].0))
            .unwrap();
        let (grant, found) = grants[i].clone();
        let now = due(&grant);
        if now > end {
            return (checks, polls);
        }
        let joinable = share_from(grant.status.as_ref().unwrap()).unwrap();
        let checked_at = match last_check {
            Some(started) if started >= joinable => started,
            _ => {
                checks += 1;
                last_check = Some(now);
                now
            }
        };
        let siblings: Vec<_> = grants.iter().map(|(g, _)| g.clone()).collect();
        let check = ConsentCheck {
            key: grant.spec.consent.clone(),
            app_id: grant.spec.app_id.clone(),
            state: found,
            granted: vec![],
            missing: vec![],
            message: String::new(),
            retry_after: None,
        };
        let wait = wait_after_check(&grant, &siblings, &check, TENANT, checked_at, now, &polling);
        let status = status_after_check(&grant, None, &check, now, wait);
        let mut next = (*grant).clone();
        next.status = Some(serde_json::from_value(serde_json::to_value(status).unwrap()).unwrap());
        if i == 0
            && next.status.as_ref().unwrap().last_checked_at
                != grant.status.as_ref().unwrap().last_checked_at
        {
            polls += 1;
        }
        grants[i].0 = Arc::new(next);
    }
}

#[test]
fn drifted_siblings_of_a_pending_tenant_join_one_check_per_poll() {
    use ConsentState::{Granted, Pending};
    // Directory granted, the rest pending at the longest interval (5 min); login drifted
    // 2.5 minutes - 1 s away from recording, instantMessages 20 s, the directory grant on
    // its own six-hour schedule.
    let mut grants = [
        (
            scheduled("recording", Pending, -297, 3),
            CheckState::Pending,
        ),
        (scheduled("login", Pending, -150, 152), CheckState::Pending),
        (
            scheduled("instantMessages", Pending, -280, 23),
            CheckState::Pending,
        ),
        (
            scheduled("directory", Granted, -4 * 3600, 2 * 3600),
            CheckState::Granted,
        ),
    ];
    let (checks, polls) = play(&mut grants, 24);
    assert!(
        (270..=320).contains(&polls),
        "{polls} polls of 5 min ± 10 % in a day"
    );
    assert_eq!(
        checks, polls,
        "one tenant check per poll, the directory grant's included"
    );
    let dues: std::collections::BTreeSet<_> = grants[..3]
        .iter()
        .map(|(g, _)| g.status.as_ref().unwrap().next_check_at.clone())
        .collect();
    assert_eq!(
        dues.len(),
        1,
        "the pending grants are on one schedule: {dues:?}"
    );
}

#[test]
fn granted_siblings_on_different_schedules_realign_to_four_checks_a_day() {
    use ConsentState::Granted;
    let mut grants = [
        (
            scheduled("recording", Granted, -3600, 5 * 3600),
            CheckState::Granted,
        ),
        (
            scheduled("login", Granted, -2 * 3600, 4 * 3600),
            CheckState::Granted,
        ),
        (
            scheduled("directory", Granted, -5 * 3600, 3600),
            CheckState::Granted,
        ),
        (
            scheduled("instantMessages", Granted, -100, 21_000),
            CheckState::Granted,
        ),
    ];
    let (checks, _) = play(&mut grants, 30 * 24);
    // 30 days of six hours ± 10 % (jitter): 109–133 checks.
    assert!((109..=134).contains(&checks), "{checks} checks in 30 days");
}

#[test]
fn only_grants_in_their_tenants_namespace_with_the_configured_app_are_checked() {
    let mut config = OperatorConfig::default();
    let recording_app = "8b0f7a52-0000-4000-8000-000000000003".to_string();
    config.consents.get_mut("recording").unwrap().app_id = recording_app.clone();
    let grant = |namespace: &str, consent: &str, app: &str| -> ConsentGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "recording.m365.io/v1alpha1", "kind": "ConsentGrant",
            "metadata": {"name": "x", "namespace": namespace},
            "spec": {"tenantRef": "contoso", "consent": consent, "appId": app}
        }))
        .unwrap()
    };
    assert_eq!(
        not_trusted(
            &grant("tenant-contoso", "recording", &recording_app.to_uppercase()),
            &config
        ),
        None
    );
    let elsewhere = not_trusted(&grant("default", "recording", &recording_app), &config).unwrap();
    assert!(
        elsewhere.contains(r#"checked only in the Tenant's namespace "tenant-contoso", and this one is in "default""#),
        "{elsewhere}"
    );
    let other_app = "0d1e2f30-4a5b-4c6d-8e7f-8091a2b3c4d5";
    let borrowed = not_trusted(&grant("tenant-contoso", "recording", other_app), &config).unwrap();
    assert!(
        borrowed.contains(&format!(
            "spec.appId {other_app:?} is not the application the operator configuration names for consent \"recording\""
        )),
        "{borrowed}"
    );
    let unknown = not_trusted(&grant("tenant-contoso", "payroll", other_app), &config).unwrap();
    assert!(unknown.contains("spec.consent \"payroll\""), "{unknown}");
}
