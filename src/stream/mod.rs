//! The config change stream (ARCHITECTURE §5): the revision log tailer that fans changes out to
//! subscribers in memory, the per-subscriber session logic (reset/snapshot/replay), the wire
//! format, and a client that workers and tests use to follow a sensor's settings.
pub mod client;
mod feed;
mod session;
pub mod wire;

pub use feed::{ChangeFeed, FeedOptions};
pub use session::{Event, EventKind, SessionError, Subscription, Token, open};
