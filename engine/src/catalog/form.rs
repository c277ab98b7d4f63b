//! A product as an admin sends it, parsed once into the engine's [`NewProduct`] and
//! [`ProductChange`]: kinds by name, instants in RFC 3339, money and stock never negative,
//! the default currency. The rules every version keeps are checked later, in `validate`.

use const_format::concatcp;
use serde::Deserialize;

use crate::catalog::CatalogError;
use crate::clock::{Millis, parse_rfc3339};
use crate::error::EngineError;
use crate::record::{ProductDetails, ProductKind};

use super::{NewProduct, ProductChange};

/// The currency of a product created without one.
pub const DEFAULT_CURRENCY: &str = "KRW";

/// A new product as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProductForm {
    /// 1 to 200 characters once trimmed; surrounding whitespace is dropped.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "\\S")
    )]
    pub name: String,
    /// Up to 5,000 characters; empty when left out.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 5000))]
    pub description: String,
    /// Minor units, 1 to 10^12.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1_000_000_000_000_i64)
    )]
    #[serde(deserialize_with = "crate::wire::whole")]
    pub price: i64,
    /// ISO 4217; default `KRW`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$", example = "KRW"))]
    pub currency: Option<String>,
    /// `general` or `limited`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(general|limited)$"))]
    pub kind: String,
    /// Limited products only (and required for them), RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sale_opens_at: Option<String>,
    /// Limited products only (and required for them), after `sale_opens_at`.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sale_closes_at: Option<String>,
    /// Units one customer may buy in all (none: no limit).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4_294_967_295_i64, format = Int64))]
    #[serde(default, deserialize_with = "crate::wire::whole_option")]
    pub per_user_limit: Option<u32>,
    /// Units on sale at the start.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 4_294_967_295_i64))]
    #[serde(deserialize_with = "crate::wire::whole")]
    pub stock_total: i64,
}

/// A change of a product as it arrives; a field left out stays as it is.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProductChangeForm {
    /// A new name, 1 to 200 characters once trimmed.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "\\S")
    )]
    pub name: Option<String>,
    /// A new description, up to 5,000 characters.
    #[cfg_attr(feature = "openapi", schema(max_length = 5000))]
    pub description: Option<String>,
    /// A new price in minor units, 1 to 10^12.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1_000_000_000_000_i64)
    )]
    #[serde(default, deserialize_with = "crate::wire::whole_option")]
    pub price: Option<i64>,
    /// A new currency, ISO 4217.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$"))]
    pub currency: Option<String>,
    /// A new opening of the sale, RFC 3339; limited products only.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sale_opens_at: Option<String>,
    /// A new closing of the sale, RFC 3339, after the opening; limited products only.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub sale_closes_at: Option<String>,
}

fn kind(text: &str) -> Result<ProductKind, EngineError> {
    match text {
        "general" => Ok(ProductKind::General),
        "limited" => Ok(ProductKind::Limited),
        _ => Err(EngineError::Catalog(CatalogError::InvalidProduct(
            "kind must be general or limited",
        ))),
    }
}

fn price(minor_units: i64) -> Result<u64, EngineError> {
    u64::try_from(minor_units).map_err(|_| {
        EngineError::Catalog(CatalogError::InvalidProduct("price must not be negative"))
    })
}

fn instant(text: Option<&str>, refusal: &'static str) -> Result<Option<Millis>, EngineError> {
    text.map(|text| {
        parse_rfc3339(text).ok_or(EngineError::Catalog(CatalogError::InvalidProduct(refusal)))
    })
    .transpose()
}

/// The sale window's two instants, each absent or RFC 3339.
fn window(
    opens: Option<&str>,
    closes: Option<&str>,
) -> Result<(Option<Millis>, Option<Millis>), EngineError> {
    Ok((
        instant(opens, "sale_opens_at must be RFC 3339")?,
        instant(closes, "sale_closes_at must be RFC 3339")?,
    ))
}

impl TryFrom<ProductForm> for NewProduct {
    type Error = EngineError;

    fn try_from(form: ProductForm) -> Result<Self, Self::Error> {
        // One record carries up to u32::MAX units; restocks add more (a SKU's lifetime bound
        // is `SKU_UNITS_MAX`, `stock_limit_exceeded`).
        let stock_total = u32::try_from(form.stock_total).map_err(|_| {
            EngineError::Catalog(CatalogError::InvalidProduct(concatcp!(
                "stock_total must be 0 to ",
                u32::MAX
            )))
        })?;
        let (sale_opens_ms, sale_closes_ms) = window(
            form.sale_opens_at.as_deref(),
            form.sale_closes_at.as_deref(),
        )?;
        Ok(NewProduct {
            kind: kind(&form.kind)?,
            details: ProductDetails {
                name: form.name.trim().to_string(),
                description: form.description,
                price: price(form.price)?,
                currency: form.currency.unwrap_or_else(|| DEFAULT_CURRENCY.into()),
            },
            sale_opens_ms,
            sale_closes_ms,
            per_user_limit: form.per_user_limit,
            stock_total,
        })
    }
}

impl TryFrom<ProductChangeForm> for ProductChange {
    type Error = EngineError;

    fn try_from(form: ProductChangeForm) -> Result<Self, Self::Error> {
        let (sale_opens_ms, sale_closes_ms) = window(
            form.sale_opens_at.as_deref(),
            form.sale_closes_at.as_deref(),
        )?;
        Ok(ProductChange {
            name: form.name.map(|name| name.trim().to_string()),
            description: form.description,
            price: form.price.map(price).transpose()?,
            currency: form.currency,
            sale_opens_ms,
            sale_closes_ms,
        })
    }
}

// The schema attributes repeat the limits as literals (attributes take no constants).
const _: () = assert!(super::PRODUCT_NAME_CHARS_MAX == 200);
const _: () = assert!(super::PRODUCT_DESCRIPTION_CHARS_MAX == 5_000);
const _: () = assert!(super::PRODUCT_PRICE_MAX == 1_000_000_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ProductForm {
        ProductForm {
            name: "  Tote  ".into(),
            description: String::new(),
            price: 129_000,
            currency: None,
            kind: "limited".into(),
            sale_opens_at: Some("2026-12-24T10:00:00Z".into()),
            sale_closes_at: Some("2026-12-24T11:00:00Z".into()),
            per_user_limit: Some(2),
            stock_total: 100,
        }
    }

    #[test]
    fn a_form_becomes_a_new_product_with_the_defaults() {
        let new = NewProduct::try_from(form()).unwrap();
        assert_eq!(new.details.name, "Tote");
        assert_eq!(new.details.currency, DEFAULT_CURRENCY);
        assert_eq!(new.kind, ProductKind::Limited);
        assert_eq!(new.sale_opens_ms, parse_rfc3339("2026-12-24T10:00:00Z"));
        assert_eq!(new.stock_total, 100);
    }

    #[test]
    fn wrong_kinds_negative_numbers_and_bad_instants_are_refused() {
        let cases: [fn(&mut ProductForm); 5] = [
            |f| f.kind = "rare".into(),
            |f| f.price = -1,
            |f| f.stock_total = -1,
            |f| f.stock_total = i64::from(u32::MAX) + 1,
            |f| f.sale_opens_at = Some("tomorrow".into()),
        ];
        for (n, break_it) in cases.into_iter().enumerate() {
            let mut broken = form();
            break_it(&mut broken);
            assert!(
                matches!(
                    NewProduct::try_from(broken),
                    Err(EngineError::Catalog(CatalogError::InvalidProduct(_)))
                ),
                "case {n}"
            );
        }
    }
}
