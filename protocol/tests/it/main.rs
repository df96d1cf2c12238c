//! Integration tests of the wire format: golden files, validation errors, framing,
//! topics, serial normalisation, and a no-panic property test of the decoder.

mod decode;
mod frame;
mod fuzz;
mod golden;
mod samples;
mod serial;
mod topics;
