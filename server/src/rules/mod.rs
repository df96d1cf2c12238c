//! Fault detection rules: which health readings make a device faulty, how long they must
//! hold, who should act, and the per-lot / per-model adjustments sites make.
//!
//! Pure logic for the server: configuration text and samples in, transitions out. It must
//! never do IO, read the clock, spawn tasks or touch the database; the caller owns the
//! states, the time and the business calendar (see `evaluate_silence`).

pub mod config;
pub mod eval;

pub use config::{
    Category, ConfigError, DEFAULT_HOT_CELSIUS, DEFAULT_RULES_TOML, Hysteresis, Override, Rule,
    RulePatch, RuleSet, Scope, Severity, Signal, Threshold, validate_rule,
};
pub use eval::{
    Evidence, RuleState, SHUTDOWN_WINDOW, Sample, Transition, WindowEntry, evaluate, evaluate_all,
    evaluate_silence,
};
