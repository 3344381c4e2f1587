//! The workload shell's own reads and writes: the bots' credentials Secret, the instances'
//! public addresses, instance Services no longer needed, and the retirement of the bot
//! Deployments earlier versions created.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::ByteString;
use secrecy::{ExposeSecret, SecretString};

use super::prune::{delete_seen, delete_unwanted_services, owned_by};
use super::*;
use crate::config::MediaMode;

/// What the shell remembers per service (by object key).
#[derive(Default)]
pub(super) struct Memory {
    /// The instance Services last applied; a service not in here has its Services listed once.
    instance_services: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Services whose Deployments of earlier versions are known to be gone.
    retired: Mutex<BTreeSet<String>>,
}

impl Memory {
    pub(super) fn forget(&self, key: &str) {
        self.instance_services
            .lock()
            .expect("workload memory")
            .remove(key);
        self.retired.lock().expect("workload memory").remove(key);
    }
}

/// The credentials a service's bots get from the operator's Secret: key → value. Never shown.
pub(super) struct BotCredentials(BTreeMap<String, SecretString>);

impl std::fmt::Debug for BotCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Reads the credentials the bots need from the operator: in platform mode (no app
/// registration) each bot's platform application client secret, from where the configuration's
/// `consents.<key>.clientSecret` points; and, when its location's account has a signing key,
/// each bot's SAS for its own container.
pub(super) async fn bot_credentials(
    service: &RecordingService,
    tenant: &Tenant,
    tenant_id: &str,
    sctx: &ServiceContext,
) -> Result<BotCredentials> {
    let ctx = sctx.shared.as_ref();
    let mut entries = BTreeMap::new();
    if service.spec.app_registration.is_none() {
        for role in bot_roles(tenant.spec.license) {
            let key = role.consent_key();
            let reference = ctx
                .config
                .consents
                .get(key)
                .and_then(|c| c.client_secret.as_ref())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "consents.{key}.clientSecret: required for the platform's {} bot to sign in",
                        role.component()
                    ))
                })?;
            entries.insert(
                client_secret_entry(role),
                read_secret(ctx, reference).await?,
            );
        }
    }
    // Each bot's SAS for its own container, signed with its account's key.
    let bot_config = bot_config(service, tenant, tenant_id, &ctx.config);
    for role in bot_roles(tenant.spec.license) {
        let Some((account, container)) =
            bot_sas_source(&bot_config, role, ctx.config.storage.as_ref())
        else {
            continue;
        };
        let reference = account.signing_key.as_ref().expect("a signing key");
        let key = read_secret(ctx, reference).await?;
        let name = crate::storage::sas::account_name(&account.endpoint).ok_or_else(|| {
            Error::Config(format!(
                "storage.accounts: no account name in endpoint {:?}",
                account.endpoint
            ))
        })?;
        let sas = crate::storage::sas::container_sas(
            &name,
            &key,
            &container,
            crate::storage::sas::BOT_PERMISSIONS,
            crate::storage::sas::window(std::time::SystemTime::now()),
        )
        .map_err(|e| Error::Config(format!("storage.accounts signingKey: {e}")))?;
        entries.insert(sas_entry(role.location()), sas);
    }
    Ok(BotCredentials(entries))
}

/// A secret the configuration points at (the error names the reference, never a value).
async fn read_secret(
    ctx: &crate::controller::Context,
    reference: &crate::config::SecretRef,
) -> Result<SecretString> {
    ctx.checker
        .tokens()
        .secrets()
        .get(reference)
        .await
        .map_err(|e| Error::Config(e.to_string()))
}

/// A digest standing for the credentials the pods read at start (never the values): the app
/// registration Secret's version and the copied credentials.
pub(super) fn credentials_version(
    app_secret_version: Option<&str>,
    credentials: &BotCredentials,
) -> Option<String> {
    if app_secret_version.is_none() && credentials.0.is_empty() {
        return None;
    }
    let mut hasher = Sha256::new();
    if let Some(version) = app_secret_version {
        hasher.update(b"app-registration:");
        hasher.update(version.as_bytes());
    }
    for (key, value) in &credentials.0 {
        hasher.update(b"\0");
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        hasher.update(value.expose_secret().as_bytes());
    }
    Some(format!("{:x}", hasher.finalize()))
}

/// Applies the service's credentials Secret (none needed: nothing written). `as_desired`:
/// the service's `status.appliedHash` vouches for it (its version is in the bots' pod
/// template), so it is taken as applied.
pub(super) async fn apply_credentials(
    service: &RecordingService,
    children: &Children,
    credentials: BotCredentials,
    as_desired: bool,
    sctx: &ServiceContext,
) -> Result<()> {
    if credentials.0.is_empty() {
        return Ok(());
    }
    let ctx = sctx.shared.as_ref();
    let name = credentials_secret_name(&service.name_any(), &ctx.config.bots);
    let mut metadata = children.service_account.metadata.clone();
    metadata.name = Some(name);
    let secret = Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(
            credentials
                .0
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose_secret().as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    if as_desired {
        crate::controller::apply::assume_applied(&ctx.caches.applied, &secret);
    }
    apply_in(&ctx.client, &secret, &ctx.caches.applied).await?;
    Ok(())
}

/// The public IP of each instance the configuration does not give: in load-balancer mode
/// without a static IP, the address assigned to its Service; in host-networking mode, the
/// `ExternalIP` of its pod's node.
pub(super) async fn observe_addresses(
    service: &RecordingService,
    tenant: &Tenant,
    sctx: &ServiceContext,
) -> Result<BTreeMap<String, String>> {
    let ctx = sctx.shared.as_ref();
    let bots = &ctx.config.bots;
    let ns = service.namespace().unwrap_or_default();
    let mut found = BTreeMap::new();
    for instance in instances(service, tenant.spec.license, bots, &BTreeMap::new()) {
        if instance.public_ip.is_some() {
            continue;
        }
        let address = match bots.media.mode {
            MediaMode::LoadBalancer => {
                let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&format!("{}-media", instance.pod))
                    .await?
                    .and_then(|s| s.status?.load_balancer?.ingress?.into_iter().next())
                    .and_then(|i| i.ip.or(i.hostname))
            }
            MediaMode::HostNetwork => node_public_ip(&ctx.client, &ns, &instance.pod).await?,
        };
        if let Some(address) = address {
            found.insert(instance.pod, address);
        }
    }
    Ok(found)
}

/// Node annotation a platform sets to a node's instance-level public IP (clouds such as AKS
/// do not list that address among the node's addresses).
pub const NODE_PUBLIC_IP_ANNOTATION: &str = "recording.m365.io/public-ip";

/// The public IP of the node a pod runs on: its [`NODE_PUBLIC_IP_ANNOTATION`], else its
/// `ExternalIP` address.
async fn node_public_ip(client: &kube::Client, ns: &str, pod: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Some(node_name) = pods.get_opt(pod).await?.and_then(|p| p.spec?.node_name) else {
        return Ok(None);
    };
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes.get_opt(&node_name).await?.and_then(|n| {
        n.annotations()
            .get(NODE_PUBLIC_IP_ANNOTATION)
            .cloned()
            .or_else(|| {
                n.status?
                    .addresses?
                    .into_iter()
                    .find(|a| a.type_ == "ExternalIP")
                    .map(|a| a.address)
            })
    }))
}

/// Some instance does not know its public IP yet.
pub(super) fn addresses_pending(children: &Children) -> bool {
    let Some(file) = children
        .media_config_map
        .data
        .as_ref()
        .and_then(|d| d.get(INSTANCES_FILE))
    else {
        return false;
    };
    serde_json::from_str::<BTreeMap<String, Instance>>(file)
        .map(|m| m.values().any(|i| i.public_ip.is_none()))
        .unwrap_or(false)
}

/// Deletes the instance Services of instances no longer there (fewer replicas, Pro →
/// Essentials, another exposure mode). Looked for when the set changes, and once per service
/// and process.
pub(super) async fn remove_stale_instance_services(
    service: &RecordingService,
    children: &Children,
    sctx: &ServiceContext,
) -> Result<()> {
    let ctx = sctx.shared.as_ref();
    let key = crate::controller::object_key(service);
    let wanted: BTreeSet<String> = children
        .instance_services
        .iter()
        .map(|s| s.name_any())
        .collect();
    if sctx
        .workload
        .instance_services
        .lock()
        .expect("workload memory")
        .get(&key)
        == Some(&wanted)
    {
        return Ok(());
    }
    let is_instance =
        |s: &Service| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    delete_unwanted_services(service, &wanted, is_instance, ctx).await?;
    sctx.workload
        .instance_services
        .lock()
        .expect("workload memory")
        .insert(key, wanted);
    Ok(())
}

/// Earlier versions ran each bot as a Deployment of the same name. Once the bot's StatefulSet
/// has all its instances ready, the service's old Deployment is deleted (only if the service
/// owns it; the delete is conditional on its uid), so recording goes on through the change.
/// Looked for on each reconcile until the bots have been ready once with none left.
pub(super) async fn retire_deployments(
    service: &RecordingService,
    bots: &[BotStatus],
    sctx: &ServiceContext,
) -> Result<()> {
    let ctx = sctx.shared.as_ref();
    let key = crate::controller::object_key(service);
    if sctx
        .workload
        .retired
        .lock()
        .expect("workload memory")
        .contains(&key)
    {
        return Ok(());
    }
    let ns = service.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    // Looked for until every bot has been ready once with no old Deployment left.
    let mut all_gone = bots.iter().all(|b| b.ready >= b.desired);
    for role in [BotRole::Primary, BotRole::Paired] {
        let name = role.object_name(&service.name_any());
        let Some(old) = api.get_opt(&name).await? else {
            continue;
        };
        if !owned_by(&old.metadata, service) {
            continue;
        }
        let replaced = bots
            .iter()
            .find(|b| b.name == name)
            .is_none_or(|b| b.ready >= b.desired);
        if !replaced {
            all_gone = false;
            continue;
        }
        if delete_seen(&api, &old).await? {
            ctx.events
                .publish(
                    service,
                    false,
                    "BotMigrated",
                    "Reconcile",
                    format!("Deployment {name} replaced by its StatefulSet, deleted"),
                )
                .await
        }
    }
    if all_gone {
        sctx.workload
            .retired
            .lock()
            .expect("workload memory")
            .insert(key);
    }
    Ok(())
}
