//! What lateness costs: for a holder's ticket, business days past the GTI (until the
//! acknowledgement or intervention) and past the GTR (until the resolution), times the
//! lot's penalty per day.
//!
//! Pure: the caller passes the ticket's times converted to French local time and the
//! lot's business calendar. It must never count a ticket that is still within its
//! deadlines, nor count a day twice when both deadlines are missed (CCAPs apply the
//! GTI and the GTR penalties separately; both are reported and summed).

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::domain::calendar::BusinessCalendar;
use crate::domain::sla::lateness;

/// A ticket's clock, in French local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketClock {
    pub gti_due: Option<NaiveDateTime>,
    pub gtr_due: Option<NaiveDateTime>,
    /// Acknowledged or intervention started, whichever came first.
    pub intervened_at: Option<NaiveDateTime>,
    pub resolved_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TicketPenalty {
    pub gti_days_late: u32,
    pub gtr_days_late: u32,
    pub gti_breached: bool,
    pub gtr_breached: bool,
    pub penalty_cents: u64,
}

/// Lateness as of `now` (for tickets still running) or as it ended.
pub fn ticket_penalty(
    clock: &TicketClock,
    now: NaiveDateTime,
    cal: &BusinessCalendar,
    per_day_cents: Option<u64>,
) -> TicketPenalty {
    let mut out = TicketPenalty::default();
    if let Some(due) = clock.gti_due
        && let Some(late) = lateness(due, clock.intervened_at.unwrap_or(now), cal, per_day_cents)
    {
        out.gti_breached = true;
        out.gti_days_late = late.business_days_late;
        out.penalty_cents += late.penalty_cents;
    }
    if let Some(due) = clock.gtr_due
        && let Some(late) = lateness(due, clock.resolved_at.unwrap_or(now), cal, per_day_cents)
    {
        out.gtr_breached = true;
        out.gtr_days_late = late.business_days_late;
        out.penalty_cents += late.penalty_cents;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::Calendar;
    use chrono::NaiveDate;

    fn dt(m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    #[test]
    fn on_time_costs_nothing_and_late_days_are_business_days() {
        let cal = BusinessCalendar::new(Calendar::for_departement("69"));
        // Due Friday 2026-11-20 17:00; resolved Tuesday 24th at 10:00: Monday and the
        // started Tuesday are late, the weekend is not.
        let clock = TicketClock {
            gti_due: Some(dt(11, 19, 17)),
            gtr_due: Some(dt(11, 20, 17)),
            intervened_at: Some(dt(11, 19, 9)),
            resolved_at: Some(dt(11, 24, 10)),
        };
        let p = ticket_penalty(&clock, dt(11, 30, 9), &cal, Some(15_000));
        assert!(!p.gti_breached);
        assert!(p.gtr_breached);
        assert_eq!(p.gtr_days_late, 2);
        assert_eq!(p.penalty_cents, 30_000);
    }

    #[test]
    fn a_running_ticket_is_late_as_of_now() {
        let cal = BusinessCalendar::new(Calendar::for_departement("69"));
        let clock = TicketClock {
            gti_due: Some(dt(11, 23, 12)),
            gtr_due: None,
            intervened_at: None,
            resolved_at: None,
        };
        assert_eq!(
            ticket_penalty(&clock, dt(11, 23, 11), &cal, Some(100)),
            TicketPenalty::default()
        );
        let p = ticket_penalty(&clock, dt(11, 24, 9), &cal, Some(100));
        assert!(p.gti_breached);
        assert_eq!(p.penalty_cents, u64::from(p.gti_days_late) * 100);
    }
}
