//! The ticket lifecycle: new → sent → acknowledged → in progress → resolved → closed,
//! with rejected and reopened, and who may make each move.
//!
//! Pure: the store applies an allowed move and audits it with the actor. It must never
//! let a contract holder close a ticket (only telemetry or the authority confirms a
//! repair) nor let anyone move a closed ticket except by reopening it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Sent,
    Acknowledged,
    InProgress,
    Resolved,
    Closed,
    Rejected,
    Reopened,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::New,
        Status::Sent,
        Status::Acknowledged,
        Status::InProgress,
        Status::Resolved,
        Status::Closed,
        Status::Rejected,
        Status::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Sent => "sent",
            Status::Acknowledged => "acknowledged",
            Status::InProgress => "in_progress",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Rejected => "rejected",
            Status::Reopened => "reopened",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Open tickets hold their device-and-fault slot: a recurring finding attaches.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Closed | Status::Rejected)
    }

    /// Still waiting for the intervention (GTI running).
    pub fn awaits_intervention(self) -> bool {
        matches!(self, Status::New | Status::Sent | Status::Reopened)
    }
}

/// Who moves a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The dispatcher (new → sent) and the rules reading telemetry.
    System,
    /// The contract holder, through the API with its token.
    Holder,
    /// The authority's technicians and the coordinator.
    Technician,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a ticket cannot go from {from} to {to}")]
    NotAllowed {
        from: &'static str,
        to: &'static str,
    },
    #[error("{actor} may not move a ticket to {to}")]
    Forbidden {
        actor: &'static str,
        to: &'static str,
    },
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::System => "system",
            Actor::Holder => "contract holder",
            Actor::Technician => "technician",
        }
    }
}

/// Checks one move. The same status twice is not a move (callers treat it as a no-op).
pub fn check_transition(from: Status, to: Status, actor: Actor) -> Result<(), TransitionError> {
    use Status::*;
    let allowed = match from {
        New => matches!(
            to,
            Sent | Acknowledged | InProgress | Resolved | Rejected | Closed
        ),
        Sent => matches!(to, Acknowledged | InProgress | Resolved | Rejected | Closed),
        Acknowledged => matches!(to, InProgress | Resolved | Rejected | Closed),
        InProgress => matches!(to, Resolved | Rejected | Closed),
        Resolved => matches!(to, Closed | Reopened),
        Reopened => matches!(
            to,
            Sent | Acknowledged | InProgress | Resolved | Rejected | Closed
        ),
        Rejected => matches!(to, Reopened | Closed),
        Closed => matches!(to, Reopened),
    };
    if !allowed {
        return Err(TransitionError::NotAllowed {
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    let permitted = match actor {
        Actor::System => matches!(to, Sent | Resolved | Closed | Reopened),
        Actor::Holder => matches!(to, Acknowledged | InProgress | Resolved | Rejected),
        Actor::Technician => to != Sent,
    };
    if !permitted {
        return Err(TransitionError::Forbidden {
            actor: actor.as_str(),
            to: to.as_str(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn the_happy_path_is_allowed_for_the_right_actors() {
        let path = [
            (New, Sent, Actor::System),
            (Sent, Acknowledged, Actor::Holder),
            (Acknowledged, InProgress, Actor::Holder),
            (InProgress, Resolved, Actor::Holder),
            (Resolved, Closed, Actor::System),
        ];
        for (from, to, actor) in path {
            check_transition(from, to, actor).unwrap();
        }
    }

    #[test]
    fn a_holder_cannot_close_or_reopen_and_nobody_leaves_closed_except_by_reopening() {
        assert!(matches!(
            check_transition(Resolved, Closed, Actor::Holder),
            Err(TransitionError::Forbidden { .. })
        ));
        assert!(check_transition(Closed, Reopened, Actor::Holder).is_err());
        for to in Status::ALL {
            if to != Reopened {
                assert!(
                    check_transition(Closed, to, Actor::Technician).is_err(),
                    "{to:?}"
                );
            }
        }
        check_transition(Closed, Reopened, Actor::Technician).unwrap();
        // Telemetry reopens a repair that did not hold.
        check_transition(Resolved, Reopened, Actor::System).unwrap();
    }

    #[test]
    fn statuses_round_trip_and_open_means_not_closed_or_rejected() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
        assert!(Resolved.is_open() && Reopened.is_open());
        assert!(!Closed.is_open() && !Rejected.is_open());
    }
}
