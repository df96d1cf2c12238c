//! End-to-end tests across real brokers and databases. Those needing the machine's
//! Mosquitto (127.0.0.1:1883) and PostgreSQL (127.0.0.1:5432) are `#[ignore]`d in the
//! default run and executed by `.ci/run` with `--ignored`; they fail when a service is
//! down, never skip.

mod mosquitto;
