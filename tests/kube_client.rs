//! The operator's Kubernetes client against the Kubernetes simulator: one HTTP/2 connection
//! for every request and watch, and watches that are not being read do not stall the rest.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchParams};
use sim::kube::{KubeSim, KubeSimConfig};

async fn operator_client(kube: &KubeSim) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    recording_operator::kube_client::build(config, 8).expect("the client builds")
}

fn config_map(name: &str, bytes: usize) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"blob": "x".repeat(bytes)},
    }))
    .unwrap()
}

/// A controller whose queue is full stops reading its watch, and kube-runtime's shared
/// reflectors then stop reading theirs. Over HTTP/2 the unread events of those watches hold
/// flow-control credit of the one connection every request shares; with hyper's default
/// connection window (5 MiB) three such watches were enough to stop every other answer,
/// the requests that would have drained the queues included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_nobody_reads_leave_room_for_other_requests() {
    let kube = KubeSim::start(KubeSimConfig::default()).await.unwrap();
    let client = operator_client(&kube).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Four watches, opened and then left unread.
    let mut watches = Vec::new();
    for _ in 0..4 {
        watches.push(
            maps.watch(&WatchParams::default(), "0")
                .await
                .unwrap()
                .boxed(),
        );
    }
    // About 8 MiB of events for each, written by another client.
    let writer: Api<ConfigMap> = Api::namespaced(kube.client().await, "default");
    for i in 0..64 {
        writer
            .create(
                &PostParams::default(),
                &config_map(&format!("blob-{i:02}"), 128 * 1024),
            )
            .await
            .unwrap();
    }

    // The operator's client still gets answers.
    let answer = tokio::time::timeout(Duration::from_secs(10), maps.get("blob-00")).await;
    let map = answer
        .expect("an answer while four watches are not being read")
        .unwrap();
    assert_eq!(map.data.unwrap()["blob"].len(), 128 * 1024);

    // The watches were not dropped: what they hold is still there to be read.
    let first = tokio::time::timeout(Duration::from_secs(10), watches[0].next())
        .await
        .expect("the unread watch still delivers")
        .expect("an event")
        .unwrap();
    assert!(
        matches!(first, kube::api::WatchEvent::Added(_)),
        "{first:?}"
    );

    let connections = kube.connections();
    assert_eq!(connections.http2, 1, "{connections:?}");
}

#[test]
fn a_tls_server_name_that_is_no_host_name_is_refused_by_name() {
    let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    config.root_cert = Some(vec![]);
    config.tls_server_name = Some("api server!".into());
    let error = recording_operator::kube_client::build(config, 8)
        .err()
        .expect("an invalid tls-server-name is refused");
    assert_eq!(
        error.to_string(),
        "the kubeconfig's tls-server-name \"api server!\" is not a valid server name"
    );
}
