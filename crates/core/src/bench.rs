//! Hooks for the benchmarks and examples of this crate (`load_table`,
//! `load_decks`): approximate heap sizes of a table. Hidden from the docs
//! and not a stable interface; they may change or go in any release.

use crate::RouteTable;

/// Approximate heap bytes of a table (rules, indexes, rate decks).
pub fn heap_bytes(table: &RouteTable) -> usize {
    table.heap_bytes()
}

/// Approximate heap bytes of a table's frozen rate decks.
pub fn rate_heap_bytes(table: &RouteTable) -> usize {
    table.rate_heap_bytes()
}
