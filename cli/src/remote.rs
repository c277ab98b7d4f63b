//! `allot admin …` against a running server, over its HTTP API: the connection flags every
//! such command shares, the session a login keeps, and how answers and problems are printed.
//!
//! A command takes its token from `--token` (or `ALLOT_TOKEN`), else from the session
//! `allot admin login` stored for that URL in the user's config directory (readable by the
//! user only). A stored session's access token is short-lived; on a 401 the command exchanges
//! the stored refresh token for new ones once, and stores them.

pub mod catalog;
pub mod orders;
pub mod table;
pub mod users;
pub mod watch;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a server listens unless told otherwise (`allot serve`'s default).
pub const URL_DEFAULT: &str = "http://127.0.0.1:8080";
/// How long one request may take before the command gives up, in seconds.
const REQUEST_TIMEOUT_S: u64 = 30;
/// Items per page when a command reads a whole list (the API's maximum).
pub const PAGE_LIMIT: usize = 100;

/// The flags of every command that talks to a running server.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The server's base URL.
    #[arg(long, env = "ALLOT_URL", default_value = URL_DEFAULT, global = true)]
    pub url: String,
    /// An admin's access token; without it, the session of `allot admin login` is used.
    #[arg(long, env = "ALLOT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table (one document; for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A problem the server answered (`application/problem+json`): printed as its title and
/// detail, and the command exits non-zero.
#[derive(Debug, thiserror::Error)]
#[error("{title} ({status} {kind}){}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ProblemError {
    pub status: u16,
    pub kind: String,
    pub title: String,
    pub detail: Option<String>,
}

/// What a login keeps, per server URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    url: String,
    access_token: String,
    refresh_token: String,
}

/// The user's config directory for allot: `ALLOT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/allot`,
/// else `~/.config/allot`.
fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ALLOT_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("allot"));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        anyhow!("no HOME to keep the session in; set ALLOT_CONFIG_DIR or pass --token")
    })?;
    Ok(PathBuf::from(home).join(".config/allot"))
}

fn sessions_file() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("sessions.json"))
}

fn read_sessions() -> anyhow::Result<Vec<Session>> {
    let path = sessions_file()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a sessions file", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the sessions readable and writable by the user only (0600), replacing the file
/// whole (a new file renamed over the old), so that a crash never leaves half of it.
fn write_sessions(sessions: &[Session]) -> anyhow::Result<()> {
    let path = sessions_file()?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = path.with_extension("json.partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    file.write_all(&serde_json::to_vec_pretty(sessions)?)?;
    file.sync_all()?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn store_session(session: Session) -> anyhow::Result<()> {
    let mut sessions = read_sessions()?;
    sessions.retain(|s| s.url != session.url);
    sessions.push(session);
    write_sessions(&sessions)
}

/// A client of one server, acting as one admin.
pub struct Client {
    http: reqwest::Client,
    /// The server's root URL (where `/metrics` is).
    root: String,
    /// The API's base URL.
    base: String,
    token: String,
    /// The stored session the token came from, if any: it can be refreshed.
    session: Option<Session>,
    pub json: bool,
    /// How long one request may take.
    timeout: std::time::Duration,
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(REQUEST_TIMEOUT_S))
        .build()?)
}

fn api_base(url: &str) -> String {
    format!("{}/api/v1", url.trim_end_matches('/'))
}

impl Client {
    /// A client with the token of `--token`, or of the stored session for `--url`.
    pub fn connect(args: &RemoteArgs) -> anyhow::Result<Client> {
        let url = args.url.trim_end_matches('/').to_string();
        let (token, session) = match &args.token {
            Some(token) => (token.clone(), None),
            None => {
                let session = read_sessions()?
                    .into_iter()
                    .find(|s| s.url == url)
                    .ok_or_else(|| {
                        anyhow!(
                            "not logged in to {url}: run `allot admin login --url {url} --email \
                             …`, or pass --token"
                        )
                    })?;
                (session.access_token.clone(), Some(session))
            }
        };
        Ok(Client {
            http: http_client()?,
            base: api_base(&url),
            root: url,
            token,
            session,
            json: args.json,
            timeout: std::time::Duration::from_secs(REQUEST_TIMEOUT_S),
        })
    }

    /// Lets each request take up to `timeout` (a backup of a large store takes minutes).
    pub fn patient(mut self, timeout: std::time::Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub async fn patch(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `GET /metrics` (the Prometheus text), as this admin.
    pub async fn metrics(&mut self) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.root);
        let mut answer = self.send_url(reqwest::Method::GET, &url, None).await?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED && self.refresh().await? {
            answer = self.send_url(reqwest::Method::GET, &url, None).await?;
        }
        if !answer.status().is_success() {
            read_answer(answer).await?;
            bail!("GET /metrics failed");
        }
        Ok(answer.text().await?)
    }

    /// A long-lived `GET` (an event stream): the response, whose body arrives as it comes.
    /// Only connecting has a deadline.
    pub async fn stream(&mut self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let streaming = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(REQUEST_TIMEOUT_S))
            .build()?;
        let answer = streaming
            .get(&url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("cannot reach {url} (is the server running?)"))?;
        if !answer.status().is_success() {
            read_answer(answer).await?;
            bail!("GET {path} failed");
        }
        Ok(answer)
    }

    /// Every item of a paged list at `path` (which may carry a query already).
    pub async fn list_all(&mut self, path: &str) -> anyhow::Result<Vec<Value>> {
        self.list_up_to(path, usize::MAX).await
    }

    /// The first `most` items of a paged list at `path` (which may carry a query already).
    pub async fn list_up_to(&mut self, path: &str, most: usize) -> anyhow::Result<Vec<Value>> {
        self.list_up_to_with(path, most, &mut |_| {}).await
    }

    /// [`list_up_to`](Self::list_up_to), telling `on_page` how many items each page brought.
    pub async fn list_up_to_with(
        &mut self,
        path: &str,
        most: usize,
        on_page: &mut (dyn FnMut(usize) + Send),
    ) -> anyhow::Result<Vec<Value>> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        while items.len() < most {
            let limit = (most - items.len()).min(PAGE_LIMIT);
            let page_path = match &cursor {
                Some(cursor) => format!("{path}{separator}limit={limit}&cursor={cursor}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let page = self.get(&page_path).await?;
            if let Some(found) = page["items"].as_array() {
                items.extend(found.iter().cloned());
                on_page(found.len());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        Ok(items)
    }

    /// One request; on a 401 with a stored session, refreshes it once and asks again.
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let first = self.send(method.clone(), path, body).await?;
        let answer =
            if first.status() == reqwest::StatusCode::UNAUTHORIZED && self.refresh().await? {
                self.send(method, path, body).await?
            } else {
                first
            };
        read_answer(answer).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        self.send_url(method, &url, body).await
    }

    async fn send_url(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(&self.token)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .with_context(|| format!("cannot reach {url} (is the server running?)"))
    }

    /// Exchanges the stored refresh token for new tokens; false without a stored session.
    async fn refresh(&mut self) -> anyhow::Result<bool> {
        let Some(session) = &self.session else {
            return Ok(false);
        };
        let answer = self
            .http
            .post(format!("{}/auth/refresh", self.base))
            .json(&serde_json::json!({ "refresh_token": session.refresh_token }))
            .send()
            .await
            .context("cannot reach the server to refresh the session")?;
        let tokens = read_answer(answer).await.map_err(|error| {
            anyhow!("the stored session has ended ({error}); log in again: allot admin login")
        })?;
        let renewed = Session {
            url: session.url.clone(),
            access_token: text(&tokens, "access_token")?,
            refresh_token: text(&tokens, "refresh_token")?,
        };
        store_session(renewed.clone())?;
        self.token = renewed.access_token.clone();
        self.session = Some(renewed);
        Ok(true)
    }
}

fn text(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the server's answer has no {field}"))
}

/// The body of a success, or the problem of a failure.
async fn read_answer(answer: reqwest::Response) -> anyhow::Result<Value> {
    let status = answer.status();
    let bytes = answer
        .bytes()
        .await
        .context("reading the server's answer")?;
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
        })
    };
    if status.is_success() {
        return Ok(body);
    }
    Err(ProblemError {
        status: status.as_u16(),
        kind: body["type"].as_str().unwrap_or("unknown").to_string(),
        title: body["title"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
        detail: body["detail"]
            .as_str()
            .map(str::to_string)
            .or_else(|| body.as_str().map(str::to_string)),
    }
    .into())
}

/// `allot admin login`: logs in as an admin and stores the session for `--url`.
pub async fn login(args: &RemoteArgs, email: &str, password: &str) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/').to_string();
    let answer = http_client()?
        .post(format!("{}/auth/login", api_base(&url)))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .with_context(|| format!("cannot reach {url} (is the server running?)"))?;
    let session = read_answer(answer).await?;
    if session["role"] != "admin" {
        bail!("{email} is not an admin: the admin commands would all be refused");
    }
    store_session(Session {
        url: url.clone(),
        access_token: text(&session, "access_token")?,
        refresh_token: text(&session, "refresh_token")?,
    })?;
    println!("logged in to {url} as {email}");
    Ok(())
}

/// `allot admin logout`: ends the stored session on the server and forgets it.
pub async fn logout(args: &RemoteArgs) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/').to_string();
    let mut sessions = read_sessions()?;
    let Some(at) = sessions.iter().position(|s| s.url == url) else {
        println!("no session for {url}");
        return Ok(());
    };
    let session = sessions.remove(at);
    let ended = http_client()?
        .post(format!("{}/auth/logout", api_base(&url)))
        .bearer_auth(&session.access_token)
        .json(&serde_json::json!({ "refresh_token": session.refresh_token }))
        .send()
        .await;
    write_sessions(&sessions)?;
    match ended {
        Ok(answer) if answer.status().is_success() => println!("logged out of {url}"),
        // Forgotten here all the same; the server's tokens expire on their own.
        _ => println!("forgot the session for {url} (the server did not confirm the logout)"),
    }
    Ok(())
}

/// Prints `value` as JSON (for `--json`).
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
