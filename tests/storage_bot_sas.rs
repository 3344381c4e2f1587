//! A recording bot's SAS, as the operator signs it, against Azurite: it writes and lists its
//! own container, and nothing else (another container, deleting, an expired token).

use std::time::{Duration, SystemTime};

use recording_operator::storage::sas::{
    account_name, container_sas, window, BOT_PERMISSIONS, SAS_PERIOD,
};
use secrecy::{ExposeSecret, SecretString};
use sim::azurite::{Azurite, AzuriteAccount, SasPermissions};

const VERSION: &str = "2025-11-05";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_sas_writes_its_own_container_and_nothing_else() {
    let azurite = Azurite::start_with_accounts(&["westeurope"])
        .await
        .expect("Azurite starts (run scripts/install-test-deps.sh first)");
    let endpoint = azurite.account_endpoint("westeurope").unwrap();
    let http = reqwest::Client::new();

    // The operator's containers of two tenants, made with the account SAS.
    let account_sas = azurite
        .account_sas(
            "westeurope",
            SasPermissions::OPERATOR,
            Duration::from_secs(3600),
        )
        .unwrap();
    for container in ["contoso", "fabrikam"] {
        let created = http
            .put(format!(
                "{endpoint}/{container}?restype=container&{account_sas}"
            ))
            .header("x-ms-version", VERSION)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }

    let key = SecretString::from(AzuriteAccount::derived("westeurope").unwrap().key);
    let account = account_name(&endpoint).unwrap();
    assert_eq!(account, "westeurope");
    let sas = container_sas(
        &account,
        &key,
        "contoso",
        BOT_PERMISSIONS,
        window(SystemTime::now()),
    )
    .unwrap();
    let sas = sas.expose_secret();
    let put = |container: &str, token: &str| {
        http.put(format!("{endpoint}/{container}/call-1.wav?{token}"))
            .header("x-ms-version", VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .body("RIFF....WAVE")
            .send()
    };

    let written = put("contoso", sas).await.unwrap();
    assert_eq!(written.status(), 201, "{}", written.text().await.unwrap());
    let listed = http
        .get(format!(
            "{endpoint}/contoso?restype=container&comp=list&{sas}"
        ))
        .header("x-ms-version", VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert!(listed.text().await.unwrap().contains("call-1.wav"));

    // Another tenant's container: refused.
    let other = put("fabrikam", sas).await.unwrap();
    assert_eq!(other.status(), 403, "{}", other.text().await.unwrap());
    // No delete permission: recordings are removed by the platform's retention only.
    let deleted = http
        .delete(format!("{endpoint}/contoso/call-1.wav?{sas}"))
        .header("x-ms-version", VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 403);
    // A token of a window long past: refused.
    let old = container_sas(
        &account,
        &key,
        "contoso",
        BOT_PERMISSIONS,
        window(SystemTime::now() - 3 * SAS_PERIOD),
    )
    .unwrap();
    let expired = put("contoso", old.expose_secret()).await.unwrap();
    assert_eq!(expired.status(), 403);
    // Signed with another key: refused.
    let forged = container_sas(
        &account,
        &SecretString::from(AzuriteAccount::derived("northeurope").unwrap().key),
        "contoso",
        BOT_PERMISSIONS,
        window(SystemTime::now()),
    )
    .unwrap();
    let refused = put("contoso", forged.expose_secret()).await.unwrap();
    assert_eq!(refused.status(), 403);
}
