//! Authentication and authorization: who is calling, and whether the route allows it.
//!
//! Every request passes `Registry::authorize` before its handler runs; it is the one place that
//! maps routes to the action they need (`pull` for GET/HEAD, `delete` for DELETE, `push` for the
//! rest and for every upload route) and decides between going on, `401 UNAUTHORIZED` with a
//! `WWW-Authenticate: Bearer` challenge (no or bad credentials, or a token that lacks a scope the
//! caller could get) and `403 DENIED` (the caller is known and the policy says no).
//!
//! Callers present a bearer token from the token endpoint (`/token`, Docker token spec: the
//! `endpoint` module; tokens in [`token`]), Basic credentials on any request (simple clients;
//! checked, throttled and cached in `login`), or nothing (anonymous: only what the policy grants
//! `anonymous`, and never `/v2/` itself, so that `docker login` checks passwords). The [`policy`]
//! says who may do what; `source` keeps it current by reading it again while the registry runs.

pub mod password;
pub mod policy;
pub mod token;

mod endpoint;
mod login;
mod source;

pub use self::source::PolicySource;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Method;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};

use self::login::{LoginError, Logins};
use self::policy::Policy;
use self::token::{Claims, TokenError, TokenUse, Tokens};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::names::Name;
use crate::route::Route;
use crate::{Registry, Req};

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a caller may do on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The name used in policies and token scopes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// Settings of an auth-enabled registry; the shells fill them from flags or the environment.
pub struct AuthConfig {
    /// Users, groups and rules.
    pub policy: Policy,
    /// HMAC key tokens are signed with (at least [`MIN_SECRET_LEN`] bytes); the same on every instance.
    pub secret: Vec<u8>,
    /// The service name: the `service` of challenges and the audience of tokens.
    pub service: String,
    /// Base URL clients reach the registry at (the token realm is `<url>/token`); by default taken
    /// from each request's `Host` and `X-Forwarded-Proto`.
    pub public_url: Option<String>,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (what `docker login` stores).
    pub refresh_ttl: Duration,
    /// Where to read the policy again, and how often (`None`: the policy is fixed).
    pub reload: Option<(Arc<dyn PolicySource>, Duration)>,
}

/// The auth state of a registry.
pub struct Auth {
    policy: Arc<source::Current>,
    tokens: Tokens,
    public_url: Option<String>,
    logins: Logins,
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
        let public_url = config.public_url.map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!("the public URL {url:?} must start with https:// or http://"));
        }
        Ok(Self {
            policy: Arc::new(source::Current::new(config.policy, config.reload)),
            tokens: Tokens::new(&config.secret, &config.service, config.token_ttl, config.refresh_ttl),
            public_url,
            logins: Logins::default(),
        })
    }

    /// Starts reading the policy again when that is due.
    pub(crate) fn refresh(&self) {
        self.policy.refresh();
    }

    /// `Bearer realm=…,service=…[,scope=…][,error=…]`.
    fn challenge(&self, req: &Req, scope: Option<&str>, error: Option<&str>) -> String {
        let mut value = format!("Bearer realm=\"{}/token\",service=\"{}\"", self.origin(req), self.tokens.service());
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        value
    }

    /// The registry's base URL as the client sees it.
    fn origin(&self, req: &Req) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let proto = header("x-forwarded-proto").and_then(|p| p.split(',').next()).map_or("http", str::trim);
        let proto = if proto == "https" { "https" } else { "http" };
        let host = header("host")
            .or(req.authority.as_deref())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
            .unwrap_or("localhost");
        format!("{proto}://{host}")
    }

    /// Checks a user name and password from a client.
    async fn login(&self, client: Option<IpAddr>, user: &str, password: &str) -> Result<()> {
        match self.logins.check(&self.policy.get(), client, user, password).await {
            Ok(()) => Ok(()),
            Err(LoginError::Invalid) => {
                Err(RegistryError::new(ErrorKind::Unauthorized, "invalid username or password"))
            }
            Err(LoginError::Throttled(wait)) => Err(RegistryError::new(
                ErrorKind::TooManyRequests,
                format!("too many failed logins from this address; retry in {} s", wait.as_secs().max(1)),
            )
            .with_header(RETRY_AFTER, wait.as_secs().max(1).to_string())),
        }
    }
}

/// The authenticated user of a request, put in the response's extensions for the shells' logs.
#[derive(Debug, Clone)]
pub struct User(pub String);

/// Who is calling, as established from the `Authorization` header.
pub(crate) enum Caller {
    /// Authentication is off: everything is allowed.
    Open,
    /// No credentials.
    Anonymous,
    /// Basic credentials, checked.
    User(String),
    /// A verified bearer token.
    Token(Claims),
}

impl Caller {
    /// The user name the policy knows the caller by (`None`: anonymous).
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Caller::User(user) => Some(user),
            Caller::Token(claims) if !claims.sub.is_empty() => Some(&claims.sub),
            _ => None,
        }
    }

    /// Whether the caller may do `action` on `name` with the credentials it presented.
    pub(crate) fn may(&self, auth: Option<&Auth>, name: &Name, action: Action) -> bool {
        let Some(auth) = auth else { return true };
        match self {
            Caller::Open => true,
            Caller::Token(claims) => claims.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == name.as_str()
                    && a.actions.iter().any(|x| x == action.as_str() || x == "*")
            }),
            _ => auth.policy.get().allowed(self.user(), name.as_str()).contains(&action),
        }
    }

    /// Whether the policy lets the caller pull `repository` (listings show only those).
    pub(crate) fn may_see(&self, auth: Option<&Auth>, repository: &str) -> bool {
        match (auth, self) {
            (None, _) | (_, Caller::Open) => true,
            (Some(auth), _) => auth.policy.get().allowed(self.user(), repository).contains(&Action::Pull),
        }
    }
}

/// What a route needs.
enum Need<'a> {
    /// Any valid credentials (an anonymous token counts): `/v2/` and `/v2/_catalog`.
    Login,
    /// An action on a repository.
    Repo(&'a Name, Action),
}

fn need<'a>(route: &'a Route, method: &Method) -> Need<'a> {
    let by_method = || match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match route {
        Route::Base | Route::Catalog | Route::Token => Need::Login,
        Route::Tags(name) | Route::Manifest(name, _) | Route::Blob(name, _) | Route::Referrers(name, _) => {
            Need::Repo(name, by_method())
        }
        Route::UploadStart(name) | Route::Upload(name, _) => Need::Repo(name, Action::Push),
    }
}

/// The scope a challenge asks for: what a client should request to be let through (with pull on
/// the source of a mount, as distribution asks too, so one token serves the mount).
fn scope(name: &Name, action: Action, mount_from: Option<&Name>) -> String {
    let actions = match action {
        Action::Push => "pull,push",
        a => a.as_str(),
    };
    match mount_from {
        Some(from) => format!("repository:{name}:{actions} repository:{from}:pull"),
        None => format!("repository:{name}:{actions}"),
    }
}

impl Registry {
    /// Establishes the caller from the `Authorization` header.
    pub(crate) async fn authenticate(&self, req: &Req) -> Result<Caller> {
        let Some(auth) = &self.auth else { return Ok(Caller::Open) };
        let Some(value) = req.headers.get(AUTHORIZATION) else { return Ok(Caller::Anonymous) };
        let unauthorized = |message: String, error: Option<&str>| {
            RegistryError::new(ErrorKind::Unauthorized, message)
                .with_header(WWW_AUTHENTICATE, auth.challenge(req, None, error))
        };
        let value = value.to_str().unwrap_or_default();
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = basic_credentials(credentials.trim())
                .ok_or_else(|| unauthorized("malformed Basic credentials".into(), None))?;
            auth.login(req.client, &user, &password).await.map_err(|e| match e.kind {
                ErrorKind::Unauthorized => unauthorized(e.message, None),
                _ => e,
            })?;
            Ok(Caller::User(user))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            match auth.tokens.verify(credentials.trim(), TokenUse::Access) {
                Ok(claims) => Ok(Caller::Token(claims)),
                Err(e @ (TokenError::Expired | TokenError::Invalid(_))) => {
                    Err(unauthorized(e.to_string(), Some("invalid_token")))
                }
            }
        } else {
            Err(unauthorized(format!("unsupported authorization scheme {scheme:?}; use Bearer or Basic"), None))
        }
    }

    /// Decides whether `caller` may take `route` with `method`: the one authorization check.
    pub(crate) fn authorize(&self, caller: &Caller, route: &Route, req: &Req) -> Result<()> {
        let Some(auth) = &self.auth else { return Ok(()) };
        let challenge = |scope: Option<&str>, error: Option<&str>| auth.challenge(req, scope, error);
        let (name, action) = match need(route, &req.method) {
            Need::Login => {
                return match caller {
                    Caller::Anonymous => {
                        let scope = (*route == Route::Catalog).then_some("registry:catalog:*");
                        Err(RegistryError::new(ErrorKind::Unauthorized, "authentication required")
                            .with_header(WWW_AUTHENTICATE, challenge(scope, None)))
                    }
                    _ => Ok(()),
                };
            }
            Need::Repo(name, action) => (name, action),
        };
        let scope = scope(name, action, mount_source(route, req).as_ref());
        if caller.may(Some(auth), name, action) {
            return match mount_source(route, req) {
                // A mount whose token lacks pull on the source, which the policy would grant: ask
                // for a token that covers both, so the blob is mounted rather than sent again.
                // (Without the policy's consent the handler falls back to a normal upload.)
                Some(from)
                    if matches!(caller, Caller::Token(_))
                        && !caller.may(Some(auth), &from, Action::Pull)
                        && auth.policy.get().allowed(caller.user(), from.as_str()).contains(&Action::Pull) =>
                {
                    Err(RegistryError::new(
                        ErrorKind::Unauthorized,
                        format!("the token does not grant pull on repository {from}, the source of the mount"),
                    )
                    .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), Some("insufficient_scope"))))
                }
                _ => Ok(()),
            };
        }
        let verb = action.as_str();
        let policy_allows = auth.policy.get().allowed(caller.user(), name.as_str()).contains(&action);
        match caller {
            Caller::Anonymous => Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!("authentication required to {verb} repository {name}"),
            )
            .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), None))),
            Caller::Token(claims) if claims.sub.is_empty() || policy_allows => Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!("the token does not grant {verb} on repository {name}"),
            )
            .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), Some("insufficient_scope")))),
            _ => Err(RegistryError::new(
                ErrorKind::Denied,
                format!("{} may not {verb} repository {name}", caller.user().unwrap_or("anonymous")),
            )),
        }
    }
}

/// The source repository of a cross-repository mount (`POST …/blobs/uploads/?mount=…&from=…`).
fn mount_source(route: &Route, req: &Req) -> Option<Name> {
    let Route::UploadStart(name) = route else { return None };
    req.query.get("mount")?;
    Name::parse(req.query.get("from")?).ok().filter(|from| from != name)
}

/// Decodes `base64(user:password)`.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Actions of a set, in their fixed order, as scope strings.
fn action_names(actions: &BTreeSet<Action>) -> Vec<String> {
    actions.iter().map(|a| a.as_str().to_string()).collect()
}
