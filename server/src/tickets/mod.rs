//! Maintenance tickets: who a finding goes to, which status changes are allowed and
//! to whom, when a burst of findings becomes one grouped claim, what a ticket says
//! (the notice and its French e-mail), and what lateness costs a contract holder.
//!
//! Pure decisions only: the maintenance worker (`crate::maintenance`) reads the store,
//! asks these functions, and writes their answers back in one transaction. Nothing
//! here may do IO, read the clock or hold state between calls.

pub mod email;
pub mod lifecycle;
pub mod penalty;
pub mod routing;

pub use lifecycle::{Actor, Status, TransitionError, check_transition};
pub use penalty::{TicketClock, TicketPenalty, ticket_penalty};
pub use routing::{Queue, Route, RouteInput, route};

/// `PREFIX-YEAR-NNNNNN`: short enough to read on the phone, unique per ticket id.
pub fn reference(prefix: &str, year: i32, id: i64) -> String {
    format!("{prefix}-{year}-{id:06}")
}

/// The key that keeps one open ticket per device and fault.
pub fn device_open_key(device_id: &str, rule_id: &str) -> String {
    format!("device/{device_id}/{rule_id}")
}

/// The key that keeps one open grouped claim per queue, lot, model and fault.
pub fn batch_open_key(
    queue: Queue,
    contract: &str,
    lot: u32,
    model: &str,
    rule_id: &str,
) -> String {
    format!(
        "batch/{}/{contract}/{lot}/{model}/{rule_id}",
        queue.as_str()
    )
}

/// Storm control: the `distinct_devices` of one lot and model that raised one rule
/// within the window (this finding included) reach the threshold.
pub fn is_storm(distinct_devices: u64, threshold: u32) -> bool {
    distinct_devices >= u64::from(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_zero_padded_and_keys_separate_scopes() {
        assert_eq!(reference("PARC", 2026, 42), "PARC-2026-000042");
        assert_eq!(reference("CD57", 2027, 1_234_567), "CD57-2027-1234567");
        assert_ne!(
            device_open_key("d-1", "battery_worn"),
            batch_open_key(Queue::Holder, "M1", 2, "X", "battery_worn")
        );
        assert_ne!(
            batch_open_key(Queue::Holder, "M1", 2, "X", "r"),
            batch_open_key(Queue::Authority, "M1", 2, "X", "r")
        );
    }

    #[test]
    fn storm_starts_at_the_threshold() {
        assert!(!is_storm(4, 5));
        assert!(is_storm(5, 5));
        assert!(is_storm(30, 5));
    }
}
