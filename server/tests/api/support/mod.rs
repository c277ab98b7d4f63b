//! The test kit of the API tests: a test app on port 0 and its typed client, a shop of
//! verified customers and an admin, a real SMTP server, and the one way to wait (`eventually`).

pub mod app;
pub mod shop;
pub mod smtp;
pub mod wait;
