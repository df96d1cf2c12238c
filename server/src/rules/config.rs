//! Declarative fault rules: their TOML form, validation, and the per-lot / per-model
//! overrides that turn the shipped default set into the rules one device is judged by.
//!
//! Pure data: this module parses and checks text handed to it. It must never read files,
//! look at the clock or touch the database — the server loads the text and passes it in.
//!
//! Precedence of overrides: **model > lot > default**. A model override describes a
//! hardware fact (this model's battery gauge reads low, this panel has no touch layer) and
//! holds whatever contract the device was bought under, so it is applied last and wins
//! over a lot override, which records a contract term. Overrides at the same level apply
//! in file order, the later one winning key by key.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The rules shipped with Parc; sites layer their overrides on top.
pub const DEFAULT_RULES_TOML: &str = include_str!("default-rules.toml");

/// Hot threshold for `fan_stopped_while_hot` when a rule does not set `hot_celsius`.
pub const DEFAULT_HOT_CELSIUS: f64 = 70.0;

/// Who should act on a fault: the contract holder (warranty), the authority's own team
/// (local issue), or the network people (connectivity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    WarrantyHardware,
    LocalIssue,
    Connectivity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Minor,
    Major,
    Critical,
}

/// What a rule reads. Boolean signals read 1.0 (true) or 0.0 (false) so every rule is a
/// numeric comparison; see `eval.rs` for how each one is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    BatteryHealthPercent,
    BatteryCycleCount,
    SmartFailed,
    ReallocatedSectorsRising,
    PendingSectorsRising,
    NvmePercentageUsedPercent,
    MediaErrors,
    TemperatureMarginCelsius,
    FanStoppedWhileHot,
    MemoryErrorsUncorrected,
    TouchMissing,
    DisplayMissing,
    UnexpectedShutdowns7d,
    /// Not read from a health sample: the caller counts school days with the business
    /// calendar and calls `evaluate_silence`.
    SilentSchoolDays,
}

impl Signal {
    pub const ALL: [Signal; 14] = [
        Signal::BatteryHealthPercent,
        Signal::BatteryCycleCount,
        Signal::SmartFailed,
        Signal::ReallocatedSectorsRising,
        Signal::PendingSectorsRising,
        Signal::NvmePercentageUsedPercent,
        Signal::MediaErrors,
        Signal::TemperatureMarginCelsius,
        Signal::FanStoppedWhileHot,
        Signal::MemoryErrorsUncorrected,
        Signal::TouchMissing,
        Signal::DisplayMissing,
        Signal::UnexpectedShutdowns7d,
        Signal::SilentSchoolDays,
    ];

    /// The TOML spelling.
    pub fn name(self) -> &'static str {
        match self {
            Signal::BatteryHealthPercent => "battery_health_percent",
            Signal::BatteryCycleCount => "battery_cycle_count",
            Signal::SmartFailed => "smart_failed",
            Signal::ReallocatedSectorsRising => "reallocated_sectors_rising",
            Signal::PendingSectorsRising => "pending_sectors_rising",
            Signal::NvmePercentageUsedPercent => "nvme_percentage_used_percent",
            Signal::MediaErrors => "media_errors",
            Signal::TemperatureMarginCelsius => "temperature_margin_celsius",
            Signal::FanStoppedWhileHot => "fan_stopped_while_hot",
            Signal::MemoryErrorsUncorrected => "memory_errors_uncorrected",
            Signal::TouchMissing => "touch_missing",
            Signal::DisplayMissing => "display_missing",
            Signal::UnexpectedShutdowns7d => "unexpected_shutdowns_7d",
            Signal::SilentSchoolDays => "silent_school_days",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.name() == s)
    }
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::WarrantyHardware => "warranty_hardware",
            Category::LocalIssue => "local_issue",
            Category::Connectivity => "connectivity",
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The comparison that makes a reading "bad". Exactly one per rule. `at_least` /
/// `at_most` exist beside `above` / `below` so thresholds such as "NVMe used ≥ 90 %" or
/// "≥ 3 shutdowns" are written as stated rather than as 89.5 or 2.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    Below(f64),
    AtMost(f64),
    Above(f64),
    AtLeast(f64),
    Equals(f64),
}

impl Threshold {
    /// Whether `value` is a bad reading.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Threshold::Below(t) => value < t,
            Threshold::AtMost(t) => value <= t,
            Threshold::Above(t) => value > t,
            Threshold::AtLeast(t) => value >= t,
            Threshold::Equals(t) => value == t,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Threshold::Below(_) => "below",
            Threshold::AtMost(_) => "at_most",
            Threshold::Above(_) => "above",
            Threshold::AtLeast(_) => "at_least",
            Threshold::Equals(_) => "equals",
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Threshold::Below(t)
            | Threshold::AtMost(t)
            | Threshold::Above(t)
            | Threshold::AtLeast(t)
            | Threshold::Equals(t) => t,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key(), self.value())
    }
}

/// How long a condition must hold before the flag flips. With both set, whichever is
/// reached first wins: samples guard against a burst of fast reports, minutes against a
/// device that reports rarely. With neither set, one sample is enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    pub samples: Option<u32>,
    pub minutes: Option<u32>,
}

impl Hysteresis {
    /// Whether a run of `samples` consecutive samples spanning `minutes_held` is enough.
    pub fn reached(self, samples: u32, minutes_held: i64) -> bool {
        match (self.samples, self.minutes) {
            (None, None) => samples >= 1,
            (k, t) => {
                k.is_some_and(|k| samples >= k) || t.is_some_and(|t| minutes_held >= i64::from(t))
            }
        }
    }
}

/// One validated rule, as evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    pub signal: Signal,
    pub threshold: Threshold,
    pub raise: Hysteresis,
    pub clear: Hysteresis,
    /// Only meaningful for `fan_stopped_while_hot`.
    pub hot_celsius: Option<f64>,
    pub enabled: bool,
    pub description: Option<String>,
}

/// Where an override applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Lot(String),
    Model(String),
}

/// The keys an override may change; `None` keeps the value below it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulePatch {
    pub threshold: Option<Threshold>,
    pub severity: Option<Severity>,
    pub raise_after_samples: Option<u32>,
    pub raise_after_minutes: Option<u32>,
    pub clear_after_samples: Option<u32>,
    pub clear_after_minutes: Option<u32>,
    pub hot_celsius: Option<f64>,
    pub enabled: Option<bool>,
}

impl RulePatch {
    fn apply(&self, rule: &mut Rule) {
        // A threshold replaces the whole comparison, so a lot may turn `below` into
        // `at_most` without leaving two comparisons on one rule.
        if let Some(t) = self.threshold {
            rule.threshold = t;
        }
        if let Some(s) = self.severity {
            rule.severity = s;
        }
        if let Some(v) = self.raise_after_samples {
            rule.raise.samples = Some(v);
        }
        if let Some(v) = self.raise_after_minutes {
            rule.raise.minutes = Some(v);
        }
        if let Some(v) = self.clear_after_samples {
            rule.clear.samples = Some(v);
        }
        if let Some(v) = self.clear_after_minutes {
            rule.clear.minutes = Some(v);
        }
        if let Some(v) = self.hot_celsius {
            rule.hot_celsius = Some(v);
        }
        if let Some(v) = self.enabled {
            rule.enabled = v;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub scope: Scope,
    pub rule: String,
    pub patch: RulePatch,
}

/// The default rules plus every override; [`RuleSet::resolve`] gives one device's rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub overrides: Vec<Override>,
}

/// A configuration mistake. Rule errors name the rule id and the offending key so the
/// person editing the file can find it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("rules file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("rule {rule:?}: key `{key}`: unknown {what} {value:?}")]
    UnknownValue {
        rule: String,
        key: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("rule {rule:?}: keys `{first}` and `{second}` both set; a rule has one comparison")]
    ConflictingThresholds {
        rule: String,
        first: &'static str,
        second: &'static str,
    },
    #[error(
        "rule {rule:?}: no comparison; set one of `below`, `at_most`, `above`, `at_least`, `equals`"
    )]
    MissingThreshold { rule: String },
    #[error("rule {rule:?}: key `{key}` is not a finite number")]
    NotFinite { rule: String, key: &'static str },
    #[error("rule {rule:?}: key `{key}` must be at least 1")]
    Zero { rule: String, key: &'static str },
    #[error("rule {rule:?}: key `{key}` does not apply to signal {signal}")]
    NotApplicable {
        rule: String,
        key: &'static str,
        signal: Signal,
    },
    #[error("rule {rule:?}: key `id` is empty")]
    EmptyId { rule: String },
    #[error("rule {rule:?}: key `id` defined twice")]
    DuplicateRule { rule: String },
    #[error("override of rule {rule:?}: key `rule` names no known rule")]
    UnknownRule { rule: String },
    #[error("override of rule {rule:?}: set exactly one of keys `lot` and `model`")]
    OverrideScope { rule: String },
}

impl ConfigError {
    /// The rule id the error is about (`None` for TOML syntax errors, which carry a line).
    pub fn rule(&self) -> Option<&str> {
        match self {
            ConfigError::Toml(_) => None,
            ConfigError::UnknownValue { rule, .. }
            | ConfigError::ConflictingThresholds { rule, .. }
            | ConfigError::MissingThreshold { rule }
            | ConfigError::NotFinite { rule, .. }
            | ConfigError::Zero { rule, .. }
            | ConfigError::NotApplicable { rule, .. }
            | ConfigError::EmptyId { rule }
            | ConfigError::DuplicateRule { rule }
            | ConfigError::UnknownRule { rule }
            | ConfigError::OverrideScope { rule } => Some(rule),
        }
    }

    /// The offending key, when one key is to blame.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::UnknownValue { key, .. }
            | ConfigError::NotFinite { key, .. }
            | ConfigError::Zero { key, .. }
            | ConfigError::NotApplicable { key, .. } => Some(key),
            ConfigError::ConflictingThresholds { second, .. } => Some(second),
            ConfigError::EmptyId { .. } | ConfigError::DuplicateRule { .. } => Some("id"),
            ConfigError::UnknownRule { .. } => Some("rule"),
            ConfigError::Toml(_)
            | ConfigError::MissingThreshold { .. }
            | ConfigError::OverrideScope { .. } => None,
        }
    }
}

/// The TOML shape, with names kept as strings so a bad category or signal is reported
/// with the rule id (a typed enum would fail inside serde, before the id is known).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default, rename = "override")]
    overrides: Vec<RawOverride>,
}

struct RawThresholds {
    below: Option<f64>,
    at_most: Option<f64>,
    above: Option<f64>,
    at_least: Option<f64>,
    equals: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    category: String,
    severity: String,
    signal: String,
    description: Option<String>,
    // Inline rather than `#[serde(flatten)]`, which serde cannot combine with
    // `deny_unknown_fields` and which would lose TOML error positions.
    below: Option<f64>,
    at_most: Option<f64>,
    above: Option<f64>,
    at_least: Option<f64>,
    equals: Option<f64>,
    raise_after_samples: Option<u32>,
    raise_after_minutes: Option<u32>,
    clear_after_samples: Option<u32>,
    clear_after_minutes: Option<u32>,
    hot_celsius: Option<f64>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    rule: String,
    lot: Option<String>,
    model: Option<String>,
    // Inline rather than `#[serde(flatten)]`, which serde cannot combine with
    // `deny_unknown_fields` and which would lose TOML error positions.
    below: Option<f64>,
    at_most: Option<f64>,
    above: Option<f64>,
    at_least: Option<f64>,
    equals: Option<f64>,
    severity: Option<String>,
    raise_after_samples: Option<u32>,
    raise_after_minutes: Option<u32>,
    clear_after_samples: Option<u32>,
    clear_after_minutes: Option<u32>,
    hot_celsius: Option<f64>,
    enabled: Option<bool>,
}

fn parse_category(rule: &str, s: &str) -> Result<Category, ConfigError> {
    match s {
        "warranty_hardware" => Ok(Category::WarrantyHardware),
        "local_issue" => Ok(Category::LocalIssue),
        "connectivity" => Ok(Category::Connectivity),
        _ => Err(unknown(rule, "category", "category", s)),
    }
}

fn parse_severity(rule: &str, s: &str) -> Result<Severity, ConfigError> {
    match s {
        "info" => Ok(Severity::Info),
        "minor" => Ok(Severity::Minor),
        "major" => Ok(Severity::Major),
        "critical" => Ok(Severity::Critical),
        _ => Err(unknown(rule, "severity", "severity", s)),
    }
}

fn unknown(rule: &str, key: &'static str, what: &'static str, value: &str) -> ConfigError {
    ConfigError::UnknownValue {
        rule: rule.to_owned(),
        key,
        what,
        value: value.to_owned(),
    }
}

impl RawThresholds {
    fn of_rule(r: &RawRule) -> Self {
        let RawRule {
            below,
            at_most,
            above,
            at_least,
            equals,
            ..
        } = *r;
        RawThresholds {
            below,
            at_most,
            above,
            at_least,
            equals,
        }
    }

    fn of_override(o: &RawOverride) -> Self {
        let RawOverride {
            below,
            at_most,
            above,
            at_least,
            equals,
            ..
        } = *o;
        RawThresholds {
            below,
            at_most,
            above,
            at_least,
            equals,
        }
    }

    /// At most one comparison; `None` when none is set (fine for an override).
    fn parse(&self, rule: &str) -> Result<Option<Threshold>, ConfigError> {
        let set: Vec<Threshold> = [
            self.below.map(Threshold::Below),
            self.at_most.map(Threshold::AtMost),
            self.above.map(Threshold::Above),
            self.at_least.map(Threshold::AtLeast),
            self.equals.map(Threshold::Equals),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [] => Ok(None),
            [t] if !t.value().is_finite() => Err(ConfigError::NotFinite {
                rule: rule.to_owned(),
                key: t.key(),
            }),
            [t] => Ok(Some(*t)),
            [a, b, ..] => Err(ConfigError::ConflictingThresholds {
                rule: rule.to_owned(),
                first: a.key(),
                second: b.key(),
            }),
        }
    }
}

/// Checks what the types cannot: non-zero hysteresis, finite numbers, keys that fit the
/// signal. Run on every rule and on every rule-plus-override, so [`RuleSet::resolve`]
/// never yields an invalid rule.
pub fn validate_rule(rule: &Rule) -> Result<(), ConfigError> {
    let err_zero = |key| ConfigError::Zero {
        rule: rule.id.clone(),
        key,
    };
    if rule.id.trim().is_empty() {
        return Err(ConfigError::EmptyId {
            rule: rule.id.clone(),
        });
    }
    if !rule.threshold.value().is_finite() {
        return Err(ConfigError::NotFinite {
            rule: rule.id.clone(),
            key: rule.threshold.key(),
        });
    }
    for (value, key) in [
        (rule.raise.samples, "raise_after_samples"),
        (rule.raise.minutes, "raise_after_minutes"),
        (rule.clear.samples, "clear_after_samples"),
        (rule.clear.minutes, "clear_after_minutes"),
    ] {
        if value == Some(0) {
            return Err(err_zero(key));
        }
    }
    if let Some(hot) = rule.hot_celsius {
        if rule.signal != Signal::FanStoppedWhileHot {
            return Err(ConfigError::NotApplicable {
                rule: rule.id.clone(),
                key: "hot_celsius",
                signal: rule.signal,
            });
        }
        if !hot.is_finite() {
            return Err(ConfigError::NotFinite {
                rule: rule.id.clone(),
                key: "hot_celsius",
            });
        }
    }
    Ok(())
}

impl RuleSet {
    /// The shipped rules, without any override.
    pub fn shipped() -> Result<RuleSet, ConfigError> {
        RuleSet::from_toml(DEFAULT_RULES_TOML)
    }

    /// The shipped rules extended by a site file (extra `[[rule]]`s and `[[override]]`s).
    pub fn shipped_with(site_toml: &str) -> Result<RuleSet, ConfigError> {
        let mut set = RuleSet::shipped()?;
        set.extend_toml(site_toml)?;
        Ok(set)
    }

    /// Parses and validates one rules file.
    pub fn from_toml(text: &str) -> Result<RuleSet, ConfigError> {
        let mut set = RuleSet::default();
        set.extend_toml(text)?;
        Ok(set)
    }

    /// Adds the rules and overrides of `text`. Overrides may target rules defined earlier
    /// (the shipped set) or in the same text. On error `self` is left unchanged.
    pub fn extend_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let raw: RawFile = toml::from_str(text)?;
        let mut next = self.clone();
        let mut ids: BTreeSet<String> = next.rules.iter().map(|r| r.id.clone()).collect();
        for r in raw.rule {
            let rule = Rule {
                category: parse_category(&r.id, &r.category)?,
                severity: parse_severity(&r.id, &r.severity)?,
                signal: Signal::parse(&r.signal)
                    .ok_or_else(|| unknown(&r.id, "signal", "signal", &r.signal))?,
                threshold: RawThresholds::of_rule(&r)
                    .parse(&r.id)?
                    .ok_or_else(|| ConfigError::MissingThreshold { rule: r.id.clone() })?,
                raise: Hysteresis {
                    samples: r.raise_after_samples,
                    minutes: r.raise_after_minutes,
                },
                clear: Hysteresis {
                    samples: r.clear_after_samples,
                    minutes: r.clear_after_minutes,
                },
                hot_celsius: r.hot_celsius,
                enabled: r.enabled.unwrap_or(true),
                description: r.description,
                id: r.id,
            };
            validate_rule(&rule)?;
            if !ids.insert(rule.id.clone()) {
                return Err(ConfigError::DuplicateRule { rule: rule.id });
            }
            next.rules.push(rule);
        }
        for o in raw.overrides {
            let threshold = RawThresholds::of_override(&o).parse(&o.rule)?;
            let scope = match (o.lot, o.model) {
                (Some(lot), None) => Scope::Lot(lot),
                (None, Some(model)) => Scope::Model(model),
                _ => return Err(ConfigError::OverrideScope { rule: o.rule }),
            };
            let patch = RulePatch {
                threshold,
                severity: o
                    .severity
                    .as_deref()
                    .map(|s| parse_severity(&o.rule, s))
                    .transpose()?,
                raise_after_samples: o.raise_after_samples,
                raise_after_minutes: o.raise_after_minutes,
                clear_after_samples: o.clear_after_samples,
                clear_after_minutes: o.clear_after_minutes,
                hot_celsius: o.hot_celsius,
                enabled: o.enabled,
            };
            let Some(base) = next.rules.iter().find(|r| r.id == o.rule) else {
                return Err(ConfigError::UnknownRule { rule: o.rule });
            };
            // Each patch is checked against its base; patches only replace whole keys, so
            // any stack of individually valid patches is valid too.
            let mut patched = base.clone();
            patch.apply(&mut patched);
            validate_rule(&patched)?;
            next.overrides.push(Override {
                scope,
                rule: o.rule,
                patch,
            });
        }
        *self = next;
        Ok(())
    }

    /// The rules one device is judged by: defaults, then lot overrides, then model
    /// overrides (model > lot > default). Disabled rules are included with
    /// `enabled = false` so callers can tell "off" from "unknown".
    pub fn resolve(&self, model: Option<&str>, lot: Option<&str>) -> Vec<Rule> {
        self.rules
            .iter()
            .map(|base| {
                let mut rule = base.clone();
                let applies = |o: &&Override, want_model: bool| {
                    o.rule == base.id
                        && match &o.scope {
                            Scope::Lot(l) => !want_model && lot == Some(l.as_str()),
                            Scope::Model(m) => want_model && model == Some(m.as_str()),
                        }
                };
                for o in self.overrides.iter().filter(|o| applies(o, false)) {
                    o.patch.apply(&mut rule);
                }
                for o in self.overrides.iter().filter(|o| applies(o, true)) {
                    o.patch.apply(&mut rule);
                }
                rule
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[rule]]
id = "battery_worn"
category = "warranty_hardware"
severity = "major"
signal = "battery_health_percent"
below = 60
raise_after_samples = 3
clear_after_samples = 3
"#;

    #[test]
    fn default_set_parses_and_validates() {
        let set = RuleSet::shipped().expect("shipped rules");
        // Every signal has at least one shipped rule.
        for sig in Signal::ALL {
            assert!(
                set.rules.iter().any(|r| r.signal == sig),
                "no shipped rule reads {sig}"
            );
        }
        for rule in &set.rules {
            validate_rule(rule).unwrap();
            assert!(rule.description.is_some(), "{} has no description", rule.id);
        }
    }

    #[test]
    fn validation_errors_name_rule_and_key() {
        let rule = |extra: &str, signal: &str, category: &str| {
            format!(
                "[[rule]]\nid = \"r1\"\ncategory = \"{category}\"\nseverity = \"minor\"\nsignal = \"{signal}\"\n{extra}\n"
            )
        };
        let ok_sig = "media_errors";
        let ok_cat = "local_issue";
        let cases: Vec<(String, ConfigError)> = vec![
            (
                rule("above = 0", "cpu_vibes", ok_cat),
                unknown("r1", "signal", "signal", "cpu_vibes"),
            ),
            (
                rule("above = 0", ok_sig, "warranty"),
                unknown("r1", "category", "category", "warranty"),
            ),
            (
                rule("below = 1\nabove = 0", ok_sig, ok_cat),
                ConfigError::ConflictingThresholds {
                    rule: "r1".into(),
                    first: "below",
                    second: "above",
                },
            ),
            (
                rule("", ok_sig, ok_cat),
                ConfigError::MissingThreshold { rule: "r1".into() },
            ),
            (
                rule("above = 0\nraise_after_samples = 0", ok_sig, ok_cat),
                ConfigError::Zero {
                    rule: "r1".into(),
                    key: "raise_after_samples",
                },
            ),
            (
                rule("above = 0\nclear_after_minutes = 0", ok_sig, ok_cat),
                ConfigError::Zero {
                    rule: "r1".into(),
                    key: "clear_after_minutes",
                },
            ),
            (
                rule("above = nan", ok_sig, ok_cat),
                ConfigError::NotFinite {
                    rule: "r1".into(),
                    key: "above",
                },
            ),
            (
                rule("above = 0\nhot_celsius = 60", ok_sig, ok_cat),
                ConfigError::NotApplicable {
                    rule: "r1".into(),
                    key: "hot_celsius",
                    signal: Signal::MediaErrors,
                },
            ),
            (
                format!("{BASE}{BASE}"),
                ConfigError::DuplicateRule {
                    rule: "battery_worn".into(),
                },
            ),
            (
                format!("{BASE}[[override]]\nrule = \"nope\"\nlot = \"L1\"\nbelow = 50"),
                ConfigError::UnknownRule {
                    rule: "nope".into(),
                },
            ),
            (
                format!("{BASE}[[override]]\nrule = \"battery_worn\"\nbelow = 50"),
                ConfigError::OverrideScope {
                    rule: "battery_worn".into(),
                },
            ),
            (
                format!(
                    "{BASE}[[override]]\nrule = \"battery_worn\"\nmodel = \"M\"\nabove = 1\nequals = 2"
                ),
                ConfigError::ConflictingThresholds {
                    rule: "battery_worn".into(),
                    first: "above",
                    second: "equals",
                },
            ),
            (
                format!(
                    "{BASE}[[override]]\nrule = \"battery_worn\"\nlot = \"L\"\nclear_after_samples = 0"
                ),
                ConfigError::Zero {
                    rule: "battery_worn".into(),
                    key: "clear_after_samples",
                },
            ),
            (
                format!(
                    "{BASE}[[override]]\nrule = \"battery_worn\"\nlot = \"L\"\nseverity = \"huge\""
                ),
                unknown("battery_worn", "severity", "severity", "huge"),
            ),
        ];
        for (text, want) in cases {
            let got = RuleSet::from_toml(&text).expect_err(&text);
            assert_eq!(got, want, "for:\n{text}");
            // The message names the rule and, when one key is to blame, the key.
            let msg = got.to_string();
            let rule = got.rule().expect("rule errors name a rule");
            assert!(msg.contains(&format!("{rule:?}")), "{msg}");
            if let Some(key) = got.key() {
                assert!(msg.contains(&format!("`{key}`")), "{msg}");
            }
        }
    }

    #[test]
    fn unknown_key_is_a_toml_error_naming_the_key() {
        let err = RuleSet::from_toml(&format!("{BASE}belw = 3\n")).unwrap_err();
        assert!(matches!(err, ConfigError::Toml(_)));
        assert!(err.to_string().contains("belw"), "{err}");
    }

    #[test]
    fn override_precedence_model_over_lot_over_default() {
        let text = format!(
            r#"{BASE}
[[override]]
model = "TravelMate B3"
rule = "battery_worn"
below = 50.0

[[override]]
lot = "Lot 2"
rule = "battery_worn"
below = 55.0
severity = "critical"

[[override]]
lot = "Lot 3"
rule = "battery_worn"
enabled = false
"#
        );
        let set = RuleSet::from_toml(&text).unwrap();
        // (model, lot) -> (threshold, severity, enabled)
        let cases = [
            (None, None, Threshold::Below(60.0), Severity::Major, true),
            (
                None,
                Some("Lot 2"),
                Threshold::Below(55.0),
                Severity::Critical,
                true,
            ),
            (
                Some("TravelMate B3"),
                None,
                Threshold::Below(50.0),
                Severity::Major,
                true,
            ),
            // The model's threshold wins; the lot's severity, which the model leaves
            // alone, still applies.
            (
                Some("TravelMate B3"),
                Some("Lot 2"),
                Threshold::Below(50.0),
                Severity::Critical,
                true,
            ),
            (
                Some("Other"),
                Some("Lot 3"),
                Threshold::Below(60.0),
                Severity::Major,
                false,
            ),
            (
                None,
                Some("lot 2"),
                Threshold::Below(60.0),
                Severity::Major,
                true,
            ),
        ];
        for (model, lot, threshold, severity, enabled) in cases {
            let rules = set.resolve(model, lot);
            let r = &rules[0];
            assert_eq!(
                (r.threshold, r.severity, r.enabled),
                (threshold, severity, enabled),
                "model {model:?} lot {lot:?}"
            );
        }
    }

    #[test]
    fn site_file_extends_shipped_set() {
        let set = RuleSet::shipped_with(
            "[[override]]\nrule = \"battery_worn\"\nlot = \"L\"\nenabled = false\n",
        )
        .unwrap();
        let r = set.resolve(None, Some("L"));
        assert!(!r.iter().find(|r| r.id == "battery_worn").unwrap().enabled);
        let mut set = RuleSet::shipped().unwrap();
        let before = set.clone();
        assert!(
            set.extend_toml(BASE).is_err(),
            "battery_worn is shipped already"
        );
        assert_eq!(set, before, "a failed extend leaves the set unchanged");
    }

    #[test]
    fn hysteresis_reached() {
        let h = |samples, minutes| Hysteresis { samples, minutes };
        let cases = [
            (h(None, None), 1, 0, true),
            (h(Some(3), None), 2, 999, false),
            (h(Some(3), None), 3, 0, true),
            (h(None, Some(10)), 50, 9, false),
            (h(None, Some(10)), 2, 10, true),
            (h(Some(3), Some(10)), 3, 0, true),
            (h(Some(3), Some(10)), 2, 10, true),
            (h(Some(3), Some(10)), 2, 9, false),
        ];
        for (hy, samples, minutes, want) in cases {
            assert_eq!(
                hy.reached(samples, minutes),
                want,
                "{hy:?} {samples} {minutes}"
            );
        }
    }

    #[test]
    fn rule_round_trips_through_serde() {
        let set = RuleSet::shipped().unwrap();
        let text = toml::to_string(&set).unwrap();
        let back: RuleSet = toml::from_str(&text).unwrap();
        assert_eq!(back, set);
    }
}
