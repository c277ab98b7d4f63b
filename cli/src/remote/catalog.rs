//! `allot admin products …` and `allot admin drops …`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::table::{Table, cell};
use super::{Client, print_json};

#[derive(Subcommand)]
pub enum ProductsCommand {
    /// Create products from flags, or from a JSON or TOML file of one or many.
    ///
    /// Example: allot admin products create --name "Canvas Tote" --price 19000 --stock 500
    ///
    /// Example: allot admin products create --file catalog.toml (a TOML file holds one
    /// product's fields at the top level, or a `[[products]]` table per product; a JSON file
    /// one object or an array of them; the fields are those of POST /admin/products)
    Create(CreateArgs),
    /// Change a product's details or sale window (a new version; orders keep theirs).
    ///
    /// Example: allot admin products update prd_3 --price 21000
    Update(UpdateArgs),
    /// Add units to a product's stock.
    ///
    /// Example: allot admin products restock prd_3 --quantity 200
    Restock(RestockArgs),
    /// List products, with the remaining stock of the moment.
    ///
    /// Example: allot admin products list --status on_sale
    List(ListArgs),
    /// Show one product and its stock (remaining, reserved, sold).
    ///
    /// Example: allot admin products show prd_3
    Show(ShowArgs),
}

#[derive(Subcommand)]
pub enum DropsCommand {
    /// Schedule a drop: a limited product with its sale window, stock and per-customer limit,
    /// in one command.
    ///
    /// Example: allot admin drops schedule --name "Sneaker 01" --price 129000 --stock 100
    /// --opens 2026-12-24T12:00:00Z --closes 2026-12-24T13:00:00Z --limit 1
    Schedule(ScheduleArgs),
    /// Watch one drop live until its sale closes: remaining, reserved and sold as they change
    /// (the stock stream), placements per second, refusals by reason and the p99 latency of
    /// POST /orders since the watch began (GET /metrics). A line a tick; --json prints each
    /// as one JSON line.
    ///
    /// Example: allot admin drops watch prd_7 --interval-ms 500
    Watch(super::watch::WatchArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// A JSON or TOML file (by its extension) of one product or many; no other flag with it.
    #[arg(long, conflicts_with_all = ["name", "price", "stock", "kind", "description", "currency", "opens", "closes", "limit"])]
    file: Option<PathBuf>,
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    /// Price in the currency's minor unit (KRW has none: 19000 is ₩19,000).
    #[arg(long, required_unless_present = "file")]
    price: Option<u64>,
    /// Units on sale at the start.
    #[arg(long, required_unless_present = "file")]
    stock: Option<u64>,
    /// `general` or `limited` (a limited product needs --opens and --closes).
    #[arg(long, default_value = "general")]
    kind: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// ISO 4217; the server's default (KRW) when left out.
    #[arg(long)]
    currency: Option<String>,
    /// When the sale opens, RFC 3339 (limited products).
    #[arg(long)]
    opens: Option<String>,
    /// When the sale closes, RFC 3339 (limited products).
    #[arg(long)]
    closes: Option<String>,
    /// Units one customer may buy in all.
    #[arg(long)]
    limit: Option<u64>,
}

#[derive(clap::Args)]
pub struct ScheduleArgs {
    #[arg(long)]
    name: String,
    /// Price in the currency's minor unit.
    #[arg(long)]
    price: u64,
    /// Units in the drop.
    #[arg(long)]
    stock: u64,
    /// When the sale opens, RFC 3339.
    #[arg(long)]
    opens: String,
    /// When the sale closes, RFC 3339.
    #[arg(long)]
    closes: String,
    /// Units one customer may buy in all.
    #[arg(long)]
    limit: Option<u64>,
    #[arg(long)]
    description: Option<String>,
    /// ISO 4217; the server's default (KRW) when left out.
    #[arg(long)]
    currency: Option<String>,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// The product's id (`prd_…`).
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    price: Option<u64>,
    #[arg(long)]
    currency: Option<String>,
    /// A new opening of the sale, RFC 3339 (limited products).
    #[arg(long)]
    opens: Option<String>,
    /// A new closing of the sale, RFC 3339 (limited products).
    #[arg(long)]
    closes: Option<String>,
}

#[derive(clap::Args)]
pub struct RestockArgs {
    /// The product's id (`prd_…`).
    id: String,
    /// Units to add.
    #[arg(long)]
    quantity: u64,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// `general` or `limited`.
    #[arg(long)]
    kind: Option<String>,
    /// `upcoming`, `on_sale`, `sold_out` or `closed`.
    #[arg(long)]
    status: Option<String>,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The product's id (`prd_…`).
    id: String,
}

/// The fields given, without the ones left out.
fn fields(pairs: [(&str, Option<Value>); 9]) -> Value {
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
        .collect();
    Value::Object(map)
}

/// The products of a file: a JSON object or array, or TOML (one product's fields at the top
/// level, or a `products` array of tables).
fn products_of_file(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let value: Value = if is_toml {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
        serde_json::to_value(table)?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
    };
    let products = match value {
        Value::Array(items) => items,
        Value::Object(mut map) if map.contains_key("products") => match map.remove("products") {
            Some(Value::Array(items)) => items,
            _ => bail!("`products` in {} is not a list of products", path.display()),
        },
        object @ Value::Object(_) => vec![object],
        _ => bail!(
            "{} holds neither a product nor a list of them",
            path.display()
        ),
    };
    if products.is_empty() {
        bail!("{} holds no product", path.display());
    }
    Ok(products)
}

pub async fn run_products(client: &mut Client, command: ProductsCommand) -> anyhow::Result<()> {
    match command {
        ProductsCommand::Create(args) => {
            let products = match &args.file {
                Some(path) => products_of_file(path)?,
                None => vec![fields([
                    ("name", args.name.map(Value::from)),
                    ("description", args.description.map(Value::from)),
                    ("price", args.price.map(Value::from)),
                    ("currency", args.currency.map(Value::from)),
                    ("kind", args.kind.map(Value::from)),
                    ("sale_opens_at", args.opens.map(Value::from)),
                    ("sale_closes_at", args.closes.map(Value::from)),
                    ("per_user_limit", args.limit.map(Value::from)),
                    ("stock_total", args.stock.map(Value::from)),
                ])],
            };
            let mut created = Vec::with_capacity(products.len());
            for (at, product) in products.iter().enumerate() {
                let made = client
                    .post("/admin/products", Some(product))
                    .await
                    .with_context(|| {
                        let name = product["name"].as_str().unwrap_or("?");
                        match created.len() {
                            0 => format!("product {} ({name:?}) refused", at + 1),
                            n => format!(
                                "product {} ({name:?}) refused; the {n} before it were created",
                                at + 1
                            ),
                        }
                    })?;
                created.push(made);
            }
            print_products(client, &created)
        }
        ProductsCommand::Update(args) => {
            let change = fields([
                ("name", args.name.map(Value::from)),
                ("description", args.description.map(Value::from)),
                ("price", args.price.map(Value::from)),
                ("currency", args.currency.map(Value::from)),
                ("sale_opens_at", args.opens.map(Value::from)),
                ("sale_closes_at", args.closes.map(Value::from)),
                ("kind", None),
                ("per_user_limit", None),
                ("stock_total", None),
            ]);
            if change.as_object().is_some_and(Map::is_empty) {
                bail!(
                    "nothing to change: give at least one of --name, --description, --price, --currency, --opens, --closes"
                );
            }
            let product = client
                .patch(&format!("/admin/products/{}", args.id), &change)
                .await?;
            print_products(client, &[product])
        }
        ProductsCommand::Restock(args) => {
            let stock = client
                .post(
                    &format!("/admin/products/{}/restock", args.id),
                    Some(&json!({ "quantity": args.quantity })),
                )
                .await?;
            print_stock(client, &stock)
        }
        ProductsCommand::List(args) => {
            let mut query = Vec::new();
            if let Some(kind) = &args.kind {
                query.push(format!("kind={kind}"));
            }
            if let Some(status) = &args.status {
                query.push(format!("status={status}"));
            }
            let path = match query.is_empty() {
                true => "/products".to_string(),
                false => format!("/products?{}", query.join("&")),
            };
            let products = client.list_all(&path).await?;
            print_products(client, &products)
        }
        ProductsCommand::Show(args) => {
            let product = client.get(&format!("/products/{}", args.id)).await?;
            let stock = client.get(&format!("/products/{}/stock", args.id)).await?;
            if client.json {
                return print_json(&json!({ "product": product, "stock": stock }));
            }
            for (label, field) in [
                ("id", "id"),
                ("name", "name"),
                ("kind", "kind"),
                ("status", "status"),
                ("price", "price"),
                ("currency", "currency"),
                ("sale opens", "sale_opens_at"),
                ("sale closes", "sale_closes_at"),
                ("per customer", "per_user_limit"),
                ("stock total", "stock_total"),
                ("version", "version"),
            ] {
                println!("{label:<13} {}", cell(&product[field]));
            }
            for field in ["remaining", "reserved", "sold"] {
                println!("{field:<13} {}", cell(&stock[field]));
            }
            Ok(())
        }
    }
}

pub async fn run_drops(client: &mut Client, command: DropsCommand) -> anyhow::Result<()> {
    let args = match command {
        DropsCommand::Schedule(args) => args,
        DropsCommand::Watch(args) => return super::watch::run(client, args).await,
    };
    let product = fields([
        ("name", Some(args.name.into())),
        ("description", args.description.map(Value::from)),
        ("price", Some(args.price.into())),
        ("currency", args.currency.map(Value::from)),
        ("kind", Some("limited".into())),
        ("sale_opens_at", Some(args.opens.into())),
        ("sale_closes_at", Some(args.closes.into())),
        ("per_user_limit", args.limit.map(Value::from)),
        ("stock_total", Some(args.stock.into())),
    ]);
    let created = client.post("/admin/products", Some(&product)).await?;
    print_products(client, &[created])
}

fn print_products(client: &Client, products: &[Value]) -> anyhow::Result<()> {
    if client.json {
        return print_json(&Value::Array(products.to_vec()));
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "KIND",
        "STATUS",
        "PRICE",
        "REMAINING",
        "TOTAL",
        "OPENS",
        "CLOSES",
    ]);
    for product in products {
        table.row(vec![
            cell(&product["id"]),
            cell(&product["name"]),
            cell(&product["kind"]),
            cell(&product["status"]),
            format!("{} {}", cell(&product["price"]), cell(&product["currency"])),
            cell(&product["remaining"]),
            cell(&product["stock_total"]),
            cell(&product["sale_opens_at"]),
            cell(&product["sale_closes_at"]),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn print_stock(client: &Client, stock: &Value) -> anyhow::Result<()> {
    if client.json {
        return print_json(stock);
    }
    let mut table = Table::new(&["PRODUCT", "STATUS", "REMAINING", "RESERVED", "SOLD"]);
    table.row(
        ["product_id", "status", "remaining", "reserved", "sold"]
            .iter()
            .map(|field| cell(&stock[*field]))
            .collect(),
    );
    print!("{}", table.render());
    Ok(())
}
