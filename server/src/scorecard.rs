//! The lot scorecard: what the coordinator weighs before renewing a contract — per lot,
//! failure rate per model, purchase cost and its funding split, cost per device, and
//! (from the tickets) tickets, mean time to restore, GTI/GTR compliance and penalties.
//!
//! Pure: takes what the store read, returns numbers. No IO, no SQL, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{LotRow, OrderRow};

/// Delivered devices of one model under one lot, and how many are faulty now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelHealth {
    pub contract: String,
    pub lot: u32,
    pub model: String,
    pub delivered: i64,
    /// Delivered serials some device reports.
    pub reporting: i64,
    pub faulty: i64,
}

/// Ticket figures of one lot, when the ticket side provides them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketFigures {
    pub tickets: i64,
    pub open: i64,
    /// Resolved tickets' mean time from opening to restoration, in hours.
    pub mean_time_to_restore_hours: Option<f64>,
    /// Share of tickets with a deadline that met both GTI and GTR (closed or not yet
    /// due), in %.
    pub sla_compliance_percent: Option<f64>,
    pub penalties_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelLine {
    pub model: String,
    pub delivered: i64,
    pub reporting: i64,
    pub faulty: i64,
    /// Faulty among reporting devices, in % (`None` before any reports).
    pub failure_rate_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FundingShare {
    pub source: String,
    pub amount_cents: i64,
    /// Of the total including VAT, in %.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LotScorecard {
    pub contract: String,
    pub lot: u32,
    pub title: String,
    pub holder: String,
    pub orders: usize,
    pub delivered: i64,
    pub models: Vec<ModelLine>,
    pub purchase_excl_vat_cents: i64,
    pub purchase_incl_vat_cents: i64,
    pub funding: Vec<FundingShare>,
    /// What the buyers themselves paid: total including VAT minus the funding lines.
    pub own_share_cents: i64,
    /// Purchase including VAT per delivered device.
    pub cost_per_device_cents: Option<i64>,
    /// `None` where the ticket figures are not known.
    pub tickets: Option<TicketFigures>,
}

fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64) * 100.0 / whole as f64)
}

/// One scorecard per lot in `lots`, from the orders and model health the caller may see
/// and the ticket figures per `(contract, lot)`.
pub fn scorecards(
    lots: &[LotRow],
    orders: &[OrderRow],
    models: &[ModelHealth],
    tickets: Option<&BTreeMap<(String, u32), TicketFigures>>,
) -> Vec<LotScorecard> {
    lots.iter()
        .map(|l| {
            let key = (l.contract.clone(), l.number);
            let mine: Vec<&OrderRow> = orders
                .iter()
                .filter(|o| o.contract == l.contract && o.lot == l.number)
                .collect();
            let excl: i64 = mine.iter().map(|o| o.total_excl_vat_cents).sum();
            let incl: i64 = mine.iter().map(|o| o.total_incl_vat_cents).sum();
            let mut funding: BTreeMap<String, i64> = BTreeMap::new();
            for f in mine.iter().flat_map(|o| &o.funding) {
                *funding.entry(f.source.clone()).or_default() += f.amount_cents;
            }
            let funded: i64 = funding.values().sum();
            let lines: Vec<ModelLine> = models
                .iter()
                .filter(|m| m.contract == l.contract && m.lot == l.number)
                .map(|m| ModelLine {
                    model: m.model.clone(),
                    delivered: m.delivered,
                    reporting: m.reporting,
                    faulty: m.faulty,
                    failure_rate_percent: percent(m.faulty, m.reporting),
                })
                .collect();
            let delivered: i64 = lines.iter().map(|m| m.delivered).sum();
            LotScorecard {
                contract: l.contract.clone(),
                lot: l.number,
                title: l.title.clone(),
                holder: l.holder.clone(),
                orders: mine.len(),
                delivered,
                models: lines,
                purchase_excl_vat_cents: excl,
                purchase_incl_vat_cents: incl,
                funding: funding
                    .into_iter()
                    .map(|(source, amount_cents)| FundingShare {
                        percent: percent(amount_cents, incl).unwrap_or(0.0),
                        source,
                        amount_cents,
                    })
                    .collect(),
                own_share_cents: incl - funded,
                cost_per_device_cents: (delivered > 0).then(|| incl / delivered),
                tickets: tickets.map(|t| t.get(&key).cloned().unwrap_or_default()),
            }
        })
        .collect()
}

/// Euros with a comma and two decimals, French style ("1 234,50 €" without the
/// thousands separator, which spreadsheets misread).
pub fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02} €", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ServiceMode, WarrantyStart, WarrantyTerms};
    use crate::store::FundingRow;

    fn lot(contract: &str, number: u32) -> LotRow {
        LotRow {
            contract: contract.into(),
            contract_title: "t".into(),
            number,
            title: format!("Lot {number}"),
            holder_id: "h".into(),
            holder: "Holder".into(),
            holder_siret: "1".into(),
            support_email: "a@b".into(),
            webhook_url: None,
            warranty: WarrantyTerms {
                months: 36,
                starts_at: WarrantyStart::Delivery,
                battery_months: None,
                service: ServiceMode::OnSite,
            },
            gti: None,
            gtr: None,
            business_opens_at: "08:00".into(),
            business_closes_at: "18:00".into(),
            penalty_per_day_cents: None,
            orders: 1,
            delivered: 0,
        }
    }

    fn order(contract: &str, lot: u32, incl: i64, funding: &[(&str, i64)]) -> OrderRow {
        OrderRow {
            reference: "BC".into(),
            member_id: "m".into(),
            member: "M".into(),
            contract: contract.into(),
            lot,
            ordered_on: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            lines: vec![],
            funding: funding
                .iter()
                .map(|(s, a)| FundingRow {
                    source: s.to_string(),
                    amount_cents: *a,
                })
                .collect(),
            total_excl_vat_cents: incl * 5 / 6,
            total_incl_vat_cents: incl,
            funded_cents: funding.iter().map(|f| f.1).sum(),
            delivered: 0,
        }
    }

    #[test]
    fn scorecards_add_up_per_lot() {
        let lots = [lot("M", 1), lot("M", 2)];
        let orders = [
            order("M", 1, 120_000, &[("Département", 60_000)]),
            order("M", 1, 60_000, &[("Département", 30_000), ("État", 6_000)]),
            order("M", 2, 999, &[]),
        ];
        let models = [
            ModelHealth {
                contract: "M".into(),
                lot: 1,
                model: "A".into(),
                delivered: 10,
                reporting: 8,
                faulty: 2,
            },
            ModelHealth {
                contract: "M".into(),
                lot: 1,
                model: "B".into(),
                delivered: 2,
                reporting: 0,
                faulty: 0,
            },
        ];
        let mut tickets = BTreeMap::new();
        tickets.insert(
            ("M".to_string(), 1),
            TicketFigures {
                tickets: 3,
                penalties_cents: 15_000,
                ..Default::default()
            },
        );
        let s = scorecards(&lots, &orders, &models, Some(&tickets));
        assert_eq!(s.len(), 2);
        let l1 = &s[0];
        assert_eq!((l1.orders, l1.delivered), (2, 12));
        assert_eq!(l1.purchase_incl_vat_cents, 180_000);
        assert_eq!(l1.cost_per_device_cents, Some(15_000));
        assert_eq!(l1.own_share_cents, 180_000 - 96_000);
        assert_eq!(l1.funding[0].source, "Département");
        assert_eq!(l1.funding[0].amount_cents, 90_000);
        assert!((l1.funding[0].percent - 50.0).abs() < 1e-9);
        assert_eq!(l1.models[0].failure_rate_percent, Some(25.0));
        assert_eq!(l1.models[1].failure_rate_percent, None);
        assert_eq!(l1.tickets.as_ref().unwrap().tickets, 3);
        let l2 = &s[1];
        assert_eq!((l2.delivered, l2.cost_per_device_cents), (0, None));
        assert_eq!(l2.tickets, Some(TicketFigures::default()));
        assert_eq!(scorecards(&lots, &orders, &models, None)[0].tickets, None);
    }

    #[test]
    fn euros_are_french() {
        assert_eq!(euros(123_450), "1234,50 €");
        assert_eq!(euros(5), "0,05 €");
        assert_eq!(euros(-100), "-1,00 €");
    }
}

/// Where a ticket stands against its deadlines at `now`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TicketSla {
    /// Minutes until the GTI is due (negative: late); `None` when met or without one.
    pub gti_minutes_left: Option<i64>,
    pub gtr_minutes_left: Option<i64>,
    pub gti_breached: bool,
    pub gtr_breached: bool,
    /// Penalties owed so far (holder's tickets only), cents.
    pub penalty_cents: i64,
}

/// A ticket's deadlines and penalty at `now`: business days in the site's calendar and
/// the lot's hours, as the maintenance worker set them.
pub fn ticket_sla(v: &crate::store::TicketView, now: chrono::DateTime<chrono::Utc>) -> TicketSla {
    use crate::procurement::france_local_time;
    let t = &v.ticket;
    let intervened = [
        t.acknowledged_at,
        t.in_progress_at,
        t.resolved_at,
        t.closed_at,
    ]
    .into_iter()
    .flatten()
    .min();
    let restored = [t.resolved_at, t.closed_at].into_iter().flatten().min();
    let cal = crate::maintenance::lot_calendar(
        v.departement.as_deref(),
        v.business_opens_at.as_deref().unwrap_or(""),
        v.business_closes_at.as_deref().unwrap_or(""),
    );
    let clock = crate::tickets::TicketClock {
        gti_due: t.gti_due.map(france_local_time),
        gtr_due: t.gtr_due.map(france_local_time),
        intervened_at: intervened.map(france_local_time),
        resolved_at: restored.map(france_local_time),
    };
    let per_day = if t.queue == "holder" {
        t.penalty_per_day_cents.and_then(|c| u64::try_from(c).ok())
    } else {
        None
    };
    let p = crate::tickets::ticket_penalty(&clock, france_local_time(now), &cal, per_day);
    let left = |due: Option<chrono::DateTime<chrono::Utc>>, done: Option<_>| match (due, done) {
        (Some(due), None) => Some((due - now).num_minutes()),
        _ => None,
    };
    TicketSla {
        gti_minutes_left: left(t.gti_due, intervened),
        gtr_minutes_left: left(t.gtr_due, restored),
        gti_breached: p.gti_breached,
        gtr_breached: p.gtr_breached,
        penalty_cents: i64::try_from(p.penalty_cents).unwrap_or(i64::MAX),
    }
}

/// A lot's figures being summed: figures, hours to restore, restored tickets, tickets
/// with a deadline, and those that kept them.
type Tally = (TicketFigures, f64, i64, i64, i64);

/// Ticket figures per `(contract, lot)` from the tickets the caller may see.
pub fn lot_ticket_figures(
    tickets: &[crate::store::TicketView],
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<(String, u32), TicketFigures> {
    let mut out: BTreeMap<(String, u32), Tally> = BTreeMap::new();
    for v in tickets {
        let t = &v.ticket;
        let (Some(c), Some(l)) = (&t.contract_ref, t.lot_number) else {
            continue;
        };
        let e = out.entry((c.clone(), l)).or_default();
        let sla = ticket_sla(v, now);
        e.0.tickets += 1;
        if !matches!(t.status.as_str(), "closed" | "rejected" | "resolved") {
            e.0.open += 1;
        }
        e.0.penalties_cents += sla.penalty_cents;
        if let Some(r) = [t.resolved_at, t.closed_at].into_iter().flatten().min() {
            e.1 += (r - t.opened_at).num_minutes() as f64 / 60.0;
            e.2 += 1;
        }
        if t.gti_due.is_some() || t.gtr_due.is_some() {
            e.3 += 1;
            if !sla.gti_breached && !sla.gtr_breached {
                e.4 += 1;
            }
        }
    }
    out.into_iter()
        .map(|(k, (mut f, hours, restored, with_deadline, kept))| {
            f.mean_time_to_restore_hours = (restored > 0).then(|| hours / restored as f64);
            f.sla_compliance_percent = percent(kept, with_deadline);
            (k, f)
        })
        .collect()
}
