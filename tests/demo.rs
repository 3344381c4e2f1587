//! The README's first command: `recording-operator demo` onboards every example tenant.

use std::process::Command;

#[test]
fn demo_brings_every_example_tenant_to_ready() {
    let dir = std::env::temp_dir().join(format!("demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("demo.kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_recording-operator"))
        .args([
            "demo",
            "--exit-when-ready",
            "--timeout",
            "120s",
            "--consent-pause",
            "1s",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("Every example tenant is Ready."),
        "{stdout}"
    );
    // Each example tenant's Quick Start link, on the operator's public listener.
    for name in ["contoso", "fabrikam"] {
        let line = stdout
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(&format!("{name}: http://127.0.0.1:"))
            })
            .unwrap_or_else(|| panic!("no Quick Start link of {name} in\n{stdout}"));
        assert!(line.contains("/quickstart/"), "{line}");
    }

    // The Quick Start pages are behind sign-in; the demo names who may sign in.
    assert!(
        stdout.contains(&format!(
            "Sign-in on the Quick Start pages: admin@contoso.onmicrosoft.com, globaladmin@contoso.onmicrosoft.com, admin@fabrikam.onmicrosoft.com, globaladmin@fabrikam.onmicrosoft.com (password {}); a Tenant's page admits only its spec.adminUpns",
            recording_operator::demo::DEMO_PASSWORD
        )),
        "{stdout}"
    );

    // The last table shows both example tenants OK and Ready, with their license types.
    let last_table = stdout.rsplit("NAME ").next().unwrap();
    let row = |name: &str| {
        last_table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{last_table}"))
            .to_string()
    };
    let contoso = row("contoso");
    let fabrikam = row("fabrikam");
    assert!(
        contoso.contains("Audio Recording")
            && contoso.contains(" OK ")
            && contoso.ends_with("True"),
        "{contoso}"
    );
    assert!(
        fabrikam.contains("Audio & Redundancy")
            && fabrikam.contains(" OK ")
            && fabrikam.ends_with("True"),
        "{fabrikam}"
    );
    assert!(
        stdout.contains("Warning"),
        "the tenants were Warning before the admin consented"
    );

    // The contacts' e-mails went to MailDev on loopback and are recorded in status.
    assert!(
        stdout.contains("SMTP on MailDev, web UI http://127.0.0.1:"),
        "{stdout}"
    );
    for tenant in ["contoso", "fabrikam"] {
        for kind in ["OnboardingStarted", "TenantLive"] {
            assert!(
                stdout.contains(&format!("  {tenant}: {kind} Sent to ")),
                "{tenant} {kind}:\n{stdout}"
            );
        }
    }
}
