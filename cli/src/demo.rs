//! The demo catalog (`data/catalog.json`, built into the binary) that a fresh data directory is
//! seeded with, so a newcomer sees every product status at once.

use serde::Deserialize;

use allot_engine::{Engine, Millis, NewProduct, ProductDetails, ProductKind};

const CATALOG_JSON: &str = include_str!("../../data/catalog.json");
const MINUTE_MS: i64 = 60_000;

#[derive(Deserialize)]
struct DemoCatalog {
    products: Vec<DemoProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoProduct {
    name: String,
    description: String,
    price: u64,
    currency: String,
    kind: String,
    sale_opens_in_minutes: Option<i64>,
    sale_closes_in_minutes: Option<i64>,
    per_user_limit: Option<u32>,
    stock_total: u32,
}

/// Loads the demo catalog if the catalog is empty; answers how many products it created.
pub fn seed_if_empty(engine: &Engine) -> anyhow::Result<usize> {
    if !engine.catalog_is_empty() {
        return Ok(0);
    }
    let catalog: DemoCatalog = serde_json::from_str(CATALOG_JSON)?;
    let now = engine.now_ms();
    let at = |minutes: i64| -> Millis {
        u64::try_from(i64::try_from(now).unwrap_or(i64::MAX) + minutes * MINUTE_MS).unwrap_or(0)
    };
    let count = catalog.products.len();
    for p in catalog.products {
        let kind = match p.kind.as_str() {
            "limited" => ProductKind::Limited,
            _ => ProductKind::General,
        };
        let (_, ticket) = engine.create_product(NewProduct {
            kind,
            details: ProductDetails {
                name: p.name,
                description: p.description,
                price: p.price,
                currency: p.currency,
            },
            sale_opens_ms: p.sale_opens_in_minutes.map(at),
            sale_closes_ms: p.sale_closes_in_minutes.map(at),
            per_user_limit: p.per_user_limit,
            stock_total: p.stock_total,
        })?;
        ticket.wait()?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_catalog_parses() {
        let catalog: super::DemoCatalog = serde_json::from_str(super::CATALOG_JSON).unwrap();
        assert_eq!(catalog.products.len(), 4);
    }
}
