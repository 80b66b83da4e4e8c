use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};

use super::{Claims, Principal};

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash.
const MIN_HS256_SECRET_BYTES: usize = 32;

/// `KID=ALG:PATH`, e.g. `2026-11=RS256:/etc/mailsensor/jwt.pub.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub kid: String,
    pub algorithm: Algorithm,
    pub path: PathBuf,
}

impl FromStr for KeySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("`{s}`: expected KID=ALG:PATH with ALG one of RS256, ES256, EdDSA");
        let (kid, rest) = s.split_once('=').ok_or_else(usage)?;
        let (alg, path) = rest.split_once(':').ok_or_else(usage)?;
        let algorithm = match alg {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return Err(usage()),
        };
        if kid.is_empty() || path.is_empty() {
            return Err(usage());
        }
        Ok(KeySpec { kid: kid.to_owned(), algorithm, path: PathBuf::from(path) })
    }
}

/// What the process needs to know to verify (and optionally mint) tokens.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub hs256_secret: Option<String>,
    pub public_keys: Vec<KeySpec>,
    pub signing_key: Option<KeySpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "no token verification key configured: set MAILSENSOR_JWT_HS256_SECRET (development) or MAILSENSOR_JWT_PUBLIC_KEYS"
    )]
    NoKeys,
    #[error("the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes long")]
    ShortSecret,
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("key {kid} in {path} is not a valid {alg:?} PEM key: {source}")]
    Parse { kid: String, path: String, alg: Algorithm, source: jsonwebtoken::errors::Error },
    #[error("key id {0} is configured twice")]
    DuplicateKid(String),
    #[error(
        "no signing key configured: set MAILSENSOR_JWT_SIGNING_KEY (KID=ALG:PATH to a private key) or MAILSENSOR_JWT_HS256_SECRET"
    )]
    NoSigningKey,
}

/// Why a presented token was refused. Each message is safe to show the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the token is malformed or uses an unsupported algorithm")]
    Malformed,
    #[error("algorithm {0} is not accepted for this token")]
    AlgorithmNotAllowed(String),
    #[error("unknown key id `{0}`")]
    UnknownKid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token has critical header parameters this API does not understand")]
    UnknownCritical,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token is missing a claim: {0}")]
    MissingClaim(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verification keys: an optional HS256 shared secret (tokens without `kid`) and public keys
/// looked up by `kid`. Rotation is adding the new key, re-issuing, then removing the old key.
pub struct KeySet {
    issuer: String,
    audience: String,
    secret: Option<DecodingKey>,
    by_kid: HashMap<String, VerificationKey>,
    signer: Option<(Option<String>, Algorithm, EncodingKey)>,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, KeyConfigError> {
    std::fs::read(path).map_err(|source| KeyConfigError::Read { path: path.display().to_string(), source })
}

fn parse_err(spec: &KeySpec) -> impl FnOnce(jsonwebtoken::errors::Error) -> KeyConfigError + '_ {
    move |source| KeyConfigError::Parse {
        kid: spec.kid.clone(),
        path: spec.path.display().to_string(),
        alg: spec.algorithm,
        source,
    }
}

impl KeySet {
    /// Keys to verify tokens with (and to mint them, if a signing key is given): what `serve` needs.
    pub fn from_config(config: &AuthConfig) -> Result<KeySet, KeyConfigError> {
        let keys = Self::load(config)?;
        if keys.secret.is_none() && keys.by_kid.is_empty() {
            return Err(KeyConfigError::NoKeys);
        }
        Ok(keys)
    }

    /// Keys to mint tokens with (`mailsensor token`): a signing key alone will do, since the
    /// public half is the API's to hold.
    pub fn for_minting(config: &AuthConfig) -> Result<KeySet, KeyConfigError> {
        let keys = Self::load(config)?;
        if keys.signer.is_none() {
            return Err(KeyConfigError::NoSigningKey);
        }
        Ok(keys)
    }

    fn load(config: &AuthConfig) -> Result<KeySet, KeyConfigError> {
        let secret = match &config.hs256_secret {
            Some(s) if s.len() < MIN_HS256_SECRET_BYTES => return Err(KeyConfigError::ShortSecret),
            Some(s) => Some(s.as_bytes()),
            None => None,
        };
        let mut by_kid = HashMap::new();
        for spec in &config.public_keys {
            let pem = read(&spec.path)?;
            let key = match spec.algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            }
            .map_err(parse_err(spec))?;
            let entry = VerificationKey { algorithm: spec.algorithm, key };
            if by_kid.insert(spec.kid.clone(), entry).is_some() {
                return Err(KeyConfigError::DuplicateKid(spec.kid.clone()));
            }
        }
        let signer = match (&config.signing_key, secret) {
            (Some(spec), _) => {
                let pem = read(&spec.path)?;
                let key = match spec.algorithm {
                    Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
                    _ => EncodingKey::from_ed_pem(&pem),
                }
                .map_err(parse_err(spec))?;
                Some((Some(spec.kid.clone()), spec.algorithm, key))
            }
            (None, Some(secret)) => Some((None, Algorithm::HS256, EncodingKey::from_secret(secret))),
            (None, None) => None,
        };
        Ok(KeySet {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            secret: secret.map(DecodingKey::from_secret),
            by_kid,
            signer,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies signature, algorithm, `exp`, `iss`, `aud`, `sub`, and the role's claims.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        refuse_critical(token)?;
        // The key decides the algorithm, never the token: an HS256 token is checked only against
        // the shared secret, so a public key can never be used as an HMAC secret.
        let (algorithm, key) = match (&header.kid, header.alg) {
            (_, Algorithm::HS256) => {
                (Algorithm::HS256, self.secret.as_ref().ok_or_else(|| TokenError::AlgorithmNotAllowed("HS256".into()))?)
            }
            (Some(kid), alg) => {
                let entry = self.by_kid.get(kid).ok_or_else(|| TokenError::UnknownKid(shown(kid)))?;
                if entry.algorithm != alg {
                    return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")));
                }
                (entry.algorithm, &entry.key)
            }
            (None, alg) => return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?} without a `kid`"))),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let data = decode::<serde_json::Value>(token, key, &validation).map_err(classify)?;
        let claims: Claims = serde_json::from_value(data.claims).map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix("missing field ") {
                Some(rest) => {
                    TokenError::MissingClaim(rest.split(' ').next().unwrap_or(rest).trim_matches('`').to_owned())
                }
                None => TokenError::Invalid(text),
            }
        })?;
        Principal::from_claims(claims).map_err(TokenError::MissingClaim)
    }

    /// Signs `claims` with the configured signing key (or the HS256 secret).
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyConfigError> {
        let (kid, algorithm, key) = self.signer.as_ref().ok_or(KeyConfigError::NoSigningKey)?;
        let mut header = Header::new(*algorithm);
        header.kid = kid.clone();
        encode(&header, claims, key).map_err(|source| KeyConfigError::Parse {
            kid: kid.clone().unwrap_or_default(),
            path: String::new(),
            alg: *algorithm,
            source,
        })
    }
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand; this API
/// understands none, so such a token is refused rather than half-understood.
fn refuse_critical(token: &str) -> Result<(), TokenError> {
    use base64::Engine as _;
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if header.contains_key("crit") { Err(TokenError::UnknownCritical) } else { Ok(()) }
}

/// A value from a token, safe to echo in an answer and a log line: control characters escaped
/// (no forged log lines, no terminal escapes), and at most 64 characters.
fn shown(value: &str) -> String {
    let escaped: String = value.chars().flat_map(char::escape_default).collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

fn classify(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed("mismatch".into()),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed
        }
        _ => TokenError::Invalid(e.to_string()),
    }
}
