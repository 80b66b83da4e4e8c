//! The config change stream (ARCHITECTURE §5): the revision log tailer that fans changes out to
//! subscribers in memory, and each subscriber's view (reset/snapshot/replay). The events' form is
//! `wire`'s; the workers' side of the stream is `sensor::follower`.
mod feed;
mod subscription;

pub use feed::{ChangeFeed, FeedItem, FeedOptions};
pub use subscription::{SubscribeError, Subscription, Token, open};
