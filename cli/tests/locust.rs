//! The Python traffic simulation still matches the API: a few seconds of loadtest/run.sh
//! --smoke (Locust, every journey of loadtest/locustfile.py) against a real server, with no
//! failed request; then the shop verifies clean and nothing was oversold.

mod support;

use std::process::Command;
use std::time::Duration;

use allot_engine::testkit::{self, ADMIN_EMAIL};

use support::shop::{self, log_in, log_in_customers, wait_ready};
use support::{Server, assert_db_verify};

const CUSTOMERS: usize = 8;
const STOCK: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crowd_of_the_locust_journeys_meets_no_undocumented_answer() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    let drop = shop::prepare(
        &data,
        CUSTOMERS,
        testkit::general("Sneaker 01", 129_000, STOCK),
    )
    .await;
    let mut server = Server::start(&data, &["--ip-rate-limit", "0"], "warn");
    let http = shop::http_client(Duration::from_secs(30));
    wait_ready(&http, &server.base, "locust").await;
    let tokens = log_in_customers(&http, &server.base, CUSTOMERS).await;
    let file = root.path().join("tokens.txt");
    std::fs::write(&file, tokens.join("\n")).unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .args([
            "--smoke",
            "--host",
            &server.base,
            "--drop",
            &drop,
            "--tokens",
        ])
        .arg(&file)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "locust:\n{text}");
    // Every journey ran: its requests are in the summary.
    for name in [
        "/api/v1/orders",
        "/products/{id}/stock",
        "/me/wishlist/{id}",
        "/orders/{id}",
    ] {
        assert!(text.contains(name), "{name} never requested:\n{text}");
    }

    let admin = log_in(&http, &server.base, ADMIN_EMAIL).await;
    let units = shop::stock(&http, &server.base, &admin, &drop).await;
    assert_eq!(
        units.remaining + units.reserved + units.sold,
        u64::from(STOCK),
        "{units:?}"
    );
    server.stop();
    assert_db_verify(&data, "after the locust crowd");
}
