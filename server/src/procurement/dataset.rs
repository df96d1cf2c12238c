//! The procurement dataset: organisations (the coordinator of a *groupement de
//! commandes* and its members), grappes, schools with their classrooms and mobile
//! carts, contract holders, contracts with their lots (warranty and SLA terms), and
//! purchase orders with their lines and funding — one TOML file, as an authority's
//! purchasing office would maintain it (the demo's is `server/demo-data/dataset.toml`).
//!
//! [`parse_dataset`] reads and validates it as a whole: identifiers through the domain
//! parsers (UAI check letter, SIREN/SIRET Luhn, SLA durations), then references and
//! coherence (every id it names exists, members belong to the contract's groupement,
//! postcodes in the school's département, funding within the order's total). It
//! reports every problem at once, each naming the item. This module must never do IO.
//!
//! Decisions:
//! - Calendar days are ISO dates (`2024-09-02`); amounts are cents (`i64`); VAT rates
//!   are written in percent (`20`, `5.5`) and kept in basis points (2000, 550).
//! - A school's département is its UAI's (`057…` → `57`), which decides its calendar;
//!   the postcode must agree for metropolitan départements (Corsica and overseas
//!   postcodes are not checked).
//! - A lot's business window defaults to 08:00–18:00, as `BusinessCalendar::new`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{Siren, Siret, SlaDuration, SlaTerms, Uai, WarrantyTerms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Departement,
    Region,
    Commune,
    Sivos,
    Epci,
    Metropole,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Departement => "departement",
            OrgKind::Region => "region",
            OrgKind::Commune => "commune",
            OrgKind::Sivos => "sivos",
            OrgKind::Epci => "epci",
            OrgKind::Metropole => "metropole",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    Coordinator,
    #[default]
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Coordinator => "coordinator",
            OrgRole::Member => "member",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    pub kind: OrgKind,
    #[serde(default)]
    pub role: OrgRole,
    pub siren: Option<Siren>,
    pub siret: Option<Siret>,
    /// The coordinator whose groupement this member joined.
    pub coordinator: Option<String>,
    /// Maintains its equipment itself (tickets go to its own team).
    #[serde(default)]
    pub self_maintained: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grappe {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    Ecole,
    College,
}

impl SiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Ecole => "ecole",
            SiteKind::College => "college",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub street: String,
    pub postcode: String,
    pub city: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cart {
    pub id: String,
    pub name: String,
    /// Where it is usually kept.
    pub classroom: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub uai: Uai,
    pub name: String,
    pub kind: SiteKind,
    /// The organisation that equips it.
    pub owner: String,
    pub address: Address,
    pub grappe: Option<String>,
    #[serde(default)]
    pub classrooms: Vec<String>,
    #[serde(default)]
    pub carts: Vec<Cart>,
}

impl Site {
    /// Decides the holiday calendar (`"57"` is Alsace-Moselle's).
    pub fn departement(&self) -> String {
        self.uai.departement()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub role: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractHolder {
    pub id: String,
    pub company: String,
    pub siret: Siret,
    pub support_email: String,
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// A lot's service levels as the CCAP writes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotSla {
    pub gti: Option<SlaDuration>,
    pub gtr: Option<SlaDuration>,
    pub penalty_per_day_cents: Option<u64>,
    /// `"08:30"`: the business window GTI/GTR hours are counted in.
    #[serde(default = "default_opens_at", deserialize_with = "hh_mm")]
    pub opens_at: NaiveTime,
    #[serde(default = "default_closes_at", deserialize_with = "hh_mm")]
    pub closes_at: NaiveTime,
}

impl Default for LotSla {
    fn default() -> Self {
        Self {
            gti: None,
            gtr: None,
            penalty_per_day_cents: None,
            opens_at: default_opens_at(),
            closes_at: default_closes_at(),
        }
    }
}

fn default_opens_at() -> NaiveTime {
    NaiveTime::from_hms_opt(8, 0, 0).expect("valid time")
}

fn default_closes_at() -> NaiveTime {
    NaiveTime::from_hms_opt(18, 0, 0).expect("valid time")
}

/// `"HH:MM"` (or `"HH:MM:SS"`), as contracts write times of day.
fn hh_mm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    NaiveTime::parse_from_str(&text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(&text, "%H:%M:%S"))
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a time of day; write e.g. \"08:30\""
            ))
        })
}

impl LotSla {
    pub fn terms(&self) -> SlaTerms {
        SlaTerms {
            gti: self.gti,
            gtr: self.gtr,
            penalty_per_day_cents: self.penalty_per_day_cents,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lot {
    pub number: u32,
    pub title: String,
    /// The contract holder (*titulaire*).
    pub holder: String,
    pub warranty: WarrantyTerms,
    #[serde(default)]
    pub sla: LotSla,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub reference: String,
    pub title: String,
    pub coordinator: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub lots: Vec<Lot>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub model: String,
    pub quantity: u32,
    /// Excluding VAT.
    pub unit_price_cents: i64,
    pub vat_rate_percent: f64,
}

impl OrderLine {
    /// The VAT rate in basis points, when it is a whole number of them.
    pub fn vat_rate_bp(&self) -> Option<i64> {
        let bp = self.vat_rate_percent * 100.0;
        ((0.0..=10_000.0).contains(&bp) && (bp - bp.round()).abs() < 1e-6)
            .then_some(bp.round() as i64)
    }

    /// Line total including VAT, in cents, rounded half up.
    pub fn total_incl_vat_cents(&self) -> i64 {
        line_total_incl_vat_cents(
            i64::from(self.quantity),
            self.unit_price_cents,
            self.vat_rate_bp().unwrap_or(0),
        )
    }
}

/// `quantity × unit price` plus VAT at `vat_rate_bp` basis points, in cents, the VAT
/// rounded half up (amounts are never negative).
pub fn line_total_incl_vat_cents(quantity: i64, unit_price_cents: i64, vat_rate_bp: i64) -> i64 {
    let excl = quantity * unit_price_cents;
    excl + (excl * vat_rate_bp + 5_000) / 10_000
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingLine {
    /// E.g. "Subvention départementale", "Fonds d'innovation pédagogique (État)".
    pub source: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub reference: String,
    /// The member placing the order.
    pub member: String,
    pub contract: String,
    pub lot: u32,
    pub ordered_on: NaiveDate,
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub funding: Vec<FundingLine>,
}

impl Order {
    pub fn total_incl_vat_cents(&self) -> i64 {
        self.lines.iter().map(OrderLine::total_incl_vat_cents).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    #[serde(default)]
    pub organisations: Vec<Organisation>,
    #[serde(default)]
    pub grappes: Vec<Grappe>,
    #[serde(default)]
    pub sites: Vec<Site>,
    #[serde(default)]
    pub holders: Vec<ContractHolder>,
    #[serde(default)]
    pub contracts: Vec<Contract>,
    #[serde(default)]
    pub orders: Vec<Order>,
}

/// One incoherence, naming the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// E.g. `site 0570001S`, `order BC-2024-001 line 2`.
    pub item: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.item, self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DatasetError {
    /// Bad TOML, an unknown key, or an identifier that failed its parser (the message
    /// names the key and line).
    #[error("the dataset is unreadable: {0}")]
    Syntax(String),
    #[error("the dataset has {} problem(s): {}", .0.len(), .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// Reads and validates a dataset.
pub fn parse_dataset(text: &str) -> Result<Dataset, DatasetError> {
    let dataset: Dataset = toml::from_str(text).map_err(|e| DatasetError::Syntax(e.to_string()))?;
    let problems = dataset.problems();
    if problems.is_empty() {
        Ok(dataset)
    } else {
        Err(DatasetError::Invalid(problems))
    }
}

/// Records items seen by id and reports the second of any pair.
fn unique<'a>(
    kind: &str,
    ids: impl Iterator<Item = &'a str>,
    problems: &mut Vec<Problem>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            problems.push(Problem {
                item: format!("{kind} {id}"),
                reason: "is defined twice".into(),
            });
        }
    }
    seen
}

impl Dataset {
    /// Every incoherence between its parts; empty when the dataset can be loaded.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut problem = |item: String, reason: String| p.push(Problem { item, reason });
        let mut dup = Vec::new();
        let orgs: HashMap<&str, &Organisation> = self
            .organisations
            .iter()
            .map(|o| (o.id.as_str(), o))
            .collect();
        unique(
            "organisation",
            self.organisations.iter().map(|o| o.id.as_str()),
            &mut dup,
        );
        let grappes = unique(
            "grappe",
            self.grappes.iter().map(|g| g.id.as_str()),
            &mut dup,
        );
        unique("site", self.sites.iter().map(|s| s.uai.as_str()), &mut dup);
        unique(
            "cart",
            self.sites
                .iter()
                .flat_map(|s| s.carts.iter().map(|c| c.id.as_str())),
            &mut dup,
        );
        let holders = unique(
            "contract holder",
            self.holders.iter().map(|h| h.id.as_str()),
            &mut dup,
        );
        let contracts: HashMap<&str, &Contract> = self
            .contracts
            .iter()
            .map(|c| (c.reference.as_str(), c))
            .collect();
        unique(
            "contract",
            self.contracts.iter().map(|c| c.reference.as_str()),
            &mut dup,
        );
        unique(
            "order",
            self.orders.iter().map(|o| o.reference.as_str()),
            &mut dup,
        );

        let is_coordinator =
            |id: &str| orgs.get(id).is_some_and(|o| o.role == OrgRole::Coordinator);
        for o in &self.organisations {
            let item = format!("organisation {}", o.id);
            match (&o.role, &o.coordinator) {
                (OrgRole::Member, Some(c)) if !is_coordinator(c) => problem(
                    item.clone(),
                    format!("coordinator {c:?} is not an organisation with role coordinator"),
                ),
                (OrgRole::Coordinator, Some(_)) => problem(
                    item.clone(),
                    "a coordinator does not join another groupement".into(),
                ),
                _ => {}
            }
            if let (Some(siren), Some(siret)) = (&o.siren, &o.siret)
                && siret.siren() != *siren
            {
                problem(
                    item,
                    format!("SIRET {siret} is not an establishment of SIREN {siren}"),
                );
            }
        }

        for s in &self.sites {
            let item = format!("site {}", s.uai);
            if !orgs.contains_key(s.owner.as_str()) {
                problem(
                    item.clone(),
                    format!("owner {:?} is not an organisation", s.owner),
                );
            }
            if let Some(g) = &s.grappe
                && !grappes.contains(g.as_str())
            {
                problem(item.clone(), format!("grappe {g:?} is not defined"));
            }
            let dep = s.departement();
            let pc = &s.address.postcode;
            if pc.len() != 5 || !pc.bytes().all(|b| b.is_ascii_digit()) {
                problem(item.clone(), format!("postcode {pc:?} must be 5 digits"));
            } else if dep.len() == 2 && dep != "20" && !pc.starts_with(&dep) {
                problem(
                    item.clone(),
                    format!("postcode {pc} is not in département {dep} (from the UAI)"),
                );
            }
            unique(
                &format!("{item} classroom"),
                s.classrooms.iter().map(String::as_str),
                &mut dup,
            );
            for c in &s.carts {
                if let Some(room) = &c.classroom
                    && !s.classrooms.contains(room)
                {
                    problem(
                        format!("cart {}", c.id),
                        format!("classroom {room:?} is not a classroom of site {}", s.uai),
                    );
                }
            }
        }

        for h in &self.holders {
            let item = format!("contract holder {}", h.id);
            if !h.support_email.contains('@') {
                problem(
                    item.clone(),
                    format!("support email {:?} is not an address", h.support_email),
                );
            }
            if let Some(url) = &h.webhook_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                problem(
                    item,
                    format!("webhook URL {url:?} must start with https://"),
                );
            }
        }

        for c in &self.contracts {
            let item = format!("contract {}", c.reference);
            if !is_coordinator(&c.coordinator) {
                problem(
                    item.clone(),
                    format!(
                        "coordinator {:?} is not an organisation with role coordinator",
                        c.coordinator
                    ),
                );
            }
            if c.ends_on < c.starts_on {
                problem(
                    item.clone(),
                    format!("ends {} before it starts {}", c.ends_on, c.starts_on),
                );
            }
            unique(
                &format!("{item} lot"),
                c.lots.iter().map(|l| l.title.as_str()),
                &mut dup,
            );
            let mut numbers = HashSet::new();
            for l in &c.lots {
                let item = format!("{item} lot {}", l.number);
                if !numbers.insert(l.number) {
                    problem(item.clone(), "is defined twice".into());
                }
                if !holders.contains(l.holder.as_str()) {
                    problem(
                        item.clone(),
                        format!("holder {:?} is not a contract holder", l.holder),
                    );
                }
                if l.sla.closes_at <= l.sla.opens_at {
                    problem(
                        item.clone(),
                        format!(
                            "business hours {}–{} must close after they open",
                            l.sla.opens_at, l.sla.closes_at
                        ),
                    );
                }
                if l.warranty
                    .battery_months
                    .is_some_and(|b| b > l.warranty.months)
                {
                    problem(item, "battery warranty is longer than the main one".into());
                }
            }
        }

        for o in &self.orders {
            let item = format!("order {}", o.reference);
            match orgs.get(o.member.as_str()) {
                None => problem(
                    item.clone(),
                    format!("member {:?} is not an organisation", o.member),
                ),
                Some(member) => {
                    if let Some(c) = contracts.get(o.contract.as_str())
                        && member.id != c.coordinator
                        && member.coordinator.as_deref() != Some(c.coordinator.as_str())
                    {
                        problem(
                            item.clone(),
                            format!(
                                "{} is not a member of the groupement of {} that awarded contract {}",
                                member.id, c.coordinator, c.reference
                            ),
                        );
                    }
                }
            }
            match contracts.get(o.contract.as_str()) {
                None => problem(
                    item.clone(),
                    format!("contract {:?} is not defined", o.contract),
                ),
                Some(c) => {
                    if !c.lots.iter().any(|l| l.number == o.lot) {
                        problem(
                            item.clone(),
                            format!("lot {} does not exist in contract {}", o.lot, c.reference),
                        );
                    }
                    if o.ordered_on < c.starts_on || o.ordered_on > c.ends_on {
                        problem(
                            item.clone(),
                            format!(
                                "ordered on {} outside the contract's term {}..{}",
                                o.ordered_on, c.starts_on, c.ends_on
                            ),
                        );
                    }
                }
            }
            if o.lines.is_empty() {
                problem(item.clone(), "has no lines".into());
            }
            for (i, l) in o.lines.iter().enumerate() {
                let item = format!("{item} line {}", i + 1);
                if l.quantity == 0 {
                    problem(item.clone(), "quantity is zero".into());
                }
                if l.unit_price_cents < 0 {
                    problem(item.clone(), "unit price is negative".into());
                }
                if l.vat_rate_bp().is_none() {
                    problem(
                        item,
                        format!(
                            "VAT rate {} % must be between 0 and 100 with at most two decimals",
                            l.vat_rate_percent
                        ),
                    );
                }
            }
            for (i, f) in o.funding.iter().enumerate() {
                if f.amount_cents <= 0 {
                    problem(
                        format!("{item} funding {}", i + 1),
                        "amount must be positive".into(),
                    );
                }
            }
            let funded: i64 = o.funding.iter().map(|f| f.amount_cents).sum();
            let total = o.total_incl_vat_cents();
            if funded > total {
                problem(
                    item,
                    format!(
                        "funding {funded} cents exceeds the order's total {total} cents incl. VAT"
                    ),
                );
            }
        }
        p.extend(dup);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[organisations]]
id = "dep"
name = "Département"
kind = "departement"
role = "coordinator"
siren = "552100554"

[[organisations]]
id = "commune"
name = "Commune"
kind = "commune"
coordinator = "dep"

[[grappes]]
id = "g1"
name = "Grappe 1"

[[sites]]
uai = "0570001S"
name = "École"
kind = "ecole"
owner = "commune"
grappe = "g1"
address = { street = "1 rue", postcode = "57000", city = "Metz" }
classrooms = ["CM1"]
carts = [{ id = "C1", name = "Classe mobile 1", classroom = "CM1" }]

[[holders]]
id = "h1"
company = "Holder SA"
siret = "55210055400013"
support_email = "support@example.invalid"

[[contracts]]
reference = "M-1"
title = "Marché"
coordinator = "dep"
starts_on = "2024-01-01"
ends_on = "2027-12-31"

[[contracts.lots]]
number = 1
title = "Lot 1"
holder = "h1"
warranty = { months = 36, starts_at = "delivery", battery_months = 12, service = "on_site" }
sla = { gti = "4h", gtr = "2d", penalty_per_day_cents = 10000, opens_at = "08:30", closes_at = "17:30" }

[[orders]]
reference = "BC-1"
member = "commune"
contract = "M-1"
lot = 1
ordered_on = "2024-03-01"
lines = [{ model = "X", quantity = 2, unit_price_cents = 100000, vat_rate_percent = 20 }]
funding = [{ source = "Département", amount_cents = 240000 }]
"#;

    #[test]
    fn a_coherent_dataset_parses() {
        let d = parse_dataset(MINIMAL).unwrap();
        assert_eq!(d.sites[0].departement(), "57");
        assert_eq!(d.orders[0].total_incl_vat_cents(), 240_000);
        assert_eq!(
            d.contracts[0].lots[0].sla.terms().gti,
            Some(SlaDuration::BusinessHours(4))
        );
        assert_eq!(d.orders[0].lines[0].vat_rate_bp(), Some(2000));
    }

    #[test]
    fn identifiers_are_checked_while_reading() {
        for (from, to, expect) in [
            ("0570001S", "0570001A", "UAI check letter is wrong"),
            (
                "55210055400013",
                "55210055400014",
                "SIRET checksum is wrong",
            ),
            ("\"2d\"", "\"2 jours ouvrables\"", "unknown unit"),
        ] {
            let err = parse_dataset(&MINIMAL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{from} → {to}: {err}");
        }
    }

    #[test]
    fn incoherences_are_all_reported_with_their_item() {
        let text = MINIMAL
            .replace("postcode = \"57000\"", "postcode = \"42000\"")
            .replace("holder = \"h1\"", "holder = \"h9\"")
            .replace("amount_cents = 240000", "amount_cents = 240001")
            .replace("ordered_on = \"2024-03-01\"", "ordered_on = \"2028-03-01\"");
        let Err(DatasetError::Invalid(problems)) = parse_dataset(&text) else {
            panic!("expected problems");
        };
        let text: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            text,
            vec![
                "site 0570001S: postcode 42000 is not in département 57 (from the UAI)",
                "contract M-1 lot 1: holder \"h9\" is not a contract holder",
                "order BC-1: ordered on 2028-03-01 outside the contract's term 2024-01-01..2027-12-31",
                "order BC-1: funding 240001 cents exceeds the order's total 240000 cents incl. VAT",
            ]
        );
    }

    #[test]
    fn members_outside_the_groupement_cannot_order() {
        let text = MINIMAL.replace("coordinator = \"dep\"\n\n[[grappes]]", "\n[[grappes]]");
        let err = parse_dataset(&text).unwrap_err().to_string();
        assert!(
            err.contains("commune is not a member of the groupement of dep"),
            "{err}"
        );
    }

    #[test]
    fn vat_rates_in_basis_points() {
        let line = |r: f64| OrderLine {
            model: "X".into(),
            quantity: 3,
            unit_price_cents: 999,
            vat_rate_percent: r,
        };
        assert_eq!(line(5.5).vat_rate_bp(), Some(550));
        assert_eq!(line(20.0).total_incl_vat_cents(), 2997 + 599);
        assert_eq!(line(5.555).vat_rate_bp(), None);
        assert_eq!(line(-1.0).vat_rate_bp(), None);
    }
}
