//! A consent checker configured for the Microsoft 365 simulator: the platform's `rec-*`
//! apps in their home tenant, Contoso and Fabrikam as customers.

use std::collections::HashMap;
use std::sync::Arc;

use recording_operator::config::{Mandatory, OperatorConfig, SecretRef};
use recording_operator::graph::{CheckState, ConsentChecker, ConsentSpec, TenantCheck};
use sim::m365::{M365Sim, Seed, TenantSeed, PLATFORM_CONSENTS};

use super::secrets::MapSecrets;

pub const HOME: &str = "9f8e7d6c-5b4a-4321-8fed-cba987654321";
pub const CONTOSO: &str = "c0275050-0000-4000-8000-00000000c0c0";
pub const FABRIKAM: &str = "fab41ca0-0000-4000-8000-00000000fabf";
pub const REDIRECT: &str = "https://operator.example/consent/callback";

pub struct World {
    pub sim: M365Sim,
    pub seed: Seed,
    pub config: OperatorConfig,
    pub checker: ConsentChecker,
}

pub fn seed() -> Seed {
    let mut seed = Seed::platform_default("rec", HOME, "platform.example", REDIRECT);
    seed.tenants.push(TenantSeed {
        id: CONTOSO.into(),
        display_name: Some("Contoso".into()),
        domains: vec!["contoso.example".into(), "contoso.onmicrosoft.com".into()],
    });
    seed.tenants.push(TenantSeed {
        id: FABRIKAM.into(),
        display_name: Some("Fabrikam".into()),
        domains: vec!["fabrikam.onmicrosoft.com".into()],
    });
    seed
}

pub async fn world() -> World {
    world_with(seed(), |_, _| {}).await
}

/// Starts the simulator and a checker configured for it; `adjust` may change the
/// configuration and the secrets before the checker is built.
pub async fn world_with(
    seed: Seed,
    adjust: impl FnOnce(&mut OperatorConfig, &mut HashMap<String, String>),
) -> World {
    let sim = M365Sim::start(seed.clone())
        .await
        .expect("simulator starts");
    let mut config = OperatorConfig {
        server_name: "rec".into(),
        consent_redirect_uri: Some(REDIRECT.into()),
        ..OperatorConfig::default()
    };
    config.cloud.authority_host = Some(sim.url());
    config.cloud.graph_endpoint = Some(sim.url());
    let mut secrets = HashMap::new();
    for (key, suffix, _, _) in PLATFORM_CONSENTS {
        let app = seed.app(&format!("rec-{suffix}")).expect("platform app");
        let consent = config.consents.get_mut(*key).expect("default consent");
        consent.app_id = app.app_id.clone();
        consent.client_secret = Some(SecretRef::Env(format!("{key}-secret")));
        secrets.insert(format!("{key}-secret"), app.secrets[0].value.clone());
    }
    adjust(&mut config, &mut secrets);
    let checker =
        ConsentChecker::new(&config, Arc::new(MapSecrets(secrets))).expect("valid configuration");
    World {
        sim,
        seed,
        config,
        checker,
    }
}

impl World {
    /// The mandatory consents of an Essentials (`pro == false`) or Pro tenant.
    pub fn specs(&self, pro: bool) -> Vec<ConsentSpec> {
        self.config
            .consents_for(pro)
            .into_iter()
            .filter(|(_, c)| c.mandatory != Mandatory::Never)
            .map(|(key, c)| ConsentSpec::from_config(key, c))
            .collect()
    }

    pub fn app_id(&self, key: &str) -> String {
        self.config.consents[key].app_id.clone()
    }

    /// The customer's Global admin consents to each of `specs`.
    pub fn grant_all(&self, tenant: &str, specs: &[ConsentSpec]) {
        for spec in specs {
            self.sim.grant_consent(tenant, &spec.app_id);
        }
    }

    /// An older consent of the directory app: everything but `Directory.Read.All`.
    pub fn grant_directory_without_directory_read(&self, tenant: &str) {
        self.sim.grant_partial(
            tenant,
            &self.app_id("directory"),
            &["User.Read.All", "Group.Read.All", "Application.Read.All"],
            &[],
        );
    }

    pub fn grant(&self, tenant: &str, key: &str) {
        self.sim.grant_consent(tenant, &self.app_id(key));
    }
}

pub fn state(check: &TenantCheck, key: &str) -> CheckState {
    check
        .get(key)
        .unwrap_or_else(|| panic!("no result for {key}"))
        .state
}

pub fn states(check: &TenantCheck) -> Vec<(String, CheckState)> {
    check
        .consents
        .iter()
        .map(|c| (c.key.clone(), c.state))
        .collect()
}

/// Asserts that every consent of a check is granted, showing them all when one is not.
#[track_caller]
pub fn assert_all_granted(check: &TenantCheck) {
    assert!(
        check
            .consents
            .iter()
            .all(|c| c.state == CheckState::Granted),
        "{:?}",
        check.consents
    );
}
