//! End-to-end tests of Parc live in `e2e/`: they run real agents, servers, brokers and
//! databases together. This library is empty on purpose; the crate exists for its tests.
