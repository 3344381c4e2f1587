//! Many objects through one watch and paginated lists: nothing lost, order kept. Prints the
//! throughput it saw (for the record; nothing here asserts on time).

mod kube_support;

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube_support::*;

const N: usize = 500;

#[tokio::test]
async fn a_watch_sees_every_create_in_order_and_pages_cover_the_list() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client().await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();

    let started = Instant::now();
    for i in 0..N {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i:04}"));
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let created = started.elapsed();

    let mut seen = Vec::new();
    while seen.len() < N {
        match events
            .try_next()
            .await
            .unwrap()
            .expect("the watch stays open")
        {
            WatchEvent::Added(cm) => seen.push(cm.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<String> = (0..N).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(seen, expected);

    let listed = Instant::now();
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(100);
    loop {
        let page = api.list(&params).await.unwrap();
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, expected);
    eprintln!(
        "{N} creates in {created:?} ({:.0}/s); {N} objects listed in pages of 100 in {:?}",
        N as f64 / created.as_secs_f64(),
        listed.elapsed()
    );
    sim.shutdown().await;
}
