//! Helpers shared by the integration tests. Each test binary compiles this whole module but
//! uses only part of it.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub mod app;
pub mod shop;
pub mod smtp;
