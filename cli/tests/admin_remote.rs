//! `allot admin …` against a running `allot serve`, as an operator uses it: the real binary
//! twice over (the server, and each command as a child process), the session kept in a
//! config directory of the test's own, and the shop's state read back over HTTP.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use allot_engine::testkit::{self, ADMIN_EMAIL, PASSWORD, cards::APPROVED};

mod support;

use support::shop::{self, card_body, log_in, order_body, request, wait_ready};
use support::{ALLOT, Server};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `allot admin ARGS…` against `base`, with the session kept under `config`.
fn admin(config: &Path, base: &str, args: &[&str]) -> Output {
    Command::new(ALLOT)
        .arg("admin")
        .args(args)
        .env("ALLOT_URL", base)
        .env("ALLOT_CONFIG_DIR", config)
        .env("ALLOT_ADMIN_PASSWORD", PASSWORD)
        .env_remove("ALLOT_TOKEN")
        .env("ALLOT_LOG", "warn")
        .output()
        .expect("run allot admin")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command that must succeed; answers its standard output.
fn ok(config: &Path, base: &str, args: &[&str]) -> String {
    let output = admin(config, base, args);
    assert!(
        output.status.success(),
        "allot admin {args:?}: {}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// Runs a command with `--json`; answers what it printed, parsed.
fn ok_json(config: &Path, base: &str, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let printed = ok(config, base, &with_json);
    serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{args:?} printed {printed:?}: {e}"))
}

/// Runs a command that must fail; answers its standard error.
fn refused(config: &Path, base: &str, args: &[&str]) -> String {
    let output = admin(config, base, args);
    assert!(
        !output.status.success(),
        "allot admin {args:?} succeeded: {}",
        stdout(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_shop_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    let config = root.path().join("config");
    let tote = shop::prepare(&data, 1, testkit::general("Canvas Tote", 19_000, 50)).await;
    let mut server = Server::start(&data, &["--ip-rate-limit", "0"], "warn");
    let base = server.base.clone();
    let http = shop::http_client(REQUEST_TIMEOUT);
    wait_ready(&http, &base, "admin").await;

    // Without a session or a token, a command says how to get one, and changes nothing.
    let stderr = refused(&config, &base, &["products", "list"]);
    assert!(stderr.contains("allot admin login"), "{stderr}");
    // A customer is not let in.
    let stderr = refused(
        &config,
        &base,
        &["login", "--email", &shop::customer_email(0)],
    );
    assert!(stderr.contains("is not an admin"), "{stderr}");

    let said = ok(&config, &base, &["login", "--email", ADMIN_EMAIL]);
    assert!(said.contains("logged in"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.join("sessions.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the session file is the user's alone");
    }

    // Products: from flags, and two from a TOML file.
    let made = ok_json(
        &config,
        &base,
        &[
            "products", "create", "--name", "Mug", "--price", "9000", "--stock", "30",
        ],
    );
    let mug = made[0]["id"].as_str().unwrap().to_string();
    assert_eq!(made[0]["remaining"], 30);
    let file = root.path().join("catalog.toml");
    std::fs::write(
        &file,
        "[[products]]\nname = \"Cap\"\nprice = 15000\nkind = \"general\"\nstock_total = 5\n\n\
         [[products]]\nname = \"Scarf\"\nprice = 25000\nkind = \"general\"\nstock_total = 7\n",
    )
    .unwrap();
    let made = ok_json(
        &config,
        &base,
        &["products", "create", "--file", file.to_str().unwrap()],
    );
    let names: Vec<&str> = made
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Cap", "Scarf"]);

    // A drop in one command.
    let drop = ok_json(
        &config,
        &base,
        &[
            "drops",
            "schedule",
            "--name",
            "Sneaker 01",
            "--price",
            "129000",
            "--stock",
            "3",
            "--opens",
            "2030-01-01T12:00:00Z",
            "--closes",
            "2030-01-01T13:00:00Z",
            "--limit",
            "1",
        ],
    );
    assert_eq!(drop[0]["kind"], "limited");
    assert_eq!(drop[0]["status"], "upcoming");
    assert_eq!(drop[0]["per_user_limit"], 1);

    // Restock, update, show: the table names what changed.
    let stock = ok_json(
        &config,
        &base,
        &["products", "restock", &mug, "--quantity", "20"],
    );
    assert_eq!(stock["remaining"], 50);
    let updated = ok_json(
        &config,
        &base,
        &["products", "update", &mug, "--price", "9500"],
    );
    assert_eq!(
        (updated[0]["price"].clone(), updated[0]["version"].clone()),
        (9500.into(), 2.into())
    );
    let shown = ok(&config, &base, &["products", "show", &mug]);
    assert!(
        shown.contains("9500") && shown.contains("remaining     50"),
        "{shown}"
    );
    let listed = ok(&config, &base, &["products", "list"]);
    for name in ["Canvas Tote", "Mug", "Cap", "Scarf", "Sneaker 01"] {
        assert!(listed.contains(name), "{name} missing from\n{listed}");
    }
    assert!(listed.starts_with("ID "), "a table with a header: {listed}");
    let limited = ok_json(&config, &base, &["products", "list", "--kind", "limited"]);
    assert_eq!(limited.as_array().unwrap().len(), 1);

    // A refusal prints the problem's title and detail, exits non-zero, and changes nothing.
    let stderr = refused(
        &config,
        &base,
        &["products", "restock", "prd_999", "--quantity", "1"],
    );
    assert!(stderr.contains("product_not_found"), "{stderr}");
    let stderr = refused(
        &config,
        &base,
        &[
            "products", "create", "--name", " ", "--price", "1", "--stock", "1",
        ],
    );
    assert!(stderr.contains("422"), "{stderr}");
    // A bad argument is refused before anything is sent.
    let stderr = refused(&config, &base, &["orders", "list", "--limit", "lots"]);
    assert!(stderr.contains("--limit"), "{stderr}");
    let stderr = refused(&config, &base, &["users", "list", "--role", "owner"]);
    assert!(stderr.contains("--role"), "{stderr}");
    let after = ok_json(&config, &base, &["products", "list"]);
    assert_eq!(after.as_array().unwrap().len(), 5);

    // Orders: a customer buys and pays; the operator ships, delivers, exports.
    let customer = log_in(&http, &base, &shop::customer_email(0)).await;
    let placed = request(
        &http,
        &format!("{base}/api/v1/orders"),
        Some(&customer),
        Some("cli-order-1"),
        Some(&order_body(&tote, 2)),
    )
    .await
    .unwrap();
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = placed.body["id"].as_str().unwrap().to_string();
    let paid = request(
        &http,
        &format!("{base}/api/v1/orders/{order}/payment"),
        Some(&customer),
        None,
        Some(&card_body(APPROVED)),
    )
    .await
    .unwrap();
    assert_eq!(paid.status, 200, "{paid:?}");

    let listed = ok_json(&config, &base, &["orders", "list", "--status", "paid"]);
    assert_eq!(listed[0]["id"], order.as_str());
    let shown = ok(&config, &base, &["orders", "show", &order]);
    assert!(shown.contains("paid") && shown.contains(&tote), "{shown}");
    let stderr = refused(&config, &base, &["orders", "deliver", &order]);
    assert!(
        stderr.contains("409"),
        "delivering before shipping: {stderr}"
    );
    let shipped = ok_json(
        &config,
        &base,
        &[
            "orders",
            "ship",
            &order,
            "--carrier",
            "CJ",
            "--tracking",
            "6412-0001",
        ],
    );
    assert_eq!(shipped[0]["status"], "shipped");
    let delivered = ok_json(&config, &base, &["orders", "deliver", &order]);
    assert_eq!(delivered[0]["status"], "delivered");

    let csv = ok(&config, &base, &["orders", "export", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,status,created_at,total,currency,payment,items,tracking")
    );
    let line = lines.next().unwrap();
    assert!(
        line.starts_with(&format!("{order},delivered,"))
            && line.contains(&format!("{tote}x2"))
            && line.ends_with("CJ 6412-0001"),
        "{line}"
    );
    let out = root.path().join("orders.jsonl");
    ok(
        &config,
        &base,
        &[
            "orders",
            "export",
            "--format",
            "jsonl",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let exported: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["status"], "delivered");

    // Accounts: list, show by email, disable (her token stops working), enable, promote.
    let users = ok_json(&config, &base, &["users", "list"]);
    let emails: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&ADMIN_EMAIL), "{emails:?}");
    let buyer_email = shop::customer_email(0);
    assert!(emails.contains(&buyer_email.as_str()), "{emails:?}");
    let admins = ok_json(&config, &base, &["users", "list", "--role", "admin"]);
    assert_eq!(admins.as_array().unwrap().len(), 1);
    let shown = ok(&config, &base, &["users", "show", &buyer_email]);
    assert!(
        shown.contains("customer") && shown.contains("active"),
        "{shown}"
    );
    let me_path = format!("{base}/api/v1/me");
    let me = request(&http, &me_path, Some(&customer), None, None)
        .await
        .unwrap();
    assert_eq!(me.status, 200);
    let disabled = ok_json(&config, &base, &["users", "disable", &buyer_email]);
    assert_eq!(disabled[0]["status"], "disabled");
    let buyer = disabled[0]["id"].as_str().unwrap().to_string();
    let me = request(&http, &me_path, Some(&customer), None, None)
        .await
        .unwrap();
    assert_eq!(
        me.status, 401,
        "a disabled account's token is refused at once"
    );
    let table = ok(&config, &base, &["users", "list"]);
    assert!(table.contains("disabled"), "{table}");
    let enabled = ok_json(&config, &base, &["users", "enable", &buyer]);
    assert_eq!(enabled[0]["status"], "active");
    let promoted = ok_json(&config, &base, &["users", "promote", &buyer]);
    assert_eq!(promoted[0]["role"], "admin");
    let demoted = ok_json(&config, &base, &["users", "demote", &buyer]);
    assert_eq!(demoted[0]["role"], "customer");
    let stderr = refused(&config, &base, &["users", "disable", ADMIN_EMAIL]);
    assert!(stderr.contains("self_lockout"), "{stderr}");
    let stderr = refused(&config, &base, &["users", "show", "usr_999"]);
    assert!(stderr.contains("user_not_found"), "{stderr}");
    let stderr = refused(&config, &base, &["users", "show", "nobody@example.com"]);
    assert!(stderr.contains("no account"), "{stderr}");

    // A token instead of the session; and after a logout, the session is gone.
    let token = log_in(&http, &base, ADMIN_EMAIL).await;
    let output = Command::new(ALLOT)
        .args([
            "admin", "products", "list", "--json", "--url", &base, "--token", &token,
        ])
        .env("ALLOT_CONFIG_DIR", root.path().join("elsewhere"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let said = ok(&config, &base, &["logout"]);
    assert!(said.contains("logged out"), "{said}");
    let stderr = refused(&config, &base, &["orders", "list"]);
    assert!(stderr.contains("allot admin login"), "{stderr}");

    server.stop();
    support::assert_db_verify(&data, "after the admin commands");
}

#[test]
fn every_admin_command_has_an_example_in_its_help() {
    for path in [
        &["admin"][..],
        &["admin", "products"],
        &["admin", "products", "create"],
        &["admin", "drops", "schedule"],
        &["admin", "orders"],
        &["admin", "orders", "export"],
        &["admin", "users"],
        &["admin", "users", "disable"],
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let output = Command::new(ALLOT).args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = stdout(&output);
        assert!(help.contains("Example: allot admin"), "{args:?}:\n{help}");
    }
}

/// `drops watch` follows a drop live and ends by itself when the sale closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_drop_until_its_sale_closes() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("db");
    let config = root.path().join("config");
    shop::prepare(&data, 2, testkit::general("Canvas Tote", 19_000, 50)).await;
    let mut server = Server::start(&data, &["--ip-rate-limit", "0"], "warn");
    let base = server.base.clone();
    let http = shop::http_client(REQUEST_TIMEOUT);
    wait_ready(&http, &base, "watch").await;
    ok(&config, &base, &["login", "--email", ADMIN_EMAIL]);

    // On sale now, for an hour; closed early below, once the customers have bought.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let opens = allot_engine::rfc3339(now_ms() - 60_000);
    let closes = allot_engine::rfc3339(now_ms() + 3_600_000);
    let drop = ok_json(
        &config,
        &base,
        &[
            "drops",
            "schedule",
            "--name",
            "Sneaker 01",
            "--price",
            "129000",
            "--stock",
            "3",
            "--opens",
            &opens,
            "--closes",
            &closes,
            "--limit",
            "1",
        ],
    );
    let drop = drop[0]["id"].as_str().unwrap().to_string();

    let mut watch = Command::new(ALLOT)
        .args([
            "admin",
            "drops",
            "watch",
            &drop,
            "--interval-ms",
            "100",
            "--json",
        ])
        .env("ALLOT_URL", &base)
        .env("ALLOT_CONFIG_DIR", &config)
        .env("ALLOT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, printed) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The watch counts from its first reading: buy only once it has printed a line.
    let first = printed
        .recv_timeout(Duration::from_secs(60))
        .expect("a first line from drops watch");
    let mut ticks: Vec<Value> = vec![serde_json::from_str(&first).unwrap()];

    // Two customers buy one unit each; the second tries again and is refused (limit 1).
    for (n, key) in [(0, "watch-a"), (1, "watch-b"), (1, "watch-c")] {
        let token = log_in(&http, &base, &shop::customer_email(n)).await;
        let placed = request(
            &http,
            &format!("{base}/api/v1/orders"),
            Some(&token),
            Some(key),
            Some(&order_body(&drop, 1)),
        )
        .await
        .unwrap();
        let expected = if key == "watch-c" { 409 } else { 201 };
        assert_eq!(placed.status, expected, "{key}: {placed:?}");
    }

    // The operator closes the sale early; the watch ends by itself once it has (within the
    // test's patience, not a claim of speed).
    let closes = allot_engine::rfc3339(now_ms() + 300);
    ok(
        &config,
        &base,
        &["products", "update", &drop, "--closes", &closes],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = watch.kill();
            panic!("drops watch did not end when the sale closed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // The reader has the rest (the pipe closed with the process).
    while let Ok(line) = printed.recv_timeout(Duration::from_secs(10)) {
        ticks.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}")));
    }
    let last = ticks.last().expect("at least one line");
    assert_eq!(last["status"], "closed", "{last}");
    assert_eq!(
        (
            last["remaining"].clone(),
            last["reserved"].clone(),
            last["sold"].clone()
        ),
        (1.into(), 2.into(), 0.into()),
        "{last}"
    );
    assert!(last["placed"].as_u64().unwrap() >= 2, "{last}");
    assert!(
        last["refused"]["purchase_limit_exceeded"].as_u64().unwrap() >= 1,
        "{last}"
    );
    assert!(last["p99_ms"].as_f64().is_some(), "{last}");
    // The stock was seen moving while the sale was open.
    assert!(
        ticks
            .iter()
            .any(|t| t["status"] == "on_sale" && t["remaining"].as_u64() < Some(3)),
        "{ticks:?}"
    );
    server.stop();
}
