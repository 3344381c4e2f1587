//! The alert rules and the dashboard as files: `promtool check rules` and `promtool test rules`
//! (Debian's `prometheus` package, installed by scripts/install-test-deps.sh) with series that
//! fire and do not fire each alert, one source for the chart and deploy/, and a runbook section
//! in docs/operations.md for every alert.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const RULES: &str = "charts/recording-operator/files/recording-operator.rules.yaml";
const DASHBOARD: &str = "charts/recording-operator/files/recording-operator-dashboard.json";

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (Debian's `prometheus` package; scripts/install-test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn rules() -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(repo().join(RULES)).unwrap()).unwrap()
}

fn alerts() -> Vec<Value> {
    rules()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_every_alert_fires_when_it_should() {
    let checked = promtool(&["check", "rules", RULES], &repo());
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts().len())),
        "{checked}"
    );
    let tested = promtool(
        &["test", "rules", "rules.test.yaml"],
        &repo().join("tests/monitoring"),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Each alert is exercised by the unit tests, firing at least once.
    let tests = std::fs::read_to_string(repo().join("tests/monitoring/rules.test.yaml")).unwrap();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "{name} never fires in tests/monitoring/rules.test.yaml"
        );
    }
}

#[test]
fn every_alert_names_what_it_is_about_and_links_its_runbook_section() {
    let docs = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let a = &alert["annotations"];
        assert!(
            a["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}"
        );
        let description = a["description"].as_str().unwrap();
        let about = alert["expr"].as_str().unwrap();
        for label in ["tenant", "consent", "owner", "controller", "kind"] {
            if about.contains(&format!("by ({label}")) || about.contains(&format!(", {label})")) {
                assert!(
                    description.contains(&format!("$labels.{label}")),
                    "{name}'s description names the {label}"
                );
            }
        }
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap()),
            "{name}"
        );
        // A link to a heading of docs/operations.md, as GitHub makes its anchors.
        let url = a["runbook_url"].as_str().unwrap();
        let anchor = url.strip_prefix("docs/operations.md#").unwrap();
        let heading = docs
            .lines()
            .filter(|l| l.starts_with('#'))
            .find(|l| github_anchor(l) == anchor);
        assert!(
            heading.is_some(),
            "{name}: no heading for #{anchor} in docs/operations.md"
        );
    }
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to `-`, punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn deploy_holds_the_same_rules_and_dashboard_as_the_chart() {
    for file in [RULES, DASHBOARD] {
        let name = Path::new(file).file_name().unwrap();
        let copy = repo().join("deploy/monitoring").join(name);
        assert_eq!(
            std::fs::read_to_string(repo().join(file)).unwrap(),
            std::fs::read_to_string(&copy).unwrap_or_default(),
            "{} differs from {file}: copy it over",
            copy.display()
        );
    }
}

#[test]
fn the_dashboard_covers_the_funnel_and_the_operator() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "recording-operator");
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for title in [
        "Onboarding funnel",
        "Tenants by health",
        "Consents by state",
        "Time to Ready (percentiles)",
        "Graph and token requests",
        "Graph throttling",
        "Reconcile latency (p90)",
        "Reconciles and errors",
        "Client secrets closest to expiry",
    ] {
        assert!(titles.contains(&title), "no panel {title:?} in {titles:?}");
    }
    // Every query goes to the data source the importer picks.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        assert!(!panel["targets"].as_array().unwrap().is_empty());
    }
}
