//! The API against its own OpenAPI document: a short, seeded schemathesis run of
//! server/tests/conformance.sh, as an admin and as a customer, with all of schemathesis'
//! checks (no 5xx, answers that match their schema, well-formed data accepted, malformed data
//! refused, no access without credentials). The seed and deterministic generation make the
//! run the same every time; the long run is `bash server/tests/conformance.sh 400 admin`.
//!
//! It needs python3 with venv, and PyPI once: the script keeps schemathesis in
//! target/schemathesis-venv.

use std::path::Path;
use std::process::Command;

/// Cases per operation: enough to reach every operation and its refusals, short enough for CI.
const EXAMPLES: &str = "8";
const SEED: &str = "20261203";

fn conformance(role: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(root.join("server/tests/conformance.sh"))
        .args([EXAMPLES, role, SEED])
        .env("ALLOT_BIN", env!("CARGO_BIN_EXE_allot"))
        .env("NO_COLOR", "1")
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "conformance as {role}:\n{text}");
    // schemathesis exits 0 without a case run if it found no operation: make sure it did.
    assert!(text.contains("passed"), "conformance as {role}:\n{text}");
}

#[test]
fn the_api_conforms_to_its_document_as_an_admin() {
    conformance("admin");
}

#[test]
fn the_api_conforms_to_its_document_as_a_customer() {
    conformance("customer");
}
