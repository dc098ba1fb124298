//! The DRF sorter: keeps clients (roles, or frameworks in a role) ordered by weighted
//! dominant share, ties broken by name, with O(log n) updates.
//!
//! Like Mesos's `Sorter`, a client can be inactive: it keeps its allocation (which still
//! counts in its share) but is left out of the order, so the allocator never walks over
//! suppressed or disconnected frameworks.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
struct Client {
    allocated: [i64; 4],
    weight: f64,
    key: u64,
    active: bool,
}

/// Clients ordered by dominant share.
#[derive(Debug, Clone)]
pub(crate) struct Sorter<K: Ord + Clone> {
    clients: BTreeMap<K, Client>,
    order: BTreeSet<(u64, K)>,
    total: [i64; 4],
}

fn share(allocated: &[i64; 4], total: &[i64; 4], weight: f64) -> f64 {
    let dominant = allocated
        .iter()
        .zip(total.iter())
        .filter(|(_, t)| **t > 0)
        .map(|(a, t)| *a as f64 / *t as f64)
        .fold(0.0, f64::max);
    dominant / weight
}

/// Non-negative floats order like their bit patterns.
fn key_of(share: f64) -> u64 {
    share.max(0.0).to_bits()
}

impl<K: Ord + Clone> Sorter<K> {
    pub(crate) fn new() -> Self {
        Sorter {
            clients: BTreeMap::new(),
            order: BTreeSet::new(),
            total: [0; 4],
        }
    }

    pub(crate) fn contains(&self, k: &K) -> bool {
        self.clients.contains_key(k)
    }

    /// Adds a client; a client that already exists keeps its allocation.
    pub(crate) fn add(&mut self, k: K, weight: f64) {
        if self.clients.contains_key(&k) {
            return;
        }
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            1.0
        };
        let key = key_of(0.0);
        self.clients.insert(
            k.clone(),
            Client {
                allocated: [0; 4],
                weight,
                key,
                active: true,
            },
        );
        self.order.insert((key, k));
    }

    pub(crate) fn remove(&mut self, k: &K) {
        if let Some(c) = self.clients.remove(k) {
            self.order.remove(&(c.key, k.clone()));
        }
    }

    pub(crate) fn set_active(&mut self, k: &K, active: bool) {
        if let Some(c) = self.clients.get_mut(k) {
            if c.active == active {
                return;
            }
            c.active = active;
            if active {
                self.order.insert((c.key, k.clone()));
            } else {
                self.order.remove(&(c.key, k.clone()));
            }
        }
    }

    pub(crate) fn active_count(&self) -> usize {
        self.order.len()
    }

    fn update(&mut self, k: &K, f: impl FnOnce(&mut [i64; 4])) {
        let total = self.total;
        if let Some(c) = self.clients.get_mut(k) {
            let old = c.key;
            f(&mut c.allocated);
            c.key = key_of(share(&c.allocated, &total, c.weight));
            if c.active && old != c.key {
                self.order.remove(&(old, k.clone()));
                self.order.insert((c.key, k.clone()));
            }
        }
    }

    pub(crate) fn allocate(&mut self, k: &K, amount: [i64; 4]) {
        self.update(k, |a| {
            for (x, y) in a.iter_mut().zip(amount) {
                *x = x.saturating_add(y);
            }
        });
    }

    pub(crate) fn unallocate(&mut self, k: &K, amount: [i64; 4]) {
        self.update(k, |a| {
            for (x, y) in a.iter_mut().zip(amount) {
                *x = (*x - y).max(0);
            }
        });
    }

    /// Changes the cluster total; every share changes, so the order is rebuilt.
    pub(crate) fn set_total(&mut self, total: [i64; 4]) {
        if total == self.total {
            return;
        }
        self.total = total;
        self.order.clear();
        for (k, c) in self.clients.iter_mut() {
            c.key = key_of(share(&c.allocated, &total, c.weight));
            if c.active {
                self.order.insert((c.key, k.clone()));
            }
        }
    }

    pub(crate) fn share(&self, k: &K) -> f64 {
        self.clients
            .get(k)
            .map(|c| share(&c.allocated, &self.total, c.weight))
            .unwrap_or(0.0)
    }

    /// Active clients, lowest weighted share first.
    pub(crate) fn iter_active(&self) -> impl Iterator<Item = &K> + '_ {
        self.order.iter().map(|(_, k)| k)
    }
}
