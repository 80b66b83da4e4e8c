//! Who is calling: JWT verification, the principal it yields, and token minting.
mod keys;
mod principal;

pub use keys::{AuthConfig, KeyConfigError, KeySet, KeySpec, TokenError};
pub use principal::{Claims, Principal, Role};
