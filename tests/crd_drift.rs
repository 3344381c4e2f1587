//! `crds/` and the Helm chart's `crds/` are exactly what `recording-operator crdgen` prints.

use std::path::Path;

use recording_operator::crd::{crd_file_name, crd_yaml, crds};

fn assert_folder_matches(folder: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crd in crds() {
        let path = root.join(folder).join(crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -- crdgen --out-dir {folder}`",
                path.display()
            )
        });
        assert!(
            on_disk == crd_yaml(&crd),
            "{} drifted from the Rust types; run `cargo run -- crdgen --out-dir {folder}`",
            path.display()
        );
    }
    let files = std::fs::read_dir(root.join(folder)).unwrap().count();
    assert_eq!(
        files,
        crds().len(),
        "{folder} holds exactly one file per CRD"
    );
}

#[test]
fn crds_folder_matches_crdgen() {
    assert_folder_matches("crds");
}

#[test]
fn chart_crds_match_crdgen() {
    assert_folder_matches("charts/recording-operator/crds");
}

#[test]
fn crds_are_in_the_recording_category_with_short_names() {
    for crd in crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["recording".to_string()][..])
        );
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
        let version = &crd.spec.versions[0];
        assert!(version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some());
        assert!(version
            .additional_printer_columns
            .as_ref()
            .is_some_and(|c| c.len() >= 3));
    }
}
