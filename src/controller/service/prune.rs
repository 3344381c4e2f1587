//! Deleting what a service no longer wants: only objects it owns, and each delete conditional
//! on the uid seen, so an object made again under the same name in the meantime stays.

use kube::api::{ListParams, Preconditions};

use super::*;

/// Whether `service` owns the object of `meta` (an owner reference with its uid).
pub(super) fn owned_by(meta: &ObjectMeta, service: &RecordingService) -> bool {
    let uid = service.uid();
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| Some(&r.uid) == uid.as_ref())
}

/// Deletes `object` if it is still the one seen (same uid); `false` when it was already gone
/// or has been replaced.
pub(super) async fn delete_seen<K>(api: &Api<K>, object: &K) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: object.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&object.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the Services of the service's bots (found by its labels) that it owns, that
/// `kind` picks and that are not `wanted` by name, and forgets them as applied.
pub(super) async fn delete_unwanted_services(
    service: &RecordingService,
    wanted: &BTreeSet<String>,
    kind: impl Fn(&Service) -> bool,
    ctx: &Context,
) -> Result<()> {
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &service.namespace().unwrap_or_default());
    let selector = format!(
        "app.kubernetes.io/name={BOT_APP_NAME},app.kubernetes.io/instance={},app.kubernetes.io/managed-by=recording-operator",
        service.name_any()
    );
    for existing in api.list(&ListParams::default().labels(&selector)).await? {
        if owned_by(&existing.metadata, service)
            && kind(&existing)
            && !wanted.contains(&existing.name_any())
        {
            delete_seen(&api, &existing).await?;
            forget(&ctx.caches.applied, &existing);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::kube::{KubeSim, KubeSimConfig};

    fn media_service(name: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 20100}]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_delete_spares_an_object_made_again_under_the_same_name() {
        let sim = KubeSim::start(KubeSimConfig::default()).await.unwrap();
        let api: Api<Service> = Api::namespaced(sim.client().await, "default");
        let post = Default::default();
        let seen = api
            .create(&post, &media_service("rec-hue-1-media"))
            .await
            .unwrap();
        // Deleted and made again by someone else since it was listed.
        api.delete("rec-hue-1-media", &DeleteParams::default())
            .await
            .unwrap();
        let again = api
            .create(&post, &media_service("rec-hue-1-media"))
            .await
            .unwrap();
        assert_ne!(seen.uid(), again.uid());

        assert!(
            !delete_seen(&api, &seen).await.unwrap(),
            "the new one is not the one seen"
        );
        assert_eq!(api.get("rec-hue-1-media").await.unwrap().uid(), again.uid());
        assert!(delete_seen(&api, &again).await.unwrap());
        assert!(api.get_opt("rec-hue-1-media").await.unwrap().is_none());
        assert!(!delete_seen(&api, &again).await.unwrap(), "already gone");
    }
}
