//! docs/crd-reference.md is exactly what `crddoc` generates from the types.

#[test]
fn crd_reference_is_current() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = dir.path().join("crd-reference.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crddoc"))
        .arg(&generated)
        .output()
        .expect("run crddoc");
    assert!(out.status.success(), "crddoc: {}", String::from_utf8_lossy(&out.stderr));
    let generated = std::fs::read_to_string(generated).expect("generated reference");
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/crd-reference.md"),
    )
    .unwrap_or_default();
    assert!(
        committed == generated,
        "docs/crd-reference.md is out of date with the types in crds/src: run `make crds` and commit the result"
    );
    for field in ["`spec.buffer.partitions`", "`spec.steps[].event`", "`status.conditions`"] {
        assert!(generated.contains(field), "the reference lists no {field}");
    }
}
