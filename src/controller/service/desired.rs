//! The desired objects of a RecordingService: its bots (StatefulSets, their ConfigMaps,
//! Services, NetworkPolicy, PodDisruptionBudget, credentials Secret), a pure function of the
//! service, its tenant and the configuration.

use super::*;

// ---------------------------------------------------------------------------------------------
// The bots a service runs
// ---------------------------------------------------------------------------------------------

/// One recording bot of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotRole {
    /// The recording bot, `<name>-hue`.
    Primary,
    /// Pro only: the redundant recording bot, `<name>-hue-paired`, kept away from the first.
    Paired,
}

impl BotRole {
    /// `app.kubernetes.io/component` of the bot's objects.
    pub fn component(self) -> &'static str {
        match self {
            BotRole::Primary => "primary",
            BotRole::Paired => "paired",
        }
    }

    /// Name of the bot's StatefulSet (the primary's is also the service's PodDisruptionBudget's);
    /// its pods are `<name>-<ordinal>`.
    pub fn object_name(self, service: &str) -> String {
        match self {
            BotRole::Primary => format!("{service}-hue"),
            BotRole::Paired => format!("{service}-hue-paired"),
        }
    }

    /// The tenant's storage location the bot records to.
    pub fn location(self) -> &'static str {
        match self {
            BotRole::Primary => "default",
            BotRole::Paired => "paired",
        }
    }

    /// The platform consent whose application the bot signs in as (without an app registration).
    pub fn consent_key(self) -> &'static str {
        match self {
            BotRole::Primary => "recording",
            BotRole::Paired => "redundantRecording",
        }
    }
}

/// The bots a license runs: one for Essentials, a pair for Pro.
pub fn bot_roles(license: License) -> Vec<BotRole> {
    match license {
        License::Essentials => vec![BotRole::Primary],
        License::Pro => vec![BotRole::Primary, BotRole::Paired],
    }
}

/// The Secret the operator keeps a service's bot credentials in (platform client secrets,
/// storage SAS): `<service>-<bots.credentials.secretSuffix>`.
pub fn credentials_secret_name(service: &str, bots: &crate::config::BotsConfig) -> String {
    format!("{service}-{}", bots.credentials.secret_suffix)
}

/// The credentials Secret's key of a bot's platform client secret.
pub fn client_secret_entry(role: BotRole) -> String {
    format!("{}ClientSecret", role.component())
}

/// The credentials Secret's key of the SAS of a storage location (`default`, `paired`).
pub fn sas_entry(location_role: &str) -> String {
    format!("{location_role}Sas")
}

/// The key of the client secret inside the referenced Secret.
pub fn client_secret_key(registration: &AppRegistration) -> &str {
    registration
        .client_secret_ref
        .key
        .as_deref()
        .unwrap_or(DEFAULT_CLIENT_SECRET_KEY)
}

// ---------------------------------------------------------------------------------------------
// The desired objects: a pure function of the service, its tenant and the configuration
// ---------------------------------------------------------------------------------------------

/// Everything a recording service owns.
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    /// The instances' media addresses (not part of the configuration hash).
    pub media_config_map: ConfigMap,
    pub service: Service,
    /// Load-balancer mode: one per instance, first bot's then paired bot's.
    pub instance_services: Vec<Service>,
    pub network_policy: NetworkPolicy,
    /// One per bot, primary first.
    pub stateful_sets: Vec<StatefulSet>,
    /// One over every bot pod of the service.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
}

impl Children {
    /// The digest of every child's body, as applied (`status.appliedHash`). The credentials
    /// Secret is not in it: its version is in the bots' pod template.
    pub fn digest(&self) -> String {
        use crate::controller::apply::{digest, Body};
        let fixed: [&dyn Body; 5] = [
            &self.service_account,
            &self.config_map,
            &self.media_config_map,
            &self.service,
            &self.network_policy,
        ];
        let stamped = self.stamped_stateful_sets();
        digest(
            fixed
                .into_iter()
                .chain(self.instance_services.iter().map(|s| s as &dyn Body))
                .chain(stamped.iter().map(|s| s as &dyn Body))
                .chain(self.disruption_budgets.iter().map(|b| b as &dyn Body)),
        )
    }

    /// The bots as applied: with the digest annotation the rollout budget reads.
    pub fn stamped_stateful_sets(&self) -> Vec<StatefulSet> {
        self.stateful_sets
            .iter()
            .map(|s| {
                let mut s = s.clone();
                super::rollout::stamp(&mut s);
                s
            })
            .collect()
    }

    /// Takes every child in the digest as applied (see
    /// [`assume_applied`](crate::controller::apply::assume_applied)).
    pub fn assume_applied(&self, cache: &crate::controller::apply::AppliedCache) {
        use crate::controller::apply::assume_applied;
        assume_applied(cache, &self.service_account);
        assume_applied(cache, &self.config_map);
        assume_applied(cache, &self.media_config_map);
        assume_applied(cache, &self.service);
        assume_applied(cache, &self.network_policy);
        for service in &self.instance_services {
            assume_applied(cache, service);
        }
        for stateful_set in self.stamped_stateful_sets() {
            assume_applied(cache, &stateful_set);
        }
        for budget in &self.disruption_budgets {
            assume_applied(cache, budget);
        }
    }
}

/// Labels of every object of a service.
pub fn service_labels(service: &str, tenant: &str) -> BTreeMap<String, String> {
    let mut labels = owned_labels(tenant);
    labels.insert("app.kubernetes.io/name".into(), BOT_APP_NAME.into());
    labels.insert("app.kubernetes.io/instance".into(), service.into());
    labels
}

/// The labels selecting the pods of one bot (stable: a StatefulSet's selector is immutable).
pub(super) fn selector_labels(service: &str, role: Option<BotRole>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", BOT_APP_NAME),
        ("app.kubernetes.io/instance", service),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(role) = role {
        labels.insert(
            "app.kubernetes.io/component".into(),
            role.component().into(),
        );
    }
    labels
}

/// The StatefulSets' governing Service (each instance is `<pod>.<this>.<namespace>.svc`): the
/// webhook's headless Service over every bot pod of the service, draining ones included
/// ([`crate::webhook::headless_service`]), shared by the first and the paired bot.
pub fn governing_service_name(service: &str) -> String {
    crate::webhook::headless_service(service)
}

/// Computes the objects a valid service of `tenant` (whose Entra tenant id is `tenant_id`) owns.
/// `credentials_version` changes whenever a credential the pods read at start changes (the
/// app registration's Secret, the platform secret or SAS the operator copies); `addresses`
/// gives the public IP of each instance (by pod name) the configuration does not name.
pub fn desired_objects(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    credentials_version: Option<&str>,
    config: &OperatorConfig,
    addresses: &BTreeMap<String, String>,
) -> Children {
    desired_objects_with(
        service,
        tenant,
        tenant_id,
        credentials_version,
        config,
        addresses,
        None,
    )
}

/// [`desired_objects`], the bots' configuration naming the webhook certificate by its
/// thumbprint (a renewed certificate changes it, and so rolls the bots).
pub fn desired_objects_with(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    credentials_version: Option<&str>,
    config: &OperatorConfig,
    addresses: &BTreeMap<String, String>,
    certificate_thumbprint: Option<&str>,
) -> Children {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let labels = service_labels(&name, &tenant.name_any());
    let owner = owner_reference(service);
    let meta = |object_name: String, extra: Option<(&str, &str)>| {
        let mut labels = labels.clone();
        if let Some((k, v)) = extra {
            labels.insert(k.into(), v.into());
        }
        ObjectMeta {
            name: Some(object_name),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        }
    };
    let bots = &config.bots;

    let service_account = ServiceAccount {
        metadata: meta(format!("{name}-bot"), None),
        automount_service_account_token: Some(false),
        ..Default::default()
    };

    let bot_config = BotConfig {
        certificate_thumbprint: certificate_thumbprint.map(str::to_owned),
        ..bot_config(service, tenant, tenant_id, config)
    };
    let config_json =
        serde_json::to_string_pretty(&bot_config).expect("the bot configuration serializes");
    let config_hash = config_hash(&config_json, credentials_version);
    let config_map = ConfigMap {
        metadata: meta(format!("{name}-bot-config"), None),
        data: Some([(BOT_CONFIG_FILE.to_string(), config_json)].into()),
        ..Default::default()
    };

    let instances = instances(service, tenant.spec.license, bots, addresses);
    let media_config_map = media_config_map(&instances, meta(media_config_map_name(&name), None));
    let instance_services = instance_services(service, &instances, bots, |n| meta(n, None));

    let network_policy = NetworkPolicy {
        metadata: meta(format!("{name}-bot"), None),
        spec: Some(bot_network_policy(&name, bots)),
    };

    let roles = bot_roles(tenant.spec.license);
    let pro = roles.contains(&BotRole::Paired);
    let mut stateful_sets: Vec<StatefulSet> = roles
        .iter()
        .map(|&role| StatefulSet {
            metadata: meta(
                role.object_name(&name),
                Some(("app.kubernetes.io/component", role.component())),
            ),
            spec: Some(bot_stateful_set_spec(&PodInputs {
                service,
                role,
                pro,
                config: &bot_config,
                bots,
                config_hash: &config_hash,
                storage: config.storage.as_ref(),
            })),
            ..Default::default()
        })
        .collect();
    // Where and with which token the bots report the tenant's first policy invite.
    for stateful_set in &mut stateful_sets {
        if let Some(pod) = stateful_set
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
        {
            add_report_token(pod, &name, &namespace, config);
        }
    }

    Children {
        service_account,
        config_map,
        media_config_map,
        service: Service {
            metadata: meta(format!("{name}-hue"), None),
            spec: Some(signaling_service_spec(&name)),
            ..Default::default()
        },
        instance_services,
        network_policy,
        stateful_sets,
        disruption_budgets: vec![PodDisruptionBudget {
            metadata: meta(BotRole::Primary.object_name(&name), None),
            spec: Some(disruption_budget_spec(&name)),
            ..Default::default()
        }],
    }
}

/// The pods' configuration: the bot config and the version of the credentials the pods read
/// once at start (environment variables from Secrets): a rotated credential rolls the bots.
fn config_hash(config_json: &str, credentials_version: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config_json.as_bytes());
    if let Some(version) = credentials_version {
        hasher.update(b"\0client-secret:");
        hasher.update(version.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// The bots' in-cluster signalling Service.
fn signaling_service_spec(service: &str) -> ServiceSpec {
    ServiceSpec {
        selector: Some(selector_labels(service, None)),
        ports: Some(vec![ServicePort {
            name: Some("signaling".into()),
            port: SIGNALING_PORT,
            target_port: Some(IntOrString::String("signaling".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// One budget over every bot pod of the service: one pod at a time may be disrupted, so a
/// drain never takes a Pro tenant's first and paired bot at once, and a single replica never
/// blocks a node forever. (One budget, not one per bot: the eviction API refuses to evict a
/// pod that more than one budget covers.)
fn disruption_budget_spec(service: &str) -> PodDisruptionBudgetSpec {
    PodDisruptionBudgetSpec {
        max_unavailable: Some(IntOrString::Int(1)),
        selector: Some(LabelSelector {
            match_labels: Some(selector_labels(service, None)),
            ..Default::default()
        }),
        unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        ..Default::default()
    }
}

/// The claim a bot of `role` records to: the name in its location's `pvc://<namespace>/<claim>`
/// endpoint, when the tenant's storage is on claims.
pub(super) fn recordings_claim(config: &BotConfig, role: BotRole) -> Option<String> {
    config
        .storage
        .iter()
        .find(|s| s.role == role.location())
        .and_then(|s| s.endpoint.strip_prefix("pvc://"))
        .and_then(|path| path.rsplit_once('/'))
        .map(|(_, claim)| claim.to_string())
}

/// A bot's StatefulSet: stable ordinals (`<bot>-0`, `<bot>-1`, ...) for the per-instance
/// media ports and callback routes, started in parallel, rolled one instance at a time (each
/// stopping instance drains its calls in `preStop` before the next one goes).
pub(super) fn bot_stateful_set_spec(inputs: &PodInputs) -> StatefulSetSpec {
    let name = inputs.service.name_any();
    StatefulSetSpec {
        replicas: Some(inputs.service.spec.bot.replicas.unwrap_or(1)),
        service_name: Some(governing_service_name(&name)),
        pod_management_policy: Some("Parallel".into()),
        selector: LabelSelector {
            match_labels: Some(selector_labels(&name, Some(inputs.role))),
            ..Default::default()
        },
        update_strategy: Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                max_unavailable: Some(IntOrString::Int(1)),
                partition: Some(0),
            }),
        }),
        revision_history_limit: Some(5),
        template: bot_pod_template(inputs),
        ..Default::default()
    }
}
