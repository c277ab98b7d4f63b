//! The server's API tests, one binary: the real engine on a temporary data directory, the
//! real server on port 0, real HTTP. Each module is one part of the API; `support` is the
//! test kit they share (a test app, typed client calls, a shop of customers, a real SMTP
//! server).

mod support;

mod accounts;
mod catalog;
mod contract;
mod drop;
mod mail;
mod ops;
mod orders;
mod stock_stream;
mod users;
