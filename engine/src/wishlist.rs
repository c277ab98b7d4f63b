//! Wishlists as a view of the log: per customer, the products they want and how many.

use std::collections::BTreeMap;

use const_format::concatcp;
use dashmap::DashMap;
use rkyv::{Archive, Deserialize, Serialize};

use crate::catalog::CatalogError;
use crate::clock::Millis;
use crate::error::{ApplyError, EngineError};
use crate::ids::{ProductId, UserId};
use crate::record::{CatalogRecord, Seq};
use crate::wal::Ticket;

/// Most products on one wishlist.
pub const WISHLIST_ITEMS_MAX: usize = 200;
/// Most units of one product a wishlist item may ask for.
pub const WISHLIST_QUANTITY_MAX: u32 = 99;
/// Longest note on a wishlist item, in characters.
pub const WISHLIST_NOTE_CHARS_MAX: usize = 500;

/// One product on a customer's wishlist: how many they want and a note of theirs.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WishItem {
    /// The product wanted.
    pub product: ProductId,
    /// Units wanted, 1 to 99.
    pub quantity: u32,
    /// The customer's note, up to 500 characters; may be empty.
    pub note: String,
    /// When the product was first added (ms since the epoch); a later change keeps it.
    pub added_ms: Millis,
}

#[derive(Debug, Default)]
pub struct Wishlists {
    items: DashMap<UserId, BTreeMap<ProductId, WishItem>>,
}

impl Wishlists {
    pub fn list(&self, user: UserId) -> Vec<WishItem> {
        self.items
            .get(&user)
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a product or changes its quantity and note; `added_ms` stays that of the first add.
    pub fn put(
        &self,
        user: UserId,
        item: WishItem,
        append: &dyn Fn(CatalogRecord) -> Result<Ticket, EngineError>,
    ) -> Result<(WishItem, Ticket), EngineError> {
        if !(1..=WISHLIST_QUANTITY_MAX).contains(&item.quantity) {
            return Err(CatalogError::InvalidWishlistItem(concatcp!(
                "quantity must be 1 to ",
                WISHLIST_QUANTITY_MAX
            ))
            .into());
        }
        if item.note.chars().count() > WISHLIST_NOTE_CHARS_MAX {
            return Err(CatalogError::InvalidWishlistItem(concatcp!(
                "note is over ",
                WISHLIST_NOTE_CHARS_MAX,
                " characters"
            ))
            .into());
        }
        let mut items = self.items.entry(user).or_default();
        if !items.contains_key(&item.product) && items.len() >= WISHLIST_ITEMS_MAX {
            return Err(CatalogError::InvalidWishlistItem(concatcp!(
                "a wishlist holds at most ",
                WISHLIST_ITEMS_MAX,
                " products"
            ))
            .into());
        }
        let ticket = append(CatalogRecord::WishlistItemPut {
            user,
            product: item.product,
            quantity: item.quantity,
            note: item.note.clone(),
            at_ms: item.added_ms,
        })?;
        let stored = put_in(&mut items, item);
        Ok((stored, ticket))
    }

    pub fn remove(
        &self,
        user: UserId,
        product: ProductId,
        append: &dyn Fn(CatalogRecord) -> Result<Ticket, EngineError>,
    ) -> Result<Option<Ticket>, EngineError> {
        let Some(mut items) = self.items.get_mut(&user) else {
            return Ok(None);
        };
        if !items.contains_key(&product) {
            return Ok(None);
        }
        let ticket = append(CatalogRecord::WishlistItemRemoved { user, product })?;
        items.remove(&product);
        Ok(Some(ticket))
    }

    pub fn apply(&self, seq: Seq, record: &CatalogRecord) -> Result<bool, ApplyError> {
        match record {
            CatalogRecord::WishlistItemPut {
                user,
                product,
                quantity,
                note,
                at_ms,
            } => {
                let mut items = self.items.entry(*user).or_default();
                put_in(
                    &mut items,
                    WishItem {
                        product: *product,
                        quantity: *quantity,
                        note: note.clone(),
                        added_ms: *at_ms,
                    },
                );
            }
            CatalogRecord::WishlistItemRemoved { user, product } => {
                let removed = self
                    .items
                    .get_mut(user)
                    .and_then(|mut items| items.remove(product));
                if removed.is_none() {
                    return Err(ApplyError {
                        seq,
                        reason: format!("{user} removed {product}, which was not on the wishlist"),
                    });
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn image(&self) -> Vec<(UserId, Vec<WishItem>)> {
        let mut all: Vec<(UserId, Vec<WishItem>)> = self
            .items
            .iter()
            .filter(|e| !e.value().is_empty())
            .map(|e| (*e.key(), e.value().values().cloned().collect()))
            .collect();
        all.sort_by_key(|(user, _)| *user);
        all
    }

    pub fn from_image(image: &[(UserId, Vec<WishItem>)]) -> Self {
        let lists = Self::default();
        for (user, items) in image {
            lists.items.insert(
                *user,
                items.iter().map(|i| (i.product, i.clone())).collect(),
            );
        }
        lists
    }
}

fn put_in(items: &mut BTreeMap<ProductId, WishItem>, item: WishItem) -> WishItem {
    let stored = match items.get(&item.product) {
        Some(existing) => WishItem {
            added_ms: existing.added_ms,
            ..item
        },
        None => item,
    };
    items.insert(stored.product, stored.clone());
    stored
}
