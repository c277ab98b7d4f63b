//! A drop's figures: the table printed, the JSON of `--json`, and the HTML report of
//! `--report` with its plots drawn as inline SVG (plotters), so the page needs nothing else.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::{Value, json};

use super::DropArgs;
use super::check::{Check, Sample, Settled};
use super::crowd::{Bucket, Step, Tally};
use super::shop::{Sale, Units};

const PLOT_SIZE: (u32, u32) = (960, 320);

/// Latency percentiles in ms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1_000.0;
        let at = |quantile: f64| {
            if histogram.is_empty() {
                0.0
            } else {
                ms(histogram.value_at_quantile(quantile))
            }
        };
        Percentiles {
            count: histogram.len(),
            p50: at(0.5),
            p99: at(0.99),
            p99_9: at(0.999),
            max: if histogram.is_empty() {
                0.0
            } else {
                ms(histogram.max())
            },
        }
    }
}

/// One kind of answer and how often it came.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnswerCount {
    pub step: Step,
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
}

/// What a drop measured, and what it checked.
pub struct Figures {
    pub mode: &'static str,
    pub product: String,
    pub customers: usize,
    pub stock: u64,
    pub limit: u64,
    pub rate: f64,
    pub ramp_to: Option<f64>,
    pub duration_s: f64,
    pub connections: usize,
    pub pay_share: f64,
    pub seed: u64,
    pub attempts: u64,
    pub placements: u64,
    pub checkouts: u64,
    pub answers: Vec<AnswerCount>,
    pub place: Percentiles,
    pub pay: Percentiles,
    pub checkout: Percentiles,
    pub send_lag_max_ms: f64,
    pub elapsed_s: f64,
    pub units: Units,
    pub samples: Vec<Sample>,
    pub buckets: Vec<Bucket>,
    pub bucket_ms: u64,
    pub checks: Vec<Check>,
}

impl Figures {
    pub fn new(
        args: &DropArgs,
        customers: usize,
        sale: &Sale,
        tally: Tally,
        samples: Vec<Sample>,
        settled: &Settled,
    ) -> Figures {
        let answers = tally
            .answers
            .iter()
            .map(|((step, status, kind), count)| AnswerCount {
                step: *step,
                status: *status,
                kind: kind.clone(),
                count: *count,
            })
            .collect();
        Figures {
            mode: if args.url.is_some() {
                "remote"
            } else {
                "offline"
            },
            customers,
            product: sale.product.clone(),
            stock: sale.stock,
            limit: sale.limit,
            rate: args.rate,
            ramp_to: args.ramp_to,
            duration_s: args.duration,
            connections: args.connections,
            pay_share: args.pay_share,
            seed: args.seed,
            attempts: tally.attempts,
            placements: tally.placed.len() as u64,
            checkouts: tally.placed.iter().filter(|placed| placed.paid).count() as u64,
            answers,
            place: Percentiles::of(&tally.place_latency),
            pay: Percentiles::of(&tally.pay_latency),
            checkout: Percentiles::of(&tally.checkout_latency),
            send_lag_max_ms: tally.send_lag_max.as_secs_f64() * 1_000.0,
            elapsed_s: tally.elapsed.as_secs_f64(),
            units: settled.units,
            samples,
            buckets: tally.buckets,
            bucket_ms: tally.bucket_ms,
            checks: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|check| check.passed)
    }

    /// Per second of the arrival window.
    fn per_s(&self, count: u64) -> f64 {
        count as f64 / self.duration_s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "product": self.product,
            "plan": {
                "customers": self.customers,
                "stock": self.stock,
                "per_customer_limit": self.limit,
                "rate_per_s": self.rate,
                "ramp_to_per_s": self.ramp_to,
                "duration_s": self.duration_s,
                "connections": self.connections,
                "pay_share": self.pay_share,
                "seed": self.seed,
            },
            "attempts": self.attempts,
            "attempts_per_s": self.per_s(self.attempts),
            "placements": self.placements,
            "placements_per_s": self.per_s(self.placements),
            "checkouts": self.checkouts,
            "checkouts_per_s": self.per_s(self.checkouts),
            "answers": self.answers,
            "latency_ms": {
                "place": self.place,
                "pay": self.pay,
                "checkout": self.checkout,
            },
            "send_lag_max_ms": self.send_lag_max_ms,
            "elapsed_s": self.elapsed_s,
            "final_stock": self.units,
            "stock_samples": self.samples.len(),
            "checks": self.checks,
            "passed": self.passed(),
        })
    }
}

/// The figures as text for a terminal.
pub fn table(figures: &Figures) -> String {
    let mut out = String::new();
    let rate = match figures.ramp_to {
        Some(to) => format!("{} → {}/s", figures.rate, to),
        None => format!("{}/s", figures.rate),
    };
    let _ = writeln!(
        out,
        "drop: {} customers, {} units (limit {} each), {rate} for {} s, {} connections, {} mode",
        figures.customers,
        figures.stock,
        figures.limit,
        figures.duration_s,
        figures.connections,
        figures.mode
    );
    let _ = writeln!(
        out,
        "attempts {} ({:.0}/s), placements {} ({:.0}/s), paid checkouts {} ({:.0}/s)",
        figures.attempts,
        figures.per_s(figures.attempts),
        figures.placements,
        figures.per_s(figures.placements),
        figures.checkouts,
        figures.per_s(figures.checkouts),
    );
    let _ = writeln!(
        out,
        "\n{:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, p) in [
        ("place", &figures.place),
        ("pay", &figures.pay),
        ("checkout", &figures.checkout),
    ] {
        let _ = writeln!(
            out,
            "{name:<10} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            p.count, p.p50, p.p99, p.p99_9, p.max
        );
    }
    let _ = writeln!(
        out,
        "(from each request's intended send time; the latest send was {:.1} ms late)",
        figures.send_lag_max_ms
    );
    let _ = writeln!(out, "\nanswers");
    for answer in &figures.answers {
        let _ = writeln!(
            out,
            "  {:<6} {:>3} {:<26} {:>8}",
            format!("{:?}", answer.step).to_lowercase(),
            answer.status,
            answer.kind,
            answer.count
        );
    }
    let u = figures.units;
    let _ = writeln!(
        out,
        "\nfinal stock: {} remaining, {} reserved, {} sold",
        u.remaining, u.reserved, u.sold
    );
    let _ = writeln!(out, "\nchecks");
    for check in &figures.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {}: {}", check.name, check.detail);
    }
    let verdict = if figures.passed() {
        "every check passed"
    } else {
        "A CHECK FAILED"
    };
    let _ = writeln!(out, "\n{verdict}");
    out
}

/// Writes the HTML report of `figures` to `path`.
pub fn write_html(path: &Path, figures: &Figures) -> anyhow::Result<()> {
    let plots = [
        latency_plot(figures)?,
        throughput_plot(figures)?,
        stock_plot(figures)?,
    ];
    let mut page = String::new();
    page.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>allot bench drop</title><style>body{font-family:sans-serif;margin:2em;\
         max-width:1000px}table{border-collapse:collapse}td,th{padding:2px 10px;\
         text-align:right}td:first-child,th:first-child{text-align:left}\
         .fail{color:#b00}.ok{color:#070}</style></head><body>\n<h1>allot bench drop</h1>\n",
    );
    page.push_str("<pre>");
    page.push_str(&escape(&table(figures)));
    page.push_str("</pre>\n");
    for plot in plots {
        page.push_str("<figure>");
        page.push_str(&plot);
        page.push_str("</figure>\n");
    }
    page.push_str("</body></html>\n");
    std::fs::write(path, page)?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Each bucket's start in seconds since the opening, with what `value` makes of it.
fn per_bucket(figures: &Figures, value: impl Fn(&Bucket) -> f64) -> Vec<(f64, f64)> {
    let width = figures.bucket_ms as f64 / 1_000.0;
    figures
        .buckets
        .iter()
        .enumerate()
        .map(|(n, bucket)| (n as f64 * width, value(bucket)))
        .collect()
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn latency_plot(figures: &Figures) -> anyhow::Result<String> {
    let quantile = |q: f64| {
        move |bucket: &Bucket| {
            if bucket.place_latency.is_empty() {
                0.0
            } else {
                bucket.place_latency.value_at_quantile(q) as f64 / 1_000.0
            }
        }
    };
    let series = vec![
        ("p50", BLUE, per_bucket(figures, quantile(0.5))),
        ("p99", RED, per_bucket(figures, quantile(0.99))),
        ("max", BLACK, per_bucket(figures, quantile(1.0))),
    ];
    line_plot(
        "Placement latency from the intended send (ms)",
        "ms",
        figures.duration_s,
        series,
    )
}

fn throughput_plot(figures: &Figures) -> anyhow::Result<String> {
    let per_s = 1_000.0 / figures.bucket_ms as f64;
    let series = vec![
        (
            "placed",
            BLUE,
            per_bucket(figures, |b| b.placed as f64 * per_s),
        ),
        (
            "refused",
            RGBColor(230, 140, 0),
            per_bucket(figures, |b| b.refused as f64 * per_s),
        ),
        (
            "paid",
            RGBColor(0, 140, 0),
            per_bucket(figures, |b| b.paid as f64 * per_s),
        ),
        (
            "failed",
            RED,
            per_bucket(figures, |b| b.failed as f64 * per_s),
        ),
    ];
    line_plot(
        "Answers a second, by when they were meant to be sent",
        "answers/s",
        figures.duration_s,
        series,
    )
}

fn stock_plot(figures: &Figures) -> anyhow::Result<String> {
    let units = |pick: fn(Units) -> u64| {
        figures
            .samples
            .iter()
            .filter_map(|s| Some((s.at_ms as f64 / 1_000.0, pick(s.units?) as f64)))
            .collect::<Vec<_>>()
    };
    let series = vec![
        ("remaining", BLUE, units(|u| u.remaining)),
        ("reserved", RGBColor(230, 140, 0), units(|u| u.reserved)),
        ("sold", RGBColor(0, 140, 0), units(|u| u.sold)),
    ];
    let end = figures
        .samples
        .last()
        .map_or(figures.duration_s, |s| s.at_ms as f64 / 1_000.0);
    line_plot("Stock over time (units)", "units", end, series)
}

/// One chart of `series` against seconds since the opening, as an SVG element.
fn line_plot(caption: &str, unit: &str, end_s: f64, series: Vec<Series>) -> anyhow::Result<String> {
    let start = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(x, _)| *x))
        .fold(0.0_f64, f64::min);
    let end = end_s.max(start + 0.001);
    let top = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(start..end, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the opening")
            .y_desc(unit)
            .draw()?;
        for (name, color, points) in series {
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}
