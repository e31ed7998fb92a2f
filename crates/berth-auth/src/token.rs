//! Bearer tokens (Docker token authentication): JWTs signed with HS256 under the deployment's
//! secret, carrying the granted access as `access: [{type, name, actions}]`.
//!
//! Access tokens live minutes; refresh tokens (the OAuth2 flow docker uses after `docker login`)
//! carry only the user and live longer. The `token_use` claim keeps one from being used as the
//! other. Verification checks signature, issuer, audience (the service), expiry and not-before.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Action;

/// The `iss` of every token berth issues.
const ISSUER: &str = "berth";

/// Clock skew tolerated between instances, in seconds.
const LEEWAY: u64 = 5;

/// One resource and the actions granted on it, as the token spec writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// Parses a requested scope, `<type>:<name>:<actions>`. The name may itself hold `:` (a
    /// `host:port/` prefix), so type and actions are split from the ends; a type may carry a
    /// class suffix (`repository(plugin)`), which is ignored.
    pub fn parse_scope(scope: &str) -> Option<Self> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
        Some(Self { kind: kind.to_string(), name: name.to_string(), actions })
    }
}

/// Whether a token is an access token or a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented as `Authorization: Bearer` on registry requests.
    Access,
    /// Exchanged at the token endpoint for access tokens.
    Refresh,
    /// A signed-in user of the web UI (its session cookie); lives as long as a refresh token.
    Session,
}

/// The claims of a berth token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Always `berth`.
    pub iss: String,
    /// The user; empty for an anonymous caller.
    pub sub: String,
    /// The service the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// Granted access (empty in refresh tokens).
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Access or refresh.
    pub token_use: TokenUse,
}

impl Claims {
    /// Whether the token grants `action` on `repository`.
    pub fn grants(&self, repository: &str, action: Action) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository" && a.name == repository && a.actions.iter().any(|x| x == action.as_str() || x == "*")
        })
    }
}

/// Why a presented token was refused (told to the client in the `error_description`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, issuer, audience, use, or not a JWT at all.
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Issues and verifies tokens for one service.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    service: String,
    /// Lifetime of access tokens.
    pub ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tokens {
    /// Tokens signed with `secret` for `service`.
    pub fn new(secret: &[u8], service: &str, ttl: Duration, refresh_ttl: Duration) -> Self {
        crate::hs256::install();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            service: service.to_string(),
            ttl,
            refresh_ttl,
        }
    }

    /// The service name tokens are issued for (their audience).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Signs a token for `sub` (empty: anonymous).
    pub fn issue(&self, sub: &str, access: Vec<ResourceActions>, use_: TokenUse) -> String {
        let iat = now();
        let ttl = if use_ == TokenUse::Access { self.ttl } else { self.refresh_ttl };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: self.service.clone(),
            exp: iat + ttl.as_secs(),
            nbf: iat.saturating_sub(LEEWAY),
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            token_use: use_,
        };
        // HS256 over serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies a token and that it is of the expected use.
    pub fn verify(&self, token: &str, use_: TokenUse) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&self.service]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    TokenError::Invalid("it was issued for another service".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
                _ => TokenError::Invalid(e.to_string()),
            })?
            .claims;
        if claims.token_use != use_ {
            return Err(TokenError::Invalid(format!("a {:?} token cannot be used here", claims.token_use)));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &[u8], service: &str) -> Tokens {
        Tokens::new(secret, service, Duration::from_secs(60), Duration::from_secs(600))
    }

    fn access(name: &str) -> Vec<ResourceActions> {
        vec![ResourceActions { kind: "repository".into(), name: name.into(), actions: vec!["pull".into()] }]
    }

    #[test]
    fn round_trip_and_rejections() {
        let t = tokens(b"0123456789abcdef0123456789abcdef", "svc");
        let token = t.issue("alice", access("a"), TokenUse::Access);
        let claims = t.verify(&token, TokenUse::Access).unwrap();
        assert_eq!((claims.sub.as_str(), claims.access), ("alice", access("a")));

        assert!(matches!(t.verify(&token, TokenUse::Refresh), Err(TokenError::Invalid(_))));
        let other_key = tokens(b"another-secret-another-secret-xx", "svc");
        assert!(matches!(other_key.verify(&token, TokenUse::Access), Err(TokenError::Invalid(_))));
        let other_service = tokens(b"0123456789abcdef0123456789abcdef", "other");
        assert!(matches!(other_service.verify(&token, TokenUse::Access), Err(TokenError::Invalid(_))));

        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = parts[1].replace('a', "b");
        assert!(t.verify(&parts.join("."), TokenUse::Access).is_err());
        assert!(t.verify("not-a-token", TokenUse::Access).is_err());

        let expired = Tokens::new(b"0123456789abcdef0123456789abcdef", "svc", Duration::ZERO, Duration::ZERO);
        let mut claims = t.verify(&token, TokenUse::Access).unwrap();
        claims.exp = now() - 3600;
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &expired.encoding).unwrap();
        assert!(matches!(t.verify(&old, TokenUse::Access), Err(TokenError::Expired)));
    }

    #[test]
    fn scopes() {
        let s = ResourceActions::parse_scope("repository:a/b:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.actions),
            ("repository", "a/b", vec!["pull".into(), "push".into()])
        );
        let s = ResourceActions::parse_scope("repository(plugin):localhost:5000/x:pull").unwrap();
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("repository", "localhost:5000/x"));
        assert_eq!(ResourceActions::parse_scope("registry:catalog:*").unwrap().actions, vec!["*".to_string()]);
        assert!(ResourceActions::parse_scope("repository").is_none());
        assert!(ResourceActions::parse_scope("repository::pull").is_none());
    }
}
