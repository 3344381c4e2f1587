//! How Teams reaches a service's bots: the Services behind the calling webhook and, for a
//! service with its own app registration, its Ingress and certificate. A pure function of the
//! service, its tenant and the configuration ([`webhook_objects`]), and the shell that applies
//! them ([`provision_webhook`]). Names and routes: [`crate::webhook`].
//!
//! - `<name>-bots`: headless, over every bot pod, `publishNotReadyAddresses`: the bots'
//!   StatefulSets name it as `serviceName`, so each instance has a DNS name
//!   (`<pod>.<name>-bots.<namespace>.svc`) that stays while it drains its calls. The router
//!   reaches instances by these names.
//! - `<name>-cb-p`, `<name>-cb-pp`: ClusterIP over the ready pods of the first and the paired
//!   bot: where a new call (the calling webhook) goes.
//! - With an Ingress only: `<name>-cb-p<n>`, `<name>-cb-pp<n>`: ClusterIP over instance `n`
//!   (ready or not), the backends of the per-instance notification routes.
//! - With a known app registration and `webhook.serviceHost`: the Ingress `<name>-webhook`,
//!   TLS from a cert-manager `Certificate` `<name>-webhook` (Secret `<name>-webhook-tls`) when
//!   the cluster serves cert-manager's API and `webhook.tls.issuerRef` is set, else from the
//!   Secret `webhook.tls.secretName`.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::CustomResource;
use schemars::JsonSchema;

use super::*;
use crate::config::WebhookConfig;
use crate::webhook as names;

/// cert-manager's `Certificate` (`cert-manager.io/v1`), the fields the operator sets.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    pub dns_names: Vec<String>,
    pub issuer_ref: CertificateIssuer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<CertificatePrivateKey>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateIssuer {
    pub name: String,
    pub kind: String,
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePrivateKey {
    pub rotation_policy: String,
}

/// The webhook objects of one service.
#[derive(Clone, Debug, Default)]
pub struct WebhookObjects {
    /// Headless first, then per bot its calling Service, then the instances' Services.
    pub services: Vec<Service>,
    pub ingress: Option<Ingress>,
    pub certificate: Option<Certificate>,
    /// The public host of the service's own webhook, when it has one.
    pub host: Option<String>,
    /// Why the webhook cannot have a certificate, when it cannot (an Event says so).
    pub tls_problem: Option<String>,
}

impl WebhookObjects {
    /// The digest of the objects applied (part of the service's `status.appliedHash`).
    pub fn digest(&self) -> String {
        use crate::controller::apply::{digest, Body};
        digest(
            self.services
                .iter()
                .map(|s| s as &dyn Body)
                .chain(self.ingress.iter().map(|i| i as &dyn Body))
                .chain(self.certificate.iter().map(|c| c as &dyn Body)),
        )
    }

    /// Takes every object as applied (see
    /// [`assume_applied`](crate::controller::apply::assume_applied)).
    pub fn assume_applied(&self, cache: &crate::controller::apply::AppliedCache) {
        use crate::controller::apply::assume_applied;
        for service in &self.services {
            assume_applied(cache, service);
        }
        if let Some(ingress) = &self.ingress {
            assume_applied(cache, ingress);
        }
        if let Some(certificate) = &self.certificate {
            assume_applied(cache, certificate);
        }
    }
}

/// Computes the webhook objects of a valid service. `certificates_served`: whether the
/// cluster serves cert-manager's `Certificate` API (discovery).
pub fn webhook_objects(
    service: &RecordingService,
    tenant: &Tenant,
    config: &OperatorConfig,
    certificates_served: bool,
) -> WebhookObjects {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let labels = service_labels(&name, &tenant.name_any());
    let owner = owner_reference(service);
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let signaling = || {
        Some(vec![ServicePort {
            name: Some("signaling".into()),
            port: SIGNALING_PORT,
            target_port: Some(IntOrString::String("signaling".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }])
    };
    let roles = bot_roles(tenant.spec.license);
    let replicas = u32::try_from(service.spec.bot.replicas.unwrap_or(1).max(1)).unwrap_or(1);

    let mut services = vec![Service {
        metadata: meta(names::headless_service(&name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name, None)),
            ports: signaling(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    for &role in &roles {
        services.push(Service {
            metadata: meta(names::calling_service(&name, role.component())),
            spec: Some(ServiceSpec {
                selector: Some(selector_labels(&name, Some(role))),
                ports: signaling(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let webhook = config.webhook.as_ref();
    let host = match (&service.spec.app_registration, webhook) {
        (Some(_), Some(w)) => w.service_host_for(&name, &namespace, &tenant.name_any()),
        _ => None,
    };
    let Some((host, webhook)) = host.zip(webhook) else {
        return WebhookObjects {
            services,
            ..Default::default()
        };
    };

    let mut paths = Vec::new();
    let backend = |service_name: String| IngressBackend {
        service: Some(IngressServiceBackend {
            name: service_name,
            port: Some(ServiceBackendPort {
                name: Some("signaling".into()),
                number: None,
            }),
        }),
        ..Default::default()
    };
    for &role in &roles {
        let component = role.component();
        paths.push(HTTPIngressPath {
            path: Some(names::calling_path(component)),
            path_type: "Exact".into(),
            backend: backend(names::calling_service(&name, component)),
        });
        for ordinal in 0..replicas {
            let instance = names::instance_service(&name, component, ordinal);
            let mut selector = selector_labels(&name, Some(role));
            selector.insert(
                "statefulset.kubernetes.io/pod-name".into(),
                names::pod_name(&role.object_name(&name), ordinal),
            );
            services.push(Service {
                metadata: meta(instance.clone()),
                spec: Some(ServiceSpec {
                    publish_not_ready_addresses: Some(true),
                    selector: Some(selector),
                    ports: signaling(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            paths.push(HTTPIngressPath {
                path: Some(names::instance_path(component, ordinal)),
                path_type: "Prefix".into(),
                backend: backend(instance),
            });
        }
    }

    let (secret_name, certificate, tls_problem) =
        tls_source(webhook, &name, &host, certificates_served);
    let certificate = certificate.map(|spec| Certificate {
        metadata: meta(format!("{name}-webhook")),
        spec,
    });
    let mut ingress_meta = meta(format!("{name}-webhook"));
    if !webhook.annotations.is_empty() {
        ingress_meta.annotations = Some(webhook.annotations.clone());
    }
    let ingress = Ingress {
        metadata: ingress_meta,
        spec: Some(IngressSpec {
            ingress_class_name: webhook.ingress_class_name.clone(),
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![host.clone()]),
                secret_name: Some(secret_name),
            }]),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    WebhookObjects {
        services,
        ingress: Some(ingress),
        certificate,
        host: Some(host),
        tls_problem,
    }
}

/// The Secret the Ingress takes its certificate from, the Certificate filling it (when
/// cert-manager is used), and why there is no certificate source, if there is none.
fn tls_source(
    webhook: &WebhookConfig,
    service: &str,
    host: &str,
    certificates_served: bool,
) -> (String, Option<CertificateSpec>, Option<String>) {
    let own_secret = format!("{service}{}", names::CERTIFICATE_SECRET_SUFFIX);
    match (&webhook.tls.issuer_ref, &webhook.tls.secret_name) {
        (Some(issuer), _) if certificates_served => (
            own_secret.clone(),
            Some(CertificateSpec {
                secret_name: own_secret,
                dns_names: vec![host.to_string()],
                issuer_ref: CertificateIssuer {
                    name: issuer.name.clone(),
                    kind: issuer.kind.clone(),
                    group: issuer.group.clone(),
                },
                private_key: Some(CertificatePrivateKey {
                    rotation_policy: "Always".into(),
                }),
            }),
            None,
        ),
        (_, Some(secret)) => (secret.clone(), None, None),
        (Some(_), None) => (
            own_secret.clone(),
            None,
            Some(format!("webhook.tls.issuerRef is set but the cluster does not serve cert-manager's Certificate API (cert-manager.io/v1): install cert-manager or set webhook.tls.secretName; the Ingress names the Secret {own_secret:?}, which nothing fills")),
        ),
        (None, None) => (
            own_secret.clone(),
            None,
            Some(format!("webhook.tls names no certificate; the Ingress names the Secret {own_secret:?}, which nothing fills")),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The shell: discovery of cert-manager, apply, clean-up
// ---------------------------------------------------------------------------------------------

/// How long an answer of discovery about cert-manager's API is trusted.
const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// What the webhook shell remembers: whether the cluster serves cert-manager's `Certificate`
/// API, asked of discovery at most once a minute (cert-manager installed later is noticed
/// then), and per service the webhook objects last pruned against (pruning reads the
/// namespace's Services, so it runs once per process and change, not every reconcile).
#[derive(Default)]
pub struct WebhookMemo {
    checked: Mutex<Option<(Instant, bool)>>,
    pruned: Mutex<HashMap<String, u64>>,
}

impl WebhookMemo {
    /// Forgets a deleted service.
    pub fn forget(&self, key: &str) {
        self.pruned.lock().expect("prune memo lock").remove(key);
    }

    pub async fn served(&self, client: &kube::Client) -> bool {
        if let Some((at, served)) = *self.checked.lock().expect("discovery lock") {
            if at.elapsed() < DISCOVERY_TTL {
                return served;
            }
        }
        let gvk = kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
        let served = match kube::discovery::pinned_kind(client, &gvk).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(kube::Error::Discovery(_)) => false,
            Err(e) => {
                // Unknown: keep the last answer (none yet: no Certificate this time) and ask
                // again next reconcile.
                tracing::debug!(error = %e, "cannot discover cert-manager's API");
                return self
                    .checked
                    .lock()
                    .expect("discovery lock")
                    .is_some_and(|(_, s)| s);
            }
        };
        *self.checked.lock().expect("discovery lock") = Some((Instant::now(), served));
        served
    }
}

/// Applies the webhook objects and deletes the instance Services and Ingress the service no
/// longer needs (fewer replicas, Pro → Essentials, no longer its own app registration).
pub(super) async fn provision_webhook(
    service: &RecordingService,
    objects: &WebhookObjects,
    memo: &WebhookMemo,
    ctx: &Context,
) -> Result<()> {
    let client = &ctx.client;
    for svc in &objects.services {
        apply_in(client, svc, &ctx.caches.applied).await?;
    }
    if let Some(certificate) = &objects.certificate {
        apply_in(client, certificate, &ctx.caches.applied).await?;
    }
    if let Some(ingress) = &objects.ingress {
        apply_in(client, ingress, &ctx.caches.applied).await?;
    }
    if let Some(problem) = &objects.tls_problem {
        ctx.events
            .publish(
                service,
                true,
                "WebhookCertificateMissing",
                "Reconcile",
                problem.clone(),
            )
            .await;
    }
    let key = super::super::object_key(service);
    let names: Vec<String> = objects.services.iter().map(|s| s.name_any()).collect();
    let fingerprint = crate::hash64(&(names, objects.ingress.is_some(), service.uid()));
    if memo.pruned.lock().expect("prune memo lock").get(&key) == Some(&fingerprint) {
        return Ok(());
    }
    prune(service, objects, ctx).await?;
    memo.pruned
        .lock()
        .expect("prune memo lock")
        .insert(key, fingerprint);
    Ok(())
}

/// Deletes the service's callback Services and webhook Ingress that are no longer desired.
async fn prune(service: &RecordingService, objects: &WebhookObjects, ctx: &Context) -> Result<()> {
    let name = service.name_any();
    let wanted: BTreeSet<String> = objects.services.iter().map(|s| s.name_any()).collect();
    let callback = format!("{name}-cb-");
    let is_callback = |s: &Service| s.name_any().starts_with(&callback);
    super::prune::delete_unwanted_services(service, &wanted, is_callback, ctx).await?;
    if objects.ingress.is_none() {
        let ingresses: Api<Ingress> =
            Api::namespaced(ctx.client.clone(), &service.namespace().unwrap_or_default());
        if let Some(ingress) = ingresses.get_opt(&format!("{name}-webhook")).await? {
            if super::prune::owned_by(&ingress.metadata, service) {
                super::prune::delete_seen(&ingresses, &ingress).await?;
                forget(&ctx.caches.applied, &ingress);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(app_registration: bool, replicas: i32) -> RecordingService {
        let mut s: RecordingService = serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "RecordingService",
            "metadata": {"name": "main", "namespace": "tenant-contoso", "uid": "u-1"},
            "spec": {"tenantRef": "contoso", "shortName": "Rec", "licensedUsers": 10,
                     "bot": {"replicas": replicas}}
        }))
        .unwrap();
        if app_registration {
            s.spec.app_registration = Some(
                serde_json::from_value(json!({
                    "tenantId": "5b0e7d3a-2c4f-4a8e-b1d6-7e9f0a2c4b6d",
                    "clientId": "6d2f9a41-3b5c-4e7d-8f10-a2b3c4d5e6f7",
                    "clientSecretRef": {"name": "app"}
                }))
                .unwrap(),
            );
        }
        s
    }

    fn tenant(license: &str) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "recording.m365.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "contoso"},
            "spec": {"customerName": "Contoso", "domain": "contoso.onmicrosoft.com",
                     "shortName": "contoso", "contactEmails": ["ops@example.com"],
                     "adminUpns": ["admin@contoso.onmicrosoft.com"], "license": license,
                     "includedUsers": 10, "storage": {"location": "westeurope"},
                     "retention": {"days": 30}}
        }))
        .unwrap()
    }

    fn config(issuer: bool, secret: bool) -> OperatorConfig {
        OperatorConfig {
            webhook: Some(WebhookConfig {
                ingress_class_name: Some("nginx".into()),
                platform_host: Some("calls.example.com".into()),
                service_host: Some("{service}.{tenant}.bots.example.com".into()),
                tls: crate::config::WebhookTls {
                    secret_name: secret.then(|| "wildcard-tls".into()),
                    issuer_ref: issuer.then(|| crate::config::IssuerRef {
                        name: "letsencrypt".into(),
                        kind: "ClusterIssuer".into(),
                        group: "cert-manager.io".into(),
                    }),
                },
                annotations: Default::default(),
            }),
            ..Default::default()
        }
    }

    fn names(objects: &WebhookObjects) -> Vec<String> {
        objects.services.iter().map(|s| s.name_any()).collect()
    }

    #[test]
    fn platform_mode_gets_the_services_the_router_reaches_and_no_ingress() {
        let objects = webhook_objects(
            &service(false, 2),
            &tenant("Pro"),
            &config(true, false),
            true,
        );
        assert_eq!(names(&objects), ["main-bots", "main-cb-p", "main-cb-pp"]);
        assert!(objects.ingress.is_none() && objects.certificate.is_none());
        let headless = objects.services[0].spec.as_ref().unwrap();
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        let paired = objects.services[2].spec.as_ref().unwrap();
        assert_eq!(
            paired.selector.as_ref().unwrap()["app.kubernetes.io/component"],
            "paired"
        );
    }

    #[test]
    fn an_own_app_registration_gets_an_ingress_with_a_route_per_instance_and_a_certificate() {
        let objects = webhook_objects(&service(true, 2), &tenant("Pro"), &config(true, true), true);
        assert_eq!(
            names(&objects),
            [
                "main-bots",
                "main-cb-p",
                "main-cb-pp",
                "main-cb-p0",
                "main-cb-p1",
                "main-cb-pp0",
                "main-cb-pp1"
            ]
        );
        let instance = objects.services[6].spec.as_ref().unwrap();
        assert_eq!(
            instance.selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"],
            "main-hue-paired-1"
        );
        assert_eq!(instance.publish_not_ready_addresses, Some(true));
        let ingress = objects.ingress.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(ingress.ingress_class_name.as_deref(), Some("nginx"));
        let rule = &ingress.rules.as_ref().unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("main.contoso.bots.example.com"));
        let routes: Vec<(String, String, String)> = rule
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| {
                (
                    p.path.clone().unwrap(),
                    p.path_type.clone(),
                    p.backend.service.as_ref().unwrap().name.clone(),
                )
            })
            .collect();
        assert_eq!(
            routes[0],
            (
                "/api/calling/primary".into(),
                "Exact".into(),
                "main-cb-p".into()
            )
        );
        assert_eq!(
            routes[2],
            (
                "/api/calling/primary/1".into(),
                "Prefix".into(),
                "main-cb-p1".into()
            )
        );
        assert_eq!(
            routes[3],
            (
                "/api/calling/paired".into(),
                "Exact".into(),
                "main-cb-pp".into()
            )
        );
        let tls = &ingress.tls.as_ref().unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("main-webhook-tls"));
        let certificate = objects.certificate.as_ref().unwrap();
        assert_eq!(certificate.spec.secret_name, "main-webhook-tls");
        assert_eq!(
            certificate.spec.dns_names,
            ["main.contoso.bots.example.com"]
        );
        assert_eq!(certificate.spec.issuer_ref.kind, "ClusterIssuer");
        assert!(objects.tls_problem.is_none());
    }

    #[test]
    fn without_cert_manager_the_configured_secret_is_used_or_the_gap_is_named() {
        let essentials = webhook_objects(
            &service(true, 1),
            &tenant("Essentials"),
            &config(true, true),
            false,
        );
        assert!(essentials.certificate.is_none());
        let tls = &essentials
            .ingress
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .tls
            .as_ref()
            .unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("wildcard-tls"));
        assert_eq!(names(&essentials), ["main-bots", "main-cb-p", "main-cb-p0"]);
        assert!(essentials.tls_problem.is_none());

        let gap = webhook_objects(
            &service(true, 1),
            &tenant("Essentials"),
            &config(true, false),
            false,
        );
        assert!(gap.certificate.is_none());
        assert!(gap.tls_problem.as_deref().unwrap().contains("cert-manager"));
    }
}
