//! Who acts on a finding: the lot's contract holder for a hardware fault under
//! warranty, otherwise the owning authority's own team.
//!
//! Pure: the caller computes the warranty for today and passes what it knows. It must
//! never send a ticket to a holder without a lot, a valid warranty and a hardware
//! category: a wrong dispatch costs the authority credibility with its supplier.

use serde::Serialize;

use crate::domain::warranty::WarrantyStatus;
use crate::rules::Category;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// The lot's contract holder (titulaire) repairs under warranty.
    Holder,
    /// The owning authority's own team.
    Authority,
}

impl Queue {
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Holder => "holder",
            Queue::Authority => "authority",
        }
    }

    pub fn parse(s: &str) -> Option<Queue> {
        match s {
            "holder" => Some(Queue::Holder),
            "authority" => Some(Queue::Authority),
            _ => None,
        }
    }
}

/// What routing looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInput {
    pub category: Category,
    /// The device is matched to a delivery of a lot with a contract holder.
    pub has_lot: bool,
    /// Warranty status today (the battery warranty for battery rules).
    pub warranty: WarrantyStatus,
    /// The owning authority maintains its equipment itself.
    pub owner_self_maintained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub queue: Queue,
    /// Why, in a few words, for the audit trail and the technician.
    pub reason: &'static str,
}

pub fn route(input: RouteInput) -> Route {
    let authority = |reason| Route {
        queue: Queue::Authority,
        reason,
    };
    if input.category != Category::WarrantyHardware {
        return authority("not a hardware fault");
    }
    if input.owner_self_maintained {
        return authority("the owner maintains its equipment itself");
    }
    if !input.has_lot {
        return authority("device not matched to a delivered lot");
    }
    match input.warranty {
        WarrantyStatus::InWarranty | WarrantyStatus::EndingSoon => Route {
            queue: Queue::Holder,
            reason: "hardware fault under warranty",
        },
        WarrantyStatus::Expired => authority("warranty expired"),
        WarrantyStatus::Unknown => authority("warranty unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> RouteInput {
        RouteInput {
            category: Category::WarrantyHardware,
            has_lot: true,
            warranty: WarrantyStatus::InWarranty,
            owner_self_maintained: false,
        }
    }

    #[test]
    fn hardware_fault_under_warranty_goes_to_the_holder() {
        assert_eq!(route(input()).queue, Queue::Holder);
        let ending = RouteInput {
            warranty: WarrantyStatus::EndingSoon,
            ..input()
        };
        assert_eq!(route(ending).queue, Queue::Holder);
    }

    #[test]
    fn everything_else_stays_with_the_authority() {
        let cases = [
            RouteInput {
                warranty: WarrantyStatus::Expired,
                ..input()
            },
            RouteInput {
                warranty: WarrantyStatus::Unknown,
                ..input()
            },
            RouteInput {
                category: Category::LocalIssue,
                ..input()
            },
            RouteInput {
                category: Category::Connectivity,
                ..input()
            },
            RouteInput {
                owner_self_maintained: true,
                ..input()
            },
            RouteInput {
                has_lot: false,
                ..input()
            },
        ];
        for case in cases {
            let r = route(case);
            assert_eq!(r.queue, Queue::Authority, "{case:?}");
            assert!(!r.reason.is_empty());
        }
    }
}
