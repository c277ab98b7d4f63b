//! The container image's files, checked without a Docker engine: deploy/check.sh runs hadolint
//! on the Dockerfile and `docker-compose config` on compose.yaml (it installs both if needed).

use std::path::Path;
use std::process::Command;

#[test]
fn the_dockerfile_lints_clean_and_compose_yaml_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(root.join("deploy/check.sh"))
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("hadolint: Dockerfile clean"), "{text}");
    assert!(text.contains("compose.yaml valid"), "{text}");
    // The image's health check is the binary's own command.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(r#"CMD ["allot", "ready""#),
        "{dockerfile}"
    );
}
