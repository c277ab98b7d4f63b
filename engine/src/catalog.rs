//! The catalog as a view of the log: products, each with every version it ever had, and the
//! sale window that decides when a limited product can be bought.

mod form;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use const_format::concatcp;
use parking_lot::RwLock;
use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;
use crate::counter::StockCounts;
use crate::error::EngineError;
use crate::ids::{ProductId, Sku};
use crate::orders::OrderError;
use crate::record::{ProductDetails, ProductKind};

pub use form::{DEFAULT_CURRENCY, ProductChangeForm, ProductForm};

pub const PRODUCT_NAME_CHARS_MAX: usize = 200;
pub const PRODUCT_DESCRIPTION_CHARS_MAX: usize = 5_000;
/// Highest price in minor units (10^12: a trillion won, ten billion dollars).
pub const PRODUCT_PRICE_MAX: u64 = 1_000_000_000_000;
/// Most versions one product keeps; a further change is refused.
pub const PRODUCT_VERSIONS_MAX: usize = 10_000;

/// One immutable version of a product: its details and sale window as they were from
/// `at_ms` on. A change adds a version; earlier ones stay readable.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProductVersion {
    /// The version's number, from 1 (the product as created), one more per change.
    pub version: u32,
    /// Name, description, price and currency at this version.
    pub details: ProductDetails,
    /// When the sale opens (ms since the epoch), inclusive; limited products only.
    pub sale_opens_ms: Option<Millis>,
    /// When the sale closes (ms since the epoch), exclusive; limited products only.
    pub sale_closes_ms: Option<Millis>,
    /// When this version was made (ms since the epoch).
    pub at_ms: Millis,
}

/// A product in the catalog with every version it ever had; its stock lives in the SKU
/// counter of the same number (`sku`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The product's id; its SKU has the same number.
    pub id: ProductId,
    /// General (buyable any time in stock) or limited (only inside its sale window).
    pub kind: ProductKind,
    /// Units one customer may hold or buy of it in all; `None`: no limit.
    pub per_user_limit: Option<u32>,
    /// When the product was created (ms since the epoch).
    pub created_ms: Millis,
    /// Oldest first; the last is current. Never empty.
    pub versions: Vec<ProductVersion>,
}

/// Whether a product can be bought at a given instant, as shown to customers: decided by the
/// current version's sale window and the units available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductStatus {
    /// The sale window has not opened yet.
    Upcoming,
    /// The sale is open and units are available.
    OnSale,
    /// The sale is open but no unit is available.
    SoldOut,
    /// The sale window has closed.
    Closed,
}

impl ProductStatus {
    /// The status's name on the wire: `upcoming`, `on_sale`, `sold_out` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Upcoming => "upcoming",
            ProductStatus::OnSale => "on_sale",
            ProductStatus::SoldOut => "sold_out",
            ProductStatus::Closed => "closed",
        }
    }

    /// The status named `text` (as `as_str` spells it), or `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Upcoming, Self::OnSale, Self::SoldOut, Self::Closed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl Product {
    /// The SKU that counts this product's stock: the same number as its id.
    pub fn sku(&self) -> Sku {
        Sku(self.id.0)
    }

    /// The current (latest) version.
    pub fn current(&self) -> &ProductVersion {
        self.versions
            .last()
            .expect("a product has at least one version")
    }

    /// Version number `version` (counted from 1), or `None` if the product has no such version.
    pub fn version(&self, version: u32) -> Option<&ProductVersion> {
        self.versions.get((version as usize).checked_sub(1)?)
    }

    /// Whether the sale is open at `now_ms`: the window is half-open, `[opens, closes)`, and
    /// a product without one is always open. The one place the window is decided, for the
    /// status shown and for every purchase.
    pub fn check_sale_open(&self, now_ms: Millis) -> Result<(), EngineError> {
        let current = self.current();
        if current.sale_opens_ms.is_some_and(|opens| now_ms < opens) {
            return Err(OrderError::SaleNotOpen(self.id).into());
        }
        if current
            .sale_closes_ms
            .is_some_and(|closes| now_ms >= closes)
        {
            return Err(OrderError::SaleClosed(self.id).into());
        }
        Ok(())
    }

    /// The status at `now_ms` with `counts` read from the SKU counter.
    pub fn status(&self, counts: StockCounts, now_ms: Millis) -> ProductStatus {
        match self.check_sale_open(now_ms) {
            Err(EngineError::Order(OrderError::SaleNotOpen(_))) => ProductStatus::Upcoming,
            Err(_) => ProductStatus::Closed,
            Ok(()) if counts.available == 0 => ProductStatus::SoldOut,
            Ok(()) => ProductStatus::OnSale,
        }
    }
}

/// A product as its creator describes it.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// General or limited; a limited product needs a sale window, a general one has none.
    pub kind: ProductKind,
    /// Name, description, price and currency of the first version.
    pub details: ProductDetails,
    /// When the sale opens (ms since the epoch), inclusive; limited products only.
    pub sale_opens_ms: Option<Millis>,
    /// When the sale closes (ms since the epoch), exclusive, after the opening.
    pub sale_closes_ms: Option<Millis>,
    /// Units one customer may buy in all; `None`: no limit, `Some(0)` is refused.
    pub per_user_limit: Option<u32>,
    /// Units on sale at the start.
    pub stock_total: u32,
}

/// A change of a product; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductChange {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new price, in the currency's minor units.
    pub price: Option<u64>,
    /// A new currency, an ISO 4217 code.
    pub currency: Option<String>,
    /// A new opening of the sale (ms since the epoch).
    pub sale_opens_ms: Option<Millis>,
    /// A new closing of the sale (ms since the epoch).
    pub sale_closes_ms: Option<Millis>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    products: RwLock<BTreeMap<ProductId, Product>>,
    next_product: AtomicU64,
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            products: RwLock::new(BTreeMap::new()),
            next_product: AtomicU64::new(1),
        }
    }

    pub fn allocate_id(&self) -> ProductId {
        ProductId(self.next_product.fetch_add(1, Ordering::AcqRel))
    }

    /// The whole product, every version included: for reads that show it.
    pub fn get(&self, id: ProductId) -> Option<Product> {
        self.products.read().get(&id).cloned()
    }

    /// `read` applied to the product under the catalog's read lock, cloning nothing: the order
    /// path takes only what it needs of the current version. Keep `read` short and lock-free.
    pub fn read<R>(&self, id: ProductId, read: impl FnOnce(&Product) -> R) -> Option<R> {
        self.products.read().get(&id).map(read)
    }

    pub fn status_of(
        &self,
        id: ProductId,
        counts: StockCounts,
        now_ms: Millis,
    ) -> Option<ProductStatus> {
        self.read(id, |p| p.status(counts, now_ms))
    }

    pub fn contains(&self, id: ProductId) -> bool {
        self.products.read().contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.products.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Products with ids after `after`, in id order, that `keep` accepts; at most `limit`.
    /// `keep` runs under the catalog's read lock: it must take no other lock.
    pub fn page(
        &self,
        after: Option<ProductId>,
        limit: usize,
        mut keep: impl FnMut(&Product) -> bool,
    ) -> Vec<Product> {
        let products = self.products.read();
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        products
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, p)| p)
            .filter(|p| keep(p))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Inserts a new product; the caller holds the SKU's slot and queues the record.
    pub(crate) fn insert(&self, product: Product) -> Result<(), EngineError> {
        let mut products = self.products.write();
        if products.contains_key(&product.id) {
            return Err(CatalogError::InvalidProduct("the product exists").into());
        }
        self.next_product
            .fetch_max(product.id.0 + 1, Ordering::AcqRel);
        products.insert(product.id, product);
        Ok(())
    }

    /// Applies `change` as a new version under the catalog's write lock; `queue` logs it first.
    /// A change that changes nothing adds no version and does not call `queue`.
    pub(crate) fn add_version(
        &self,
        id: ProductId,
        version: Option<ProductVersion>,
        change: &ProductChange,
        at_ms: Millis,
        queue: impl FnOnce(&ProductVersion) -> Result<(), EngineError>,
    ) -> Result<ProductVersion, EngineError> {
        let mut products = self.products.write();
        let product = products
            .get_mut(&id)
            .ok_or(CatalogError::ProductNotFound(id))?;
        if product.versions.len() >= PRODUCT_VERSIONS_MAX {
            return Err(CatalogError::InvalidProduct("the product has too many versions").into());
        }
        let next = match version {
            // Replaying: the record says exactly what the version is.
            Some(version) if version.version as usize == product.versions.len() + 1 => version,
            Some(_) => {
                return Err(CatalogError::InvalidProduct("versions out of order").into());
            }
            None => {
                let current = product.current();
                let details = ProductDetails {
                    name: change
                        .name
                        .clone()
                        .unwrap_or_else(|| current.details.name.clone()),
                    description: change
                        .description
                        .clone()
                        .unwrap_or_else(|| current.details.description.clone()),
                    price: change.price.unwrap_or(current.details.price),
                    currency: change
                        .currency
                        .clone()
                        .unwrap_or_else(|| current.details.currency.clone()),
                };
                let next = ProductVersion {
                    version: current.version + 1,
                    details,
                    sale_opens_ms: change.sale_opens_ms.or(current.sale_opens_ms),
                    sale_closes_ms: change.sale_closes_ms.or(current.sale_closes_ms),
                    at_ms,
                };
                validate(
                    product.kind,
                    &next.details,
                    next.sale_opens_ms,
                    next.sale_closes_ms,
                )?;
                let unchanged = next.details == current.details
                    && next.sale_opens_ms == current.sale_opens_ms
                    && next.sale_closes_ms == current.sale_closes_ms;
                if unchanged {
                    // Nothing to version: the current version stands, nothing is logged.
                    return Ok(current.clone());
                }
                next
            }
        };
        queue(&next)?;
        product.versions.push(next.clone());
        Ok(next)
    }

    pub fn image(&self) -> (u64, Vec<Product>) {
        (
            self.next_product.load(Ordering::Acquire),
            self.products.read().values().cloned().collect(),
        )
    }

    pub fn from_image(next_product: u64, products: &[Product]) -> Self {
        Self {
            products: RwLock::new(products.iter().map(|p| (p.id, p.clone())).collect()),
            next_product: AtomicU64::new(next_product),
        }
    }
}

/// The rules every version of a product keeps.
pub fn validate(
    kind: ProductKind,
    details: &ProductDetails,
    sale_opens_ms: Option<Millis>,
    sale_closes_ms: Option<Millis>,
) -> Result<(), EngineError> {
    let name = details.name.trim();
    if name.is_empty() || name.chars().count() > PRODUCT_NAME_CHARS_MAX {
        return Err(CatalogError::InvalidProduct(concatcp!(
            "name must be 1 to ",
            PRODUCT_NAME_CHARS_MAX,
            " characters"
        ))
        .into());
    }
    if details.description.chars().count() > PRODUCT_DESCRIPTION_CHARS_MAX {
        return Err(CatalogError::InvalidProduct(concatcp!(
            "description is over ",
            PRODUCT_DESCRIPTION_CHARS_MAX,
            " characters"
        ))
        .into());
    }
    if details.price > PRODUCT_PRICE_MAX {
        // The message spells the bound as a power of ten, the way a price is read.
        const _: () = assert!(PRODUCT_PRICE_MAX == 10u64.pow(12));
        return Err(CatalogError::InvalidProduct("price is over 10^12 minor units").into());
    }
    // A payment provider charges at least one minor unit: an order of a free product could
    // be placed but never paid, and would only ever expire.
    if details.price == 0 {
        return Err(CatalogError::InvalidProduct("price must be at least 1 minor unit").into());
    }
    if details.currency.len() != 3 || !details.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(
            CatalogError::InvalidProduct("currency must be an ISO 4217 code such as KRW").into(),
        );
    }
    match (kind, sale_opens_ms, sale_closes_ms) {
        (ProductKind::General, None, None) => Ok(()),
        (ProductKind::General, _, _) => Err(EngineError::Catalog(CatalogError::InvalidProduct(
            "a general product has no sale window",
        ))),
        (ProductKind::Limited, Some(opens), Some(closes)) if opens < closes => Ok(()),
        (ProductKind::Limited, Some(_), Some(_)) => Err(EngineError::Catalog(
            CatalogError::InvalidProduct("sale_closes_at must be after sale_opens_at"),
        )),
        (ProductKind::Limited, _, _) => Err(EngineError::Catalog(CatalogError::InvalidProduct(
            "a limited product needs sale_opens_at and sale_closes_at",
        ))),
    }
}

pub fn validate_new(product: &NewProduct) -> Result<(), EngineError> {
    validate(
        product.kind,
        &product.details,
        product.sale_opens_ms,
        product.sale_closes_ms,
    )?;
    if product.per_user_limit == Some(0) {
        return Err(CatalogError::InvalidProduct("per_user_limit must be at least 1").into());
    }
    Ok(())
}

/// Why a catalog or wishlist step was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The caller named a product the engine does not know.
    #[error("product {0} does not exist")]
    ProductNotFound(ProductId),
    /// A product id that does not parse: the text as it was sent.
    #[error("product {0:?} does not exist")]
    ProductUnknown(String),
    /// A product's form broke a rule (kind, price, stock, sale window), or the product
    /// exists already; the text names the rule.
    #[error("{0}")]
    InvalidProduct(&'static str),
    /// A wishlist change broke a rule (quantity, note length, list size); the text names it.
    #[error("{0}")]
    InvalidWishlistItem(&'static str),
}
