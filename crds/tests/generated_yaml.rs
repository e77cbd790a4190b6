//! The committed CRD YAML is exactly what the Rust types generate.

#[test]
fn committed_crd_yaml_matches_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, crd) in pulse_crds::crds() {
        let generated = pulse_crds::crd_yaml(&crd).expect("serialize the CRD");
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{file} is out of date with the types in crds/src: run `cargo run -p pulse-crds --bin crdgen` and commit the result"
        );
    }
}
