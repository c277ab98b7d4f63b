//! `allot serve` as a user runs it: it answers health and readiness, and on SIGTERM it finishes,
//! writes a snapshot and exits 0.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{ALLOT, Server};

fn start(data: &std::path::Path) -> Server {
    Server::start(data, &[], "warn")
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(format!("{base}/readyz")).send().await.unwrap();
        if response.status() == 200 {
            return response.json().await.unwrap();
        }
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET base + path`, which must get an answer.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    client
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The JSON body of `GET base + path`.
async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    get(client, base, path).await.json().await.unwrap()
}

/// `allot ARGS --data-dir DATA`, run to its end.
fn allot(args: &[&str], data: &std::path::Path) -> std::process::Output {
    Command::new(ALLOT)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

#[tokio::test]
async fn serve_answers_health_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let client = reqwest::Client::new();

    let mut server = start(&data);
    let health = get(&client, &server.base, "/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = wait_ready(&client, &server.base).await;
    assert_eq!(ready["status"], "ready");

    // A fresh directory shows the demo catalog, every status at once.
    let products = get_json(&client, &server.base, "/api/v1/products").await;
    let mut statuses: Vec<String> = products["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["kind"].as_str().unwrap(),
                p["status"].as_str().unwrap()
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "general/on_sale",
            "general/sold_out",
            "limited/on_sale",
            "limited/upcoming"
        ]
    );
    let openapi = get(&client, &server.base, "/openapi.json").await;
    assert_eq!(openapi.status(), 200);
    let openapi: serde_json::Value = openapi.json().await.unwrap();
    assert!(openapi["paths"]["/api/v1/auth/login"]["post"].is_object());
    let docs = get(&client, &server.base, "/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));

    let missing = get(&client, &server.base, "/no/such/route").await;
    assert_eq!(missing.status(), 404);
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["type"], "not_found");
    assert_eq!(problem["status"], 404);

    // A second server on the same directory is refused.
    let second = Command::new(ALLOT)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("ALLOT_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another process"));

    server.stop();

    // Offline tools work on the stopped server's directory, and the clean stop left a snapshot.
    let stats = allot(&["db", "stats", "--json"], &data);
    assert!(stats.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["clean"], true);

    // The first admin is made offline, then works over HTTP once the server is up again.
    let weak = allot(
        &[
            "admin",
            "create-admin",
            "--email",
            "boss@example.com",
            "--password",
            "weak",
        ],
        &data,
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("weak password"));
    let created = Command::new(ALLOT)
        .args([
            "admin",
            "create-admin",
            "--email",
            "Boss@Example.com",
            "--data-dir",
        ])
        .arg(&data)
        .env("ALLOT_ADMIN_PASSWORD", "Adm1n-pass-phrase")
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).contains("is an admin"));

    let mut server = start(&data);
    wait_ready(&client, &server.base).await;
    let login = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&serde_json::json!({ "email": "boss@example.com", "password": "Adm1n-pass-phrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: serde_json::Value = login.json().await.unwrap();
    assert_eq!(login["role"], "admin");
    let created = client
        .post(format!("{}/api/v1/admin/products", server.base))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .json(&serde_json::json!({ "name": "Admin-made", "price": 1000, "kind": "general", "stock_total": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // The demo catalog is not loaded twice.
    let products = get_json(&client, &server.base, "/api/v1/products").await;
    assert_eq!(products["items"].as_array().unwrap().len(), 5);
    server.stop();
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_login_and_the_shop_port_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    // A port free a moment ago: the server binds it at start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let metrics_address = format!("127.0.0.1:{port}");
    let mut server = Server::start(&data, &["--metrics-listen", &metrics_address], "warn");
    let client = reqwest::Client::new();
    wait_ready(&client, &server.base).await;

    let scraped = get(&client, &format!("http://{metrics_address}"), "/metrics").await;
    assert_eq!(scraped.status(), 200);
    assert_eq!(
        scraped.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = scraped.text().await.unwrap();
    // The demo catalog's open sales and the log, read at the scrape.
    assert!(text.contains("# TYPE allot_stock_units gauge"), "{text}");
    assert!(
        text.contains("# TYPE allot_log_records_written_total counter"),
        "{text}"
    );
    // Nothing else is served there, and the shop's own port asks for an admin.
    let elsewhere = get(
        &client,
        &format!("http://{metrics_address}"),
        "/api/v1/products",
    )
    .await;
    assert_eq!(elsewhere.status(), 404);
    assert_eq!(get(&client, &server.base, "/metrics").await.status(), 401);
    server.stop();
}

#[test]
fn serve_refuses_stream_pacing_out_of_bounds_before_touching_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        ["--stream-events-per-sec", "0"],
        ["--stream-pace-max-ms", "99"],
        ["--stream-pace-max-ms", "15001"],
        ["--stream-events-per-sec", "lots"],
    ] {
        let refused = Command::new(ALLOT)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(args[0]),
            "{args:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        assert!(!data.exists(), "{args:?} made the data directory");
    }
}

/// `allot serve --config FILE ARGS…` with `env`, `ALLOT_CONFIG`-free otherwise: its output.
fn serve_with_config(file: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ALLOT);
    command
        .args(["serve", "--config"])
        .arg(file)
        .args(args)
        .env_remove("ALLOT_CONFIG")
        .env_remove("ALLOT_CACHE_MB")
        .env_remove("ALLOT_LISTEN")
        .env_remove("ALLOT_SMTP_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn a_configuration_file_fills_in_what_flags_and_variables_leave_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\ncache_mb = 64\nreservation-ttl = 120\n\
         smtp_url = \"smtps://ops:hunter2@mail.example.com:465\"\nno_demo_catalog = true\n",
    )
    .unwrap();
    let printed = serve_with_config(
        &file,
        &["--print-config", "--reservation-ttl", "300"],
        &[("ALLOT_CACHE_MB", "128")],
    );
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8_lossy(&printed.stdout);
    let file_name = file.display().to_string();
    for (line, source) in [
        ("listen = \"127.0.0.1:9999\"", file_name.as_str()),
        ("cache_mb = 128", "ALLOT_CACHE_MB"),
        ("reservation_ttl = 300", "--reservation-ttl"),
        ("no_demo_catalog = true", file_name.as_str()),
        (
            "smtp_url = \"smtps://ops:***@mail.example.com:465\"",
            file_name.as_str(),
        ),
        ("ip_rate_limit = 60", "default"),
    ] {
        assert!(
            text.contains(&format!("{line}  # {source}\n")),
            "{line} from {source}:\n{text}"
        );
    }
    assert!(!text.contains("hunter2"), "a secret printed:\n{text}");
    // What it printed is a configuration file `--config` takes back.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, text.as_bytes()).unwrap();
    let reread = serve_with_config(&again, &["--print-config"], &[]);
    assert!(reread.status.success(), "{reread:?}");
    assert!(String::from_utf8_lossy(&reread.stdout).contains("cache_mb = 128  # "));

    // An unknown key, a value of the wrong kind, a value clap refuses: exit 2, named.
    for (content, named) in [
        ("cachemb = 1\n", "cachemb"),
        ("cache_mb = [1]\n", "cache_mb"),
        ("cache_mb = \"lots\"\n", "--cache-mb"),
        ("print_config = true\n", "print_config"),
        ("listen = ", "not TOML"),
    ] {
        std::fs::write(&file, content).unwrap();
        let refused = serve_with_config(&file, &["--data-dir", "unused"], &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{content}: {stderr}");
        assert!(stderr.contains(named), "{content}: {stderr}");
    }
    assert!(!std::path::Path::new("unused").exists());
    let missing = serve_with_config(&dir.path().join("nope.toml"), &[], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.toml"));
}

#[tokio::test]
async fn serve_runs_on_a_configuration_file_and_logs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let file = dir.path().join("allot.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nno_demo_catalog = true\nlog_format = \"json\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut command = Command::new(ALLOT);
    command
        .args(["serve", "--config"])
        .arg(&file)
        .env("ALLOT_LOG", "info")
        .env_remove("ALLOT_LISTEN")
        .env_remove("ALLOT_DATA_DIR")
        .stderr(std::fs::File::create(&log).unwrap());
    let (child, line) = support::spawn_until_first_line(&mut command);
    let mut server = Server {
        child,
        base: line
            .trim()
            .strip_prefix("allot listening on ")
            .unwrap()
            .to_string(),
    };
    let client = reqwest::Client::new();
    wait_ready(&client, &server.base).await;
    let products = get_json(&client, &server.base, "/api/v1/products").await;
    assert_eq!(products["items"], serde_json::json!([]), "no demo catalog");
    // The container's health check.
    let ready = Command::new(ALLOT)
        .args(["ready", "--url", &server.base])
        .output()
        .unwrap();
    assert!(ready.status.success(), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).starts_with("ready at seq"));
    server.stop();
    let gone = Command::new(ALLOT)
        .args(["ready", "--url", &server.base, "--timeout-s", "2"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(data.join("store").is_dir(), "the file's data directory");
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
    }
}
