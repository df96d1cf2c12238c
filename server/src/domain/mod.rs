//! Pure domain rules of Parc: identifiers, business calendar, warranties and
//! service levels.
//!
//! Nothing in this tree does IO, reads the clock, touches a database or runs
//! async code: callers pass "now", local times and loaded data in, and get
//! plain values out, so every rule is testable with a table.
//!
//! Times are local Europe/Paris wall-clock `NaiveDateTime`/`NaiveDate`: the
//! callers convert from and to UTC at the edge, which keeps a timezone
//! database out of the rules. Each module's docs list the rules it had to
//! decide (exclusive warranty ends, business-window normalisation, how
//! lateness days are counted, the La Poste SIRET exception).

pub mod calendar;
pub mod ids;
pub mod sla;
pub mod warranty;

pub use calendar::{
    BusinessCalendar, Calendar, CalendarError, SchoolHoliday, SchoolHolidays, easter_sunday,
};
pub use ids::{IdError, Siren, Siret, Uai};
pub use sla::{Deadlines, Late, SlaDuration, SlaError, SlaTerms, deadlines, lateness};
pub use warranty::{
    ENDING_SOON_DAYS, ServiceMode, Warranty, WarrantyBasis, WarrantyStart, WarrantyStatus,
    WarrantyTerms, compute_warranty,
};
