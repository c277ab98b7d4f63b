//! `allot bench drop` end to end in its short mode: an offline shop served by a child server,
//! and a running server given by `--url`. Each run's own invariant checks must pass; what is
//! asserted here is that they ran and what they found, not how fast anything was.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use allot_engine::testkit::{self, ADMIN_EMAIL};

use support::Server;
use support::shop::{self, log_in, log_in_customers, wait_ready};

/// The checks every drop runs (offline adds the data directory's verification).
const CHECKS: [&str; 8] = [
    "the stock was readable at every sample",
    "nothing oversold",
    "remaining + reserved + sold = stock at every sample",
    "no customer holds or owns more than the limit",
    "every hold was sold or released after its deadline",
    "units sold = units of paid orders",
    "every acknowledged order and payment is kept",
    "only documented answers (no 5xx, no failed connection)",
];

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allot"))
        .args(["bench", "drop"])
        .args(args)
        .env("ALLOT_LOG", "warn")
        .output()
        .expect("allot runs")
}

/// `bench` off the async workers, for a test that serves the shop on them.
async fn bench_aside(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || bench(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .expect("allot ran")
}

/// The JSON figures of a run that must have passed.
fn passed_figures(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench drop failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

fn check_names(figures: &Value) -> Vec<String> {
    figures["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| {
            assert_eq!(check["passed"], true, "{check}");
            check["name"].as_str().expect("a name").to_string()
        })
        .collect()
}

fn count(figures: &Value, step: &str, status: u64, kind: &str) -> u64 {
    figures["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .filter(|a| a["step"] == step && a["status"] == status && a["type"] == kind)
        .map(|a| a["count"].as_u64().expect("a count"))
        .sum()
}

#[test]
fn an_offline_drop_sells_out_exactly_and_draws_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("drop.html");
    let data = dir.path().join("db");
    let output = bench(&[
        "--customers",
        "40",
        "--stock",
        "15",
        "--rate",
        "150",
        "--ramp-to",
        "300",
        "--duration",
        "2",
        "--hold-seconds",
        "2",
        "--seed",
        "7",
        "--json",
        "--report",
        report.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let figures = passed_figures(&output);
    assert_eq!(figures["passed"], true, "{figures:#}");
    let mut expected: Vec<String> = CHECKS.iter().map(|c| c.to_string()).collect();
    expected.push("the data directory verifies clean (allot db verify)".into());
    assert_eq!(check_names(&figures), expected);

    // A ramp from 150 to 300 a second over 2 s is about 450 attempts, each answered.
    let attempts = figures["attempts"].as_u64().unwrap();
    assert!((400..=500).contains(&attempts), "{attempts} attempts");
    let answered: u64 = figures["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "place")
        .map(|a| a["count"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, attempts);
    assert_eq!(figures["latency_ms"]["place"]["count"], attempts);
    // 15 units for 40 customers at a few hundred attempts a second: the drop sells out, and
    // customers past their limit are refused.
    let placed = count(&figures, "place", 201, "");
    assert_eq!(figures["placements"], placed);
    assert!(placed >= 8, "{placed} placed");
    assert!(count(&figures, "place", 409, "sold_out") > 0, "{figures:#}");
    assert!(count(&figures, "pay", 200, "") > 0, "{figures:#}");
    let sold = figures["final_stock"]["sold"].as_u64().unwrap();
    assert!((1..=15).contains(&sold), "{sold} sold");
    assert_eq!(figures["final_stock"]["reserved"], 0);
    assert!(figures["latency_ms"]["checkout"]["count"].as_u64().unwrap() > 0);

    // The report: the figures and three plots, inline, nothing fetched.
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "{html}");
    for caption in [
        "Placement latency",
        "Answers a second",
        "Stock over time",
        "every check passed",
    ] {
        assert!(html.contains(caption), "{caption} missing");
    }
    for fetch in ["<script", "<link", "src=", "@import"] {
        assert!(!html.contains(fetch), "the report loads something: {fetch}");
    }

    // The directory was kept (--data-dir) and serves a second drop with a crowd of its own.
    let again = bench(&[
        "--customers",
        "5",
        "--stock",
        "3",
        "--rate",
        "50",
        "--duration",
        "1",
        "--hold-seconds",
        "1",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(passed_figures(&again)["passed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_on_a_running_server_checks_it_through_the_api() {
    const CUSTOMERS: usize = 6;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    // The shop's catalog is not empty, so no demo catalog is added; the drop makes its own.
    shop::prepare(&data, CUSTOMERS, testkit::general("Tote", 39_000, 5)).await;
    let mut server = Server::start(
        &data,
        &["--ip-rate-limit", "0", "--reservation-ttl", "2"],
        "warn",
    );
    let http = shop::http_client(Duration::from_secs(30));
    wait_ready(&http, &server.base, "bench").await;
    let tokens = log_in_customers(&http, &server.base, CUSTOMERS).await;
    let file = root.path().join("tokens.txt");
    std::fs::write(&file, tokens.join("\n")).unwrap();
    let admin = log_in(&http, &server.base, ADMIN_EMAIL).await;

    let base = server.base.clone();
    let args = [
        "--url",
        base.as_str(),
        "--tokens",
        file.to_str().unwrap(),
        "--admin-token",
        admin.as_str(),
        "--stock",
        "4",
        "--limit",
        "1",
        "--rate",
        "60",
        "--duration",
        "1",
        "--pay-share",
        "1",
        "--json",
    ];
    let output = bench_aside(&args).await;
    let figures = passed_figures(&output);
    assert_eq!(figures["mode"], "remote");
    assert_eq!(figures["plan"]["customers"], CUSTOMERS);
    assert_eq!(check_names(&figures), CHECKS);
    // A limit of 1 for 6 customers: whoever holds a unit is refused a second.
    assert!(count(&figures, "place", 409, "purchase_limit_exceeded") > 0);
    assert!(figures["final_stock"]["sold"].as_u64().unwrap() <= 4);

    // A second drop on the product the first made, now on sale: no admin token, the stock,
    // limit and opening read from the API, the first drop's orders counted too.
    let product = figures["product"].as_str().unwrap().to_string();
    let args = [
        "--url",
        base.as_str(),
        "--tokens",
        file.to_str().unwrap(),
        "--product",
        product.as_str(),
        "--rate",
        "40",
        "--duration",
        "1",
        "--json",
    ];
    let output = bench_aside(&args).await;
    let again = passed_figures(&output);
    assert_eq!(again["product"], product.as_str());
    assert_eq!(check_names(&again), CHECKS);
    assert_eq!(again["plan"]["stock"], 4);
    assert_eq!(again["plan"]["per_customer_limit"], 1);
    server.stop();
    support::assert_db_verify(&data, "after the drop");
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    for (args, words) in [
        (&["--rate", "0"][..], "--rate must be above 0"),
        (&["--pay-share", "1.5"][..], "--pay-share must be 0 to 1"),
        (&["--duration", "NaN"][..], "--duration must be above 0"),
        (&["--url", "http://127.0.0.1:9"][..], "--tokens"),
        (
            &["--url", "http://127.0.0.1:9", "--tokens", "t.txt"][..],
            "--admin-token",
        ),
        (&["--product", "prd_1"][..], "--url"),
        (&["--tokens", "t.txt"][..], "--url"),
    ] {
        let output = bench(args);
        assert!(!output.status.success(), "{args:?} ran");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}
