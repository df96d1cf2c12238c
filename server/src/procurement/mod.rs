//! Procurement: what the contracts, orders and deliveries say, parsed and validated
//! before the store records them (delivery manifests, the organisation/contract
//! dataset).
//!
//! Pure: this tree never does IO, never reads the clock and never touches the
//! database. Callers read files or request bodies and pass the text in; the store
//! decides what is already known.

pub mod dataset;
pub mod manifest;
