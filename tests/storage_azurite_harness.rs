//! The Azurite harness itself: it starts a real emulator, and the SAS tokens it mints are
//! accepted (or, for the wrong account or a missing permission, refused) by Azurite exactly as
//! Azure would.

use std::time::Duration;

use sim::azurite::{Azurite, SasPermissions, DEV_ACCOUNT};

const HOUR: Duration = Duration::from_secs(3600);

async fn status_of(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("Azurite answers");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, code)
}

#[tokio::test]
async fn account_and_container_sas_tokens_are_honoured_per_account() {
    let azurite = Azurite::start_with_accounts(&["westeurope", "northeurope"])
        .await
        .expect("Azurite starts (run scripts/install-test-deps.sh first)");
    let http = reqwest::Client::new();
    let west = azurite.account_endpoint("westeurope").unwrap();
    let west_sas = azurite
        .account_sas("westeurope", SasPermissions::OPERATOR, HOUR)
        .unwrap();

    // Create a container with the account SAS, then list it with a read-only container SAS.
    let (status, _) = status_of(
        http.put(format!("{west}/recordings?restype=container&{west_sas}"))
            .header("x-ms-version", "2025-11-05"),
    )
    .await;
    assert_eq!(status, 201);
    let listing = azurite
        .container_sas_url("westeurope", "recordings", SasPermissions::READ_LIST, HOUR)
        .unwrap();
    let (status, _) = status_of(
        http.get(format!("{listing}&restype=container&comp=list"))
            .header("x-ms-version", "2025-11-05"),
    )
    .await;
    assert_eq!(status, 200);

    // A read-only container SAS cannot delete the container.
    let (status, code) = status_of(
        http.delete(format!("{listing}&restype=container"))
            .header("x-ms-version", "2025-11-05"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (403, "AuthorizationPermissionMismatch")
    );

    // Another account's SAS does not open this account: the keys differ. (Azure answers
    // AuthenticationFailed for a bad signature; Azurite 3.37 answers AuthorizationFailure.)
    let north_sas = azurite
        .account_sas("northeurope", SasPermissions::OPERATOR, HOUR)
        .unwrap();
    let (status, code) = status_of(
        http.get(format!("{west}/recordings?restype=container&{north_sas}"))
            .header("x-ms-version", "2025-11-05"),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "AuthorizationFailure"));

    // The development account is always there.
    let dev = azurite.account_endpoint(DEV_ACCOUNT).unwrap();
    let dev_sas = azurite
        .account_sas(DEV_ACCOUNT, SasPermissions::READ_LIST, HOUR)
        .unwrap();
    let (status, _) = status_of(
        http.get(format!("{dev}?comp=list&{dev_sas}"))
            .header("x-ms-version", "2025-11-05"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stop_and_start_again_keeps_port_and_data() {
    let mut azurite = Azurite::start().await.expect("Azurite starts");
    let http = reqwest::Client::new();
    let dev = azurite.account_endpoint(DEV_ACCOUNT).unwrap();
    let sas = azurite
        .account_sas(DEV_ACCOUNT, SasPermissions::OPERATOR, HOUR)
        .unwrap();
    let container = format!("{dev}/kept?restype=container&{sas}");
    let (status, _) = status_of(http.put(&container).header("x-ms-version", "2025-11-05")).await;
    assert_eq!(status, 201);

    azurite.stop().await;
    assert!(!azurite.is_running());
    let refused = http.get(&container).send().await;
    assert!(refused.unwrap_err().is_connect());

    azurite.start_again().await.expect("Azurite starts again");
    assert!(azurite.is_running());
    let (status, _) = status_of(http.get(&container).header("x-ms-version", "2025-11-05")).await;
    assert_eq!(status, 200, "the container survives a restart");
}
