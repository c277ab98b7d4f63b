//! Whose order each id is, for the hot tier: the cold tier keys orders by (user, id), and a read
//! by id alone starts here. Dense by id (ids grow from 1 with creation): 4 bytes an order, so
//! even ten million orders take 40 MB; the rare user id past `u32` range, or an id far past the
//! dense end, goes to a small side map.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{OrderId, UserId};

/// Marks an id that no order has (allocated to a placement that was refused).
const NONE: u32 = u32::MAX;
/// How far past the dense end an id may lie and still extend it.
const DENSE_GAP_MAX: u64 = 1 << 20;

#[derive(Debug, Default)]
pub struct OrderUsers {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Inner {
    dense: Vec<u32>,
    wide: BTreeMap<u64, u64>,
}

/// The map as a snapshot stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderUsersImage {
    /// `dense[id]` is the user of order `id`, or `u32::MAX` for none.
    pub dense: Vec<u32>,
    pub wide: Vec<(u64, u64)>,
}

impl OrderUsers {
    pub fn set(&self, id: OrderId, user: UserId) {
        let mut inner = self.inner.write();
        let dense_end = inner.dense.len() as u64;
        match u32::try_from(user.0) {
            Ok(user) if user != NONE && id.0 < dense_end + DENSE_GAP_MAX => {
                let at = id.0 as usize;
                if at >= inner.dense.len() {
                    inner.dense.resize(at + 1, NONE);
                }
                inner.dense[at] = user;
            }
            _ => {
                inner.wide.insert(id.0, user.0);
            }
        }
    }

    pub fn get(&self, id: OrderId) -> Option<UserId> {
        let inner = self.inner.read();
        match inner.dense.get(id.0 as usize) {
            Some(&user) if user != NONE => Some(UserId(u64::from(user))),
            _ => inner.wide.get(&id.0).map(|&user| UserId(user)),
        }
    }

    /// Up to `limit` ids that have an order, newest first, below `before`, with their users.
    pub fn newest(&self, before: Option<OrderId>, limit: usize) -> Vec<(OrderId, UserId)> {
        let inner = self.inner.read();
        let end = before.map_or(u64::MAX, |b| b.0);
        let mut dense = (1..(inner.dense.len() as u64).min(end))
            .rev()
            .filter_map(|id| {
                let user = inner.dense[id as usize];
                (user != NONE).then_some((id, u64::from(user)))
            })
            .peekable();
        let mut wide = inner
            .wide
            .range(..end)
            .rev()
            .map(|(&id, &u)| (id, u))
            .peekable();
        let mut found = Vec::with_capacity(limit.min(1_024));
        while found.len() < limit {
            let next = match (dense.peek(), wide.peek()) {
                (Some(d), Some(w)) if w.0 > d.0 => wide.next(),
                (Some(_), _) => dense.next(),
                (None, Some(_)) => wide.next(),
                (None, None) => break,
            };
            if let Some((id, user)) = next {
                found.push((OrderId(id), UserId(user)));
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        let inner = self.inner.read();
        inner.dense.iter().filter(|&&u| u != NONE).count() + inner.wide.len()
    }

    pub fn image(&self) -> OrderUsersImage {
        let inner = self.inner.read();
        OrderUsersImage {
            dense: inner.dense.clone(),
            wide: inner.wide.iter().map(|(&id, &user)| (id, user)).collect(),
        }
    }

    pub fn from_image(image: &OrderUsersImage) -> Self {
        Self {
            inner: RwLock::new(Inner {
                dense: image.dense.clone(),
                wide: image.wide.iter().copied().collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_users_densely_and_odd_ones_aside() {
        let users = OrderUsers::default();
        users.set(OrderId(1), UserId(7));
        users.set(OrderId(3), UserId(u64::from(u32::MAX) + 5));
        users.set(OrderId(4), UserId(9));
        users.set(OrderId(1 << 40), UserId(2));
        assert_eq!(users.get(OrderId(1)), Some(UserId(7)));
        assert_eq!(users.get(OrderId(2)), None);
        assert_eq!(users.get(OrderId(3)), Some(UserId(u64::from(u32::MAX) + 5)));
        assert_eq!(users.get(OrderId(1 << 40)), Some(UserId(2)));
        assert_eq!(users.len(), 4);
        let newest: Vec<u64> = users
            .newest(Some(OrderId(5)), 10)
            .iter()
            .map(|(id, _)| id.0)
            .collect();
        assert_eq!(newest, [4, 3, 1]);
        let all: Vec<u64> = users.newest(None, 2).iter().map(|(id, _)| id.0).collect();
        assert_eq!(all, [1 << 40, 4]);
        let again = OrderUsers::from_image(&users.image());
        assert_eq!(again.image(), users.image());
        assert_eq!(again.get(OrderId(4)), Some(UserId(9)));
    }
}
