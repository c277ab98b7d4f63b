//! `allot admin drops watch PRODUCT`: a live view of one drop until its sale closes. The stock
//! comes from the product's stock stream (Server-Sent Events, each change as it happens); the
//! placements, refusals and latency from `GET /metrics`, read once a tick and compared with the
//! first reading, so every figure is of this watch alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::Serialize;
use serde_json::Value;

use super::Client;

/// The route whose latency the view shows.
const PLACEMENT_ROUTE: &str = "/api/v1/orders";
const LATENCY_FAMILY: &str = "allot_http_request_duration_seconds_bucket";
const PLACEMENTS_FAMILY: &str = "allot_placements_total";

#[derive(clap::Args)]
pub struct WatchArgs {
    /// The limited product's id (`prd_…`).
    product: String,
    /// How often a line is printed, in milliseconds.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval_ms: u64,
}

/// One sample of a Prometheus text exposition: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of the families named in `wanted`, from Prometheus text. Lines it cannot read
/// are passed over: a view is not a validator.
pub fn parse_exposition(text: &str, wanted: &[&str]) -> BTreeMap<String, Vec<Sample>> {
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if !wanted.contains(&name) {
            continue;
        }
        families.entry(name.to_string()).or_default().push(Sample {
            labels: parse_labels(labels),
            value,
        });
    }
    families
}

/// `a="x",b="y"` (values with `\"`, `\\` and `\n` escapes) as a map.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// What `/metrics` says of placements at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placements {
    pub placed: f64,
    pub refused: BTreeMap<String, f64>,
    /// Cumulative counts of `POST /orders` answers at or below each latency bound.
    pub latency: Vec<(f64, f64)>,
}

impl Placements {
    pub fn read(text: &str) -> Placements {
        let families = parse_exposition(text, &[PLACEMENTS_FAMILY, LATENCY_FAMILY]);
        let mut placements = Placements::default();
        for sample in families.get(PLACEMENTS_FAMILY).into_iter().flatten() {
            match sample.labels.get("outcome").map(String::as_str) {
                Some("placed") => placements.placed += sample.value,
                Some("refused") => {
                    let reason = sample.labels.get("reason").cloned().unwrap_or_default();
                    *placements.refused.entry(reason).or_default() += sample.value;
                }
                _ => {}
            }
        }
        let mut latency: BTreeMap<u64, f64> = BTreeMap::new();
        for sample in families.get(LATENCY_FAMILY).into_iter().flatten() {
            let route = sample.labels.get("route").map(String::as_str);
            let method = sample.labels.get("method").map(String::as_str);
            if route != Some(PLACEMENT_ROUTE) || method != Some("POST") {
                continue;
            }
            let Some(bound) = sample.labels.get("le").and_then(|le| match le.as_str() {
                "+Inf" => Some(f64::INFINITY),
                le => le.parse::<f64>().ok(),
            }) else {
                continue;
            };
            // Summed over statuses; keyed by the bound's bits, which order as the bounds do.
            *latency.entry(bound.to_bits()).or_default() += sample.value;
        }
        placements.latency = latency
            .into_iter()
            .map(|(bits, n)| (f64::from_bits(bits), n))
            .collect();
        placements
    }

    /// What happened since `start`.
    pub fn since(&self, start: &Placements) -> Placements {
        let refused = self
            .refused
            .iter()
            .map(|(reason, n)| {
                let before = start.refused.get(reason).copied().unwrap_or(0.0);
                (reason.clone(), n - before)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        let latency = self
            .latency
            .iter()
            .map(|&(bound, n)| {
                let before = start
                    .latency
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0.0, |(_, n)| *n);
                (bound, n - before)
            })
            .collect();
        Placements {
            placed: self.placed - start.placed,
            refused,
            latency,
        }
    }

    /// The latency at or under which 99 % of the answers came (a bucket's upper bound), in
    /// milliseconds; `None` without answers, infinite when the slowest bucket holds the 99th.
    pub fn p99_ms(&self) -> Option<f64> {
        let total = self.latency.last().map(|(_, n)| *n)?;
        if total <= 0.0 {
            return None;
        }
        self.latency
            .iter()
            .find(|(_, n)| *n >= total * 0.99)
            // In ms, to the µs (a bound times 1,000 is not always exact in binary).
            .map(|(bound, _)| (bound * 1_000_000.0).round() / 1_000.0)
    }

    fn refused_total(&self) -> f64 {
        self.refused.values().sum()
    }
}

/// One line of the view.
#[derive(Debug, Serialize)]
struct Tick {
    at_s: f64,
    status: String,
    remaining: u64,
    reserved: u64,
    sold: u64,
    placed: u64,
    refused: BTreeMap<String, u64>,
    placements_per_s: f64,
    p99_ms: Option<f64>,
}

/// The latest stock event of the stream, and whether the sale has closed.
#[derive(Debug, Default)]
struct Stream {
    buffer: String,
    stock: Option<Value>,
    closed: bool,
}

impl Stream {
    /// Takes a chunk of the event stream; keeps the newest stock.
    fn take(&mut self, chunk: &[u8]) {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        while let Some(end) = self.buffer.find("\n\n") {
            let frame: String = self.buffer.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = if name.trim() == "sale_closed" {
                        "sale_closed"
                    } else {
                        "stock"
                    };
                } else if let Some(text) = line.strip_prefix("data:") {
                    data.push_str(text.trim_start());
                }
            }
            if let Ok(stock) = serde_json::from_str::<Value>(&data) {
                self.closed |= event == "sale_closed" || stock["status"] == "closed";
                self.stock = Some(stock);
            }
        }
    }
}

pub async fn run(client: &mut Client, args: WatchArgs) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.interval_ms);
    let product = client.get(&format!("/products/{}", args.product)).await?;
    let mut stream = client
        .stream(&format!("/products/{}/stock/stream", args.product))
        .await?;
    let start = Placements::read(&client.metrics().await?);
    let started = Instant::now();
    let mut last = (started, start.clone());
    let mut state = Stream::default();
    if !client.json {
        println!(
            "watching {} ({}) until its sale closes; Ctrl-C to stop",
            args.product,
            product["name"].as_str().unwrap_or("?")
        );
    }
    let mut next_tick = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            chunk = stream.chunk() => {
                match chunk.context("the stock stream broke off")? {
                    Some(bytes) => state.take(&bytes),
                    None => return Err(anyhow!("the server ended the stock stream")),
                }
                if !state.closed {
                    continue;
                }
            }
            () = tokio::time::sleep_until(next_tick) => {
                next_tick += interval;
            }
        }
        let now = Placements::read(&client.metrics().await?);
        let since_start = now.since(&start);
        let since_last = now.since(&last.1);
        let seconds = last.0.elapsed().as_secs_f64().max(1e-3);
        let stock = state.stock.clone().unwrap_or(Value::Null);
        let count = |field: &str| stock[field].as_u64().unwrap_or(0);
        let tick = Tick {
            at_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            status: stock["status"].as_str().unwrap_or("-").to_string(),
            remaining: count("remaining"),
            reserved: count("reserved"),
            sold: count("sold"),
            placed: since_start.placed as u64,
            refused: since_start
                .refused
                .iter()
                .map(|(reason, n)| (reason.clone(), *n as u64))
                .collect(),
            placements_per_s: ((since_last.placed + since_last.refused_total()) / seconds * 10.0)
                .round()
                / 10.0,
            p99_ms: since_start.p99_ms(),
        };
        print_tick(client.json, &tick)?;
        last = (Instant::now(), now);
        if state.closed {
            if !client.json {
                println!("the sale is closed");
            }
            return Ok(());
        }
    }
}

fn print_tick(json: bool, tick: &Tick) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(tick)?);
        return Ok(());
    }
    let refused = if tick.refused.is_empty() {
        "-".to_string()
    } else {
        tick.refused
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p99 = match tick.p99_ms {
        Some(ms) if ms.is_finite() => format!("{ms:.1} ms"),
        Some(_) => "over the top bucket".to_string(),
        None => "-".to_string(),
    };
    println!(
        "{:>7.1}s  {:<9} remaining {:<6} reserved {:<6} sold {:<6} placed {:<6} {:>8.1}/s  p99 {p99}  refused: {refused}",
        tick.at_s,
        tick.status,
        tick.remaining,
        tick.reserved,
        tick.sold,
        tick.placed,
        tick.placements_per_s,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP allot_placements_total POST /orders
# TYPE allot_placements_total counter
allot_placements_total{outcome=\"placed\",reason=\"\"} 7
allot_placements_total{outcome=\"refused\",reason=\"sold_out\"} 3
allot_placements_total{outcome=\"refused\",reason=\"purchase_limit_exceeded\"} 1
allot_http_request_duration_seconds_bucket{route=\"/api/v1/orders\",method=\"POST\",le=\"0.001\"} 4
allot_http_request_duration_seconds_bucket{route=\"/api/v1/orders\",method=\"POST\",le=\"0.01\"} 10
allot_http_request_duration_seconds_bucket{route=\"/api/v1/orders\",method=\"POST\",le=\"+Inf\"} 11
allot_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\",le=\"+Inf\"} 99
allot_log_durable_seq 12
";

    #[test]
    fn placements_refusals_and_latency_are_read_from_the_text() {
        let read = Placements::read(EXPOSITION);
        assert_eq!(read.placed, 7.0);
        assert_eq!(read.refused["sold_out"], 3.0);
        assert_eq!(read.refused["purchase_limit_exceeded"], 1.0);
        assert_eq!(
            read.latency,
            vec![(0.001, 4.0), (0.01, 10.0), (f64::INFINITY, 11.0)]
        );
        // 99 % of 11 answers is 10.89: only the last bucket holds that many.
        assert_eq!(read.p99_ms(), Some(f64::INFINITY));
        let earlier = Placements::read(
            "allot_placements_total{outcome=\"placed\",reason=\"\"} 2\n\
             allot_http_request_duration_seconds_bucket{route=\"/api/v1/orders\",method=\"POST\",le=\"+Inf\"} 1\n",
        );
        let since = read.since(&earlier);
        assert_eq!(since.placed, 5.0);
        assert_eq!(since.refused.len(), 2);
        assert_eq!(since.latency.last(), Some(&(f64::INFINITY, 10.0)));
    }

    #[test]
    fn label_values_keep_their_escapes_and_commas() {
        let labels = parse_labels(r#"a="x,y",b="say \"hi\"",c="back\\slash""#);
        assert_eq!(labels["a"], "x,y");
        assert_eq!(labels["b"], "say \"hi\"");
        assert_eq!(labels["c"], "back\\slash");
    }

    #[test]
    fn the_stream_keeps_the_newest_stock_and_sees_the_close() {
        let mut stream = Stream::default();
        stream
            .take(b"event: stock\ndata: {\"remaining\": 3, \"status\": \"on_sale\"}\n\nevent: st");
        assert_eq!(stream.stock.as_ref().unwrap()["remaining"], 3);
        assert!(!stream.closed);
        stream.take(b"ock\ndata: {\"remaining\": 2, \"status\": \"on_sale\"}\n\n: keep-alive\n\n");
        assert_eq!(stream.stock.as_ref().unwrap()["remaining"], 2);
        stream.take(b"event: sale_closed\ndata: {\"remaining\": 2, \"status\": \"closed\"}\n\n");
        assert!(stream.closed);
    }
}
