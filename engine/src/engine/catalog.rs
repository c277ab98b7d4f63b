//! The engine's catalog and wishlist operations. Every product answer carries its stock read
//! from the SKU counter at that moment, never from a cache.

use crate::catalog::{
    CatalogError, NewProduct, Product, ProductChange, ProductStatus, ProductVersion,
};
use crate::clock::Millis;
use crate::counter::StockCounts;
use crate::error::EngineError;
use crate::ids::{ProductId, Sku, UserId};
use crate::record::ProductKind;
use crate::wal::Ticket;
use crate::wishlist::WishItem;

use super::Engine;

/// A product with its live stock and status.
#[derive(Debug, Clone)]
pub struct ProductView {
    /// The product, every version included.
    pub product: Product,
    /// Its SKU's units (available, reserved, sold), read from the counter at `as_of_ms`.
    pub counts: StockCounts,
    /// Whether it can be bought at `as_of_ms`, from its sale window and `counts`.
    pub status: ProductStatus,
    /// When the stock was read and the status decided, in ms since the Unix epoch.
    pub as_of_ms: Millis,
}

impl Engine {
    /// Creates a product, with a SKU of the same id holding its `stock_total` units. Answers
    /// the product as it is now and a `Ticket`: the product is durable once it is waited on.
    ///
    /// Errors: `InvalidProduct` for a form that breaks a rule (name, description, price,
    /// currency, a sale window that does not fit the kind, a per-customer limit of 0), and
    /// `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn create_product(&self, new: NewProduct) -> Result<(ProductView, Ticket), EngineError> {
        // Validated before an id is handed out, so a refused product uses up no id.
        crate::catalog::validate_new(&new)?;
        let id = self.inner.state.catalog.allocate_id();
        let wal = self.ready_wal()?;
        let (product, ticket) = self
            .inner
            .state
            .create_product(id, new, self.now_ms(), |r| wal.append(r))?;
        Ok((self.view_of(product), ticket))
    }

    /// Adds a version with the changed fields; orders keep pointing at the version they used.
    /// A change that changes nothing adds no version (and answers no ticket).
    pub fn update_product(
        &self,
        id: ProductId,
        change: ProductChange,
    ) -> Result<Option<Ticket>, EngineError> {
        let wal = self.ready_wal()?;
        let (_, ticket) = self
            .inner
            .state
            .update_product(id, &change, self.now_ms(), |r| wal.append(r))?;
        Ok(ticket)
    }

    /// Adds `quantity` units to a product's stock. Answers a `Ticket`: the units are durable
    /// (and on sale) once it is waited on.
    ///
    /// Errors: `ProductNotFound`, then those of `restock` (`InvalidQuantity` for 0 units,
    /// `StockLimitExceeded`, `ShuttingDown`, `LogFailed`).
    pub fn restock_product(&self, id: ProductId, quantity: u32) -> Result<Ticket, EngineError> {
        if !self.inner.state.catalog.contains(id) {
            return Err(CatalogError::ProductNotFound(id).into());
        }
        self.restock(Sku(id.0), quantity)
    }

    /// A product with its stock and status now; `None` for an id the catalog does not know.
    pub fn product(&self, id: ProductId) -> Option<ProductView> {
        self.inner.state.catalog.get(id).map(|p| self.view_of(p))
    }

    /// One version of a product (numbered from 1), as an order that used it shows it; `None`
    /// if the product or that version does not exist.
    pub fn product_version(&self, id: ProductId, version: u32) -> Option<ProductVersion> {
        self.inner.state.catalog.get(id)?.version(version).cloned()
    }

    /// A page of products after `after`, in id order, filtered by kind and live status.
    pub fn list_products(
        &self,
        after: Option<ProductId>,
        limit: usize,
        kind: Option<ProductKind>,
        status: Option<ProductStatus>,
    ) -> Vec<ProductView> {
        /// Products looked at per turn of the catalog lock.
        const SCAN_CHUNK: usize = 256;
        let mut views = Vec::new();
        let mut cursor = after;
        loop {
            // Copied out under the catalog lock; their stock is read once it is released. The
            // catalog lock and a SKU shard are never nested (ARCHITECTURE.md, "Lock order"):
            // a status filter must not read SKU counters under it.
            let candidates = self
                .inner
                .state
                .catalog
                .page(cursor, SCAN_CHUNK, |p| kind.is_none_or(|k| p.kind == k));
            let exhausted = candidates.len() < SCAN_CHUNK;
            for product in candidates {
                cursor = Some(product.id);
                let view = self.view_of(product);
                if status.is_none_or(|s| view.status == s) {
                    views.push(view);
                    if views.len() == limit {
                        return views;
                    }
                }
            }
            if exhausted {
                return views;
            }
        }
    }

    /// A product's stock and status now, without copying the product: what the live stock
    /// feed polls.
    pub fn stock_status(&self, id: ProductId) -> Option<(StockCounts, ProductStatus, Millis)> {
        let now = self.now_ms();
        let counts = self.stock(Sku(id.0))?;
        let status = self.inner.state.catalog.status_of(id, counts, now)?;
        Some((counts, status, now))
    }

    /// Whether the catalog holds no product (the demo catalog is loaded only into an empty one).
    pub fn catalog_is_empty(&self) -> bool {
        self.inner.state.catalog.is_empty()
    }

    // ----- wishlists -----------------------------------------------------------------------

    /// The caller's wishlist, each item with its product as it is now.
    pub fn wishlist(&self, user: UserId) -> Vec<(WishItem, Option<ProductView>)> {
        self.inner
            .state
            .wishlists
            .list(user)
            .into_iter()
            .map(|item| {
                let product = self.product(item.product);
                (item, product)
            })
            .collect()
    }

    /// Adds a product to the user's wishlist, or changes its quantity and note; the first
    /// add's time is kept. Answers the item as stored and a `Ticket`: the change is durable
    /// once it is waited on.
    ///
    /// Errors: `ProductNotFound`; `InvalidWishlistItem` for a quantity outside 1 to 99 units, a
    /// note over 500 characters, or a new product on a list of 200; and `ShuttingDown` or
    /// `LogFailed` when the log takes no writes.
    pub fn put_wishlist_item(
        &self,
        user: UserId,
        product: ProductId,
        quantity: u32,
        note: String,
    ) -> Result<(WishItem, Ticket), EngineError> {
        if !self.inner.state.catalog.contains(product) {
            return Err(CatalogError::ProductNotFound(product).into());
        }
        let item = WishItem {
            product,
            quantity,
            note,
            added_ms: self.now_ms(),
        };
        let wal = self.ready_wal()?;
        self.inner
            .state
            .wishlists
            .put(user, item, &|r| wal.append(r.into()))
    }

    /// Takes a product off the user's wishlist. Answers a `Ticket` (durable once waited), or
    /// `None` if the product was not on the list and nothing changed.
    ///
    /// Errors: `ShuttingDown` or `LogFailed` when the log takes no writes.
    pub fn remove_wishlist_item(
        &self,
        user: UserId,
        product: ProductId,
    ) -> Result<Option<Ticket>, EngineError> {
        let wal = self.ready_wal()?;
        self.inner
            .state
            .wishlists
            .remove(user, product, &|r| wal.append(r.into()))
    }

    fn view_of(&self, product: Product) -> ProductView {
        let now = self.now_ms();
        let counts = self.stock(product.sku()).unwrap_or_default();
        ProductView {
            status: product.status(counts, now),
            counts,
            product,
            as_of_ms: now,
        }
    }
}
