//! Alerts, the pure part: the events a verdict or a retro-hunt raises and their payloads (OpenAPI
//! components), which destinations an event is for (their filters), and how each kind of
//! destination is spoken to — Standard Webhooks signatures, syslog frames carrying CEF, the
//! e-mail summary — with the retry schedule and the address guard. No I/O: `delivery` sends,
//! `store` keeps the outbox.
pub mod cef;
pub mod email;
mod event;
mod filters;
pub mod guard;
pub mod schedule;
pub mod signature;

pub use event::*;
pub use filters::*;
