//! The Parc server library: everything `parc-server` does, testable without the
//! binary. `main.rs` only parses arguments and reports errors.

pub mod accounts_cli;
pub mod allocator;
pub mod app;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod csv_export;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod enroll;
pub mod http;
pub mod http_auth;
pub mod http_procurement;
pub mod http_releases;
pub mod http_tickets;
pub mod ingest;
pub mod inventory_diff;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod procurement;
pub mod procurement_cli;
pub mod releases;
pub mod releases_cli;
pub mod rules;
pub mod scorecard;
pub mod shutdown;
pub mod store;
pub mod tickets;
pub mod web;
