//! Operations: `/readyz` says when the checkpoints fail (the log is then not pruned), while
//! the shop stays ready and keeps selling.

use serde_json::Value;

use crate::support::app::TestApp;
use crate::support::shop;
use allot_engine::testkit::internals::fail_next_checkpoints;

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = reqwest::get(format!("{}/readyz", app.base))
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_failing_checkpoint_until_one_succeeds() {
    let (_dir, app) = shop::spawn().await;
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checkpoint"]["status"], "ok", "{ready}");

    let engine = app.engine.clone();
    fail_next_checkpoints(&engine, 1);
    let failed = tokio::task::spawn_blocking(move || engine.snapshot_now())
        .await
        .unwrap();
    assert!(failed.is_err(), "{failed:?}");
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "still ready: writes go on, nothing is lost");
    let checkpoint = &ready["checkpoint"];
    assert_eq!(checkpoint["status"], "failing", "{ready}");
    assert_eq!(checkpoint["failures_in_a_row"], 1, "{ready}");
    assert!(
        checkpoint["error"]
            .as_str()
            .is_some_and(|e| e.contains("planned by the test")),
        "{ready}"
    );
    assert!(checkpoint["failing_since"].is_string(), "{ready}");

    let engine = app.engine.clone();
    let covered = tokio::task::spawn_blocking(move || engine.snapshot_now())
        .await
        .unwrap()
        .expect("a checkpoint once storage takes writes");
    let (_, ready) = readyz(&app).await;
    assert_eq!(ready["checkpoint"]["status"], "ok", "{ready}");
    assert_eq!(ready["checkpoint"]["last_seq"], covered, "{ready}");
    assert!(ready["checkpoint"].get("error").is_none(), "{ready}");
    app.stop().await;
}
