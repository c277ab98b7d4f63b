//! `allot admin orders …`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::table::{Table, cell};
use super::{Client, print_json};

#[derive(Subcommand)]
pub enum OrdersCommand {
    /// List orders, newest first.
    ///
    /// Example: allot admin orders list --status paid
    List(ListArgs),
    /// Show one order of any customer, with its address and history.
    ///
    /// Example: allot admin orders show ord_42
    Show(IdArg),
    /// Mark a paid order shipped.
    ///
    /// Example: allot admin orders ship ord_42 --carrier CJ --tracking 6412-0001
    Ship(ShipArgs),
    /// Mark a shipped order delivered (its return window starts).
    ///
    /// Example: allot admin orders deliver ord_42
    Deliver(IdArg),
    /// Approve a requested return: the order is refunded and its units go back on sale.
    ///
    /// Example: allot admin orders approve-return ord_42
    ApproveReturn(IdArg),
    /// Write every order (or those of one status) as JSON lines or CSV.
    ///
    /// Example: allot admin orders export --format csv --output orders.csv
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only orders in this status (`pending_payment`, `paid`, `shipped`, …).
    #[arg(long)]
    status: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(clap::Args)]
pub struct IdArg {
    /// The order's id (`ord_…`).
    id: String,
}

#[derive(clap::Args)]
pub struct ShipArgs {
    /// The order's id (`ord_…`).
    id: String,
    #[arg(long)]
    carrier: String,
    /// The carrier's tracking number.
    #[arg(long)]
    tracking: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One order's JSON per line, as the API answers it.
    Jsonl,
    /// One line per order: id, status, created_at, total, currency, payment, items, tracking.
    Csv,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: Format,
    /// Only orders in this status.
    #[arg(long)]
    status: Option<String>,
    /// Write here instead of to standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn admin_list_path(status: Option<&str>) -> String {
    match status {
        Some(status) => format!("/admin/orders?status={status}"),
        None => "/admin/orders".to_string(),
    }
}

pub async fn run(client: &mut Client, command: OrdersCommand) -> anyhow::Result<()> {
    match command {
        OrdersCommand::List(args) => {
            let orders = client
                .list_up_to(&admin_list_path(args.status.as_deref()), args.limit)
                .await?;
            print_orders(client, &orders)
        }
        OrdersCommand::Show(args) => {
            let order = client.get(&format!("/admin/orders/{}", args.id)).await?;
            print_order(client, &order)
        }
        OrdersCommand::Ship(args) => {
            let body = json!({ "carrier": args.carrier, "tracking_number": args.tracking });
            let order = client
                .post(&format!("/admin/orders/{}/ship", args.id), Some(&body))
                .await?;
            print_orders(client, &[order])
        }
        OrdersCommand::Deliver(args) => {
            let order = client
                .post(&format!("/admin/orders/{}/deliver", args.id), None)
                .await?;
            print_orders(client, &[order])
        }
        OrdersCommand::ApproveReturn(args) => {
            let order = client
                .post(&format!("/admin/orders/{}/return/approve", args.id), None)
                .await?;
            print_orders(client, &[order])
        }
        OrdersCommand::Export(args) => {
            let orders = {
                let bar = crate::progress::Bar::counting("orders read");
                client
                    .list_up_to_with(
                        &admin_list_path(args.status.as_deref()),
                        usize::MAX,
                        &mut |n| allot_engine::Progress::advance(&bar, n as u64),
                    )
                    .await?
            };
            let mut out: Box<dyn Write> = match &args.output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            match args.format {
                Format::Jsonl => {
                    for order in &orders {
                        serde_json::to_writer(&mut out, order)?;
                        out.write_all(b"\n")?;
                    }
                }
                Format::Csv => write_csv(&mut out, &orders)?,
            }
            out.flush()?;
            if let Some(path) = &args.output {
                eprintln!("{} orders written to {}", orders.len(), path.display());
            }
            Ok(())
        }
    }
}

/// `product_id×quantity` for each line, `;` between lines.
fn items_text(order: &Value) -> String {
    order["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| format!("{}x{}", cell(&i["product_id"]), cell(&i["quantity"])))
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default()
}

fn tracking_text(order: &Value) -> String {
    match &order["tracking"] {
        Value::Null => String::new(),
        tracking => format!(
            "{} {}",
            cell(&tracking["carrier"]),
            cell(&tracking["tracking_number"])
        ),
    }
}

fn write_csv(out: &mut dyn Write, orders: &[Value]) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record([
        "id",
        "status",
        "created_at",
        "total",
        "currency",
        "payment",
        "items",
        "tracking",
    ])?;
    for order in orders {
        csv.write_record([
            cell(&order["id"]),
            cell(&order["status"]),
            cell(&order["created_at"]),
            cell(&order["total"]),
            cell(&order["currency"]),
            cell(&order["payment"]["status"]),
            items_text(order),
            tracking_text(order),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

fn print_orders(client: &Client, orders: &[Value]) -> anyhow::Result<()> {
    if client.json {
        return print_json(&Value::Array(orders.to_vec()));
    }
    let mut table = Table::new(&[
        "ID", "STATUS", "CREATED", "TOTAL", "PAYMENT", "ITEMS", "TRACKING",
    ]);
    for order in orders {
        table.row(vec![
            cell(&order["id"]),
            cell(&order["status"]),
            cell(&order["created_at"]),
            format!("{} {}", cell(&order["total"]), cell(&order["currency"])),
            cell(&order["payment"]["status"]),
            items_text(order),
            tracking_text(order),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn print_order(client: &Client, order: &Value) -> anyhow::Result<()> {
    if client.json {
        return print_json(order);
    }
    println!("id            {}", cell(&order["id"]));
    println!("status        {}", cell(&order["status"]));
    println!("created       {}", cell(&order["created_at"]));
    println!(
        "total         {} {}",
        cell(&order["total"]),
        cell(&order["currency"])
    );
    println!("payment       {}", cell(&order["payment"]["status"]));
    if !order["tracking"].is_null() {
        println!("tracking      {}", tracking_text(order));
    }
    let address = &order["shipping_address"];
    if address.is_object() {
        let parts: Vec<String> = [
            "recipient",
            "phone",
            "line1",
            "line2",
            "city",
            "postal_code",
            "country",
        ]
        .iter()
        .filter(|f| !address[**f].is_null())
        .map(|f| cell(&address[*f]))
        .collect();
        println!("ship to       {}", parts.join(", "));
    }
    let mut lines = Table::new(&["PRODUCT", "VERSION", "NAME", "UNIT PRICE", "QUANTITY"]);
    for item in order["items"].as_array().into_iter().flatten() {
        lines.row(
            [
                "product_id",
                "product_version",
                "name",
                "unit_price",
                "quantity",
            ]
            .iter()
            .map(|f| cell(&item[*f]))
            .collect(),
        );
    }
    println!();
    print!("{}", lines.render());
    let mut history = Table::new(&["STATUS", "AT"]);
    for step in order["history"].as_array().into_iter().flatten() {
        history.row(vec![cell(&step["status"]), cell(&step["at"])]);
    }
    println!();
    print!("{}", history.render());
    Ok(())
}
