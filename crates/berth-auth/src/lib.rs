//! Authentication and authorization of berth, with no HTTP framework and no AWS: who is calling,
//! and what the policy lets them do.
//!
//! - [`policy`]: users, groups and rules from one TOML document;
//! - [`password`]: argon2 and bcrypt hashes;
//! - [`mac`]: the HMAC-SHA256 of everything berth signs for clients to hand back;
//! - [`token`]: the HS256 bearer tokens of Docker token authentication (signed and checked by
//!   jsonwebtoken through a crypto provider of berth's own: HMAC-SHA256 only);
//! - logins: failed-login throttling per client address, and a short cache of successful checks;
//! - [`PolicySource`]: the policy is read again from where it came from while the registry runs;
//! - upload capabilities: signed rights to continue one upload session, for an upload host that
//!   clients send no credentials to;
//! - sessions of the web UI: a signed token in a cookie, standing for the user who signed in.
//!
//! [`Auth`] ties them together for the engine: [`Auth::authenticate`] turns the credentials of a
//! request into an [`Access`] (the caller and the policy in force when the request arrived), whose
//! [`Access::allows`] is the one authorization question; [`Auth::grant`] and [`Auth::redeem`]
//! are what the token endpoint hands out.

pub mod mac;
pub mod password;
pub mod policy;
pub mod token;

mod capability;
mod grant;
mod hs256;
mod login;
mod session;
mod source;

pub use self::capability::CapabilityError;
pub use self::grant::Grant;
pub use self::login::LoginError;
pub use self::policy::{Action, Policy};
pub use self::source::PolicySource;
pub use self::token::{Claims, ResourceActions, TokenError, TokenUse, Tokens};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use self::capability::Capabilities;
use self::login::Logins;
use self::source::Current;

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Settings of authentication; the composition root fills them in.
pub struct AuthConfig {
    /// Users, groups and rules.
    pub policy: Policy,
    /// HMAC key tokens are signed with (at least [`MIN_SECRET_LEN`] bytes); the same on every instance.
    pub secret: Vec<u8>,
    /// The service name: the `service` of challenges and the audience of tokens.
    pub service: String,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (what `docker login` stores).
    pub refresh_ttl: Duration,
    /// Where to read the policy again, and how often (`None`: the policy is fixed).
    pub reload: Option<(Arc<dyn PolicySource>, Duration)>,
}

/// The auth state of a registry: the policy in force, the token keys, the login counters.
pub struct Auth {
    policy: Arc<Current>,
    tokens: Tokens,
    logins: Logins,
    capabilities: Capabilities,
}

/// Credentials as a client presents them in an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

impl Credentials {
    /// Parses an `Authorization` header value; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok();
            let text = decoded.and_then(|d| String::from_utf8(d).ok());
            match text.as_deref().and_then(|t| t.split_once(':')) {
                Some((user, password)) => Ok(Credentials::Basic { user: user.into(), password: password.into() }),
                None => Err("malformed Basic credentials".into()),
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credentials::Bearer(rest.trim().to_string()))
        } else {
            Err(format!("unsupported authorization scheme {scheme:?}; use Bearer or Basic"))
        }
    }
}

/// Why presented credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The `Authorization` header is not credentials berth understands.
    #[error("{0}")]
    Malformed(String),
    /// Unknown user, wrong password, or too many failures from the client.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// A bearer token that is expired, forged, for another service, or not an access token.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Who is calling, as established from the request's credentials.
#[derive(Debug)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// Basic credentials, checked.
    User(String),
    /// A verified bearer token.
    Token(Claims),
}

/// The caller of one request and the policy in force when it arrived: what it may do.
pub struct Access {
    caller: Caller,
    policy: Arc<Policy>,
}

impl Access {
    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The user name the policy knows the caller by (`None`: anonymous).
    pub fn user(&self) -> Option<&str> {
        match &self.caller {
            Caller::User(user) => Some(user),
            Caller::Token(claims) if !claims.sub.is_empty() => Some(&claims.sub),
            _ => None,
        }
    }

    /// Whether the caller may do `action` on `repository` with the credentials it presented: a
    /// token by what it grants, anyone else by the policy.
    pub fn allows(&self, repository: &str, action: Action) -> bool {
        match &self.caller {
            Caller::Token(claims) => claims.grants(repository, action),
            _ => self.policy_allows(repository, action),
        }
    }

    /// Whether the policy lets the caller do `action` on `repository` (what a token asked for
    /// anew would grant).
    pub fn policy_allows(&self, repository: &str, action: Action) -> bool {
        self.policy.allowed(self.user(), repository).contains(&action)
    }
}

impl Auth {
    /// Checks the settings; the error says what is wrong.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        if config.secret.len() < MIN_SECRET_LEN {
            return Err(format!("the token signing secret must be at least {MIN_SECRET_LEN} bytes"));
        }
        if config.service.is_empty() || config.service.contains('"') {
            return Err("the service name must be non-empty and without quotes".into());
        }
        Ok(Self {
            policy: Arc::new(Current::new(config.policy, config.reload)),
            tokens: Tokens::new(&config.secret, &config.service, config.token_ttl, config.refresh_ttl),
            logins: Logins::default(),
            capabilities: Capabilities::new(&config.secret),
        })
    }

    /// The service name tokens are issued for.
    pub fn service(&self) -> &str {
        self.tokens.service()
    }

    /// The policy in force; starts reading it again in the background when that is due.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.refresh();
        self.policy.get()
    }

    /// Checks a user name and password from a client (at `client`, when known): throttled per
    /// client address, successful checks remembered for a minute.
    pub async fn login(&self, client: Option<IpAddr>, user: &str, password: &str) -> Result<(), LoginError> {
        self.logins.check(&self.policy(), client, user, password).await
    }

    /// A capability for upload `session` of `repository`, good for `ttl`.
    pub fn upload_capability(&self, repository: &str, session: &str, ttl: Duration) -> String {
        self.capabilities.issue(repository, session, SystemTime::now() + ttl)
    }

    /// Checks an upload capability against the session it is presented for.
    pub fn check_upload_capability(
        &self,
        capability: &str,
        repository: &str,
        session: &str,
    ) -> Result<(), CapabilityError> {
        self.capabilities.check(capability, repository, session)
    }

    /// Establishes who is calling from the request's `Authorization` header (`None`: anonymous),
    /// checking passwords and token signatures.
    pub async fn authenticate(&self, authorization: Option<&str>, client: Option<IpAddr>) -> Result<Access, Refusal> {
        let policy = self.policy();
        let caller = match authorization.map(Credentials::parse).transpose().map_err(Refusal::Malformed)? {
            None => Caller::Anonymous,
            Some(Credentials::Basic { user, password }) => {
                self.logins.check(&policy, client, &user, &password).await?;
                Caller::User(user)
            }
            Some(Credentials::Bearer(token)) => Caller::Token(self.tokens.verify(&token, TokenUse::Access)?),
        };
        Ok(Access { caller, policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(rules: &str) -> Auth {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let policy = Policy::parse(&format!("[users]\nalice = \"{hash}\"\n{rules}")).unwrap();
        Auth::new(AuthConfig {
            policy,
            secret: vec![7; MIN_SECRET_LEN],
            service: "svc".into(),
            token_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(600),
            reload: None,
        })
        .unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn credentials() {
        assert_eq!(
            Credentials::parse(&basic("a", "b:c")),
            Ok(Credentials::Basic { user: "a".into(), password: "b:c".into() })
        );
        assert_eq!(Credentials::parse("bearer  xyz "), Ok(Credentials::Bearer("xyz".into())));
        assert!(Credentials::parse("Basic !!!").unwrap_err().contains("malformed"));
        assert!(Credentials::parse("Digest x").unwrap_err().contains("Digest"));
    }

    #[test]
    fn settings_are_checked() {
        let config = |secret: usize, service: &str| AuthConfig {
            policy: Policy::parse("").unwrap(),
            secret: vec![1; secret],
            service: service.into(),
            token_ttl: Duration::ZERO,
            refresh_ttl: Duration::ZERO,
            reload: None,
        };
        assert!(Auth::new(config(MIN_SECRET_LEN - 1, "s")).err().unwrap().contains("at least"));
        assert!(Auth::new(config(MIN_SECRET_LEN, "")).is_err());
        assert!(Auth::new(config(MIN_SECRET_LEN, "a\"b")).is_err());
        assert!(Auth::new(config(MIN_SECRET_LEN, "s")).is_ok());
    }

    #[tokio::test]
    async fn tokens_allow_what_they_grant_and_callers_what_the_policy_grants() {
        let auth =
            auth("[[rules]]\nrepositories = [\"a/**\"]\nwho = [\"user:alice\"]\nactions = [\"pull\", \"push\"]\n");
        let user = auth.authenticate(Some(&basic("alice", "pw")), None).await.unwrap();
        assert_eq!(user.user(), Some("alice"));
        assert!(
            user.allows("a/b", Action::Push) && !user.allows("a/b", Action::Delete) && !user.allows("c", Action::Pull)
        );

        let wanted = [ResourceActions::parse_scope("repository:a/b:pull").unwrap()];
        let grant = auth.grant(Some("alice"), &wanted, false);
        let header = format!("Bearer {}", grant.access_token);
        let token = auth.authenticate(Some(&header), None).await.unwrap();
        assert!(token.allows("a/b", Action::Pull));
        assert!(!token.allows("a/b", Action::Push), "the token did not ask for push");
        assert!(token.policy_allows("a/b", Action::Push), "a new token could");

        let anonymous = auth.authenticate(None, None).await.unwrap();
        assert!(anonymous.user().is_none() && !anonymous.allows("a/b", Action::Pull));

        let refused = auth.authenticate(Some(&basic("alice", "wrong")), None).await;
        assert!(matches!(refused, Err(Refusal::Login(LoginError::Invalid))));
        assert!(matches!(auth.authenticate(Some("Bearer x.y.z"), None).await, Err(Refusal::Token(_))));
        assert!(matches!(auth.authenticate(Some("Negotiate x"), None).await, Err(Refusal::Malformed(_))));
    }
}

/// Property tests: no `Authorization` header panics its parser; Basic credentials round-trip.
#[cfg(test)]
mod props {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn any_authorization_header_parses_or_not(value in ".{0,300}") {
            let _ = Credentials::parse(&value);
        }

        #[test]
        fn basic_credentials_round_trip(user in "[^:]{0,40}", password in ".{0,60}", scheme in "Basic|basic|BASIC") {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let parsed = Credentials::parse(&format!("{scheme} {encoded}"));
            prop_assert_eq!(parsed, Ok(Credentials::Basic { user, password }));
        }

        #[test]
        fn bearer_tokens_round_trip(token in "[A-Za-z0-9._~+/=-]{1,300}") {
            prop_assert_eq!(Credentials::parse(&format!("Bearer {token}")), Ok(Credentials::Bearer(token)));
        }

        #[test]
        fn any_scope_parses_or_not(scope in ".{0,200}") {
            if let Some(parsed) = ResourceActions::parse_scope(&scope) {
                prop_assert!(!parsed.kind.is_empty() && !parsed.name.is_empty());
            }
        }

        #[test]
        fn any_policy_text_parses_or_is_refused(text in ".{0,400}") {
            let _ = Policy::parse(&text);
        }
    }
}
