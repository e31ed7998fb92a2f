//! Who is calling, and whether the route allows it: the one authorization check.
//!
//! [`Access`] is built once per request, in dispatch, before any handler runs: with
//! authentication off it is [`Access::Open`] (the only way "auth off" is written), otherwise the
//! caller as `berth-auth` established it from the `Authorization` header, with the policy in force
//! when the request arrived. [`need`] is the table of what each route needs (`pull` for GET/HEAD,
//! `delete` for DELETE, `push` for the rest and for every upload route); `Registry::authorize`
//! decides between going on, `401 UNAUTHORIZED` with a `WWW-Authenticate: Bearer` challenge (no
//! or bad credentials, or a token that lacks a scope the caller could get) and `403 DENIED` (the
//! caller is known and the policy says no).
//!
//! Callers present a bearer token from the token endpoint (`/token`, see `token`), Basic
//! credentials on any request (simple clients), or nothing (anonymous: only what the policy
//! grants `anonymous`, and never `/v2/` itself, so that `docker login` checks passwords). A
//! request that continues an upload session may instead present the capability its upload URL
//! carries (`_state`, see `upload`), which is good for that session only.

use berth_auth::{Action, Caller, LoginError, Refusal};
use http::Method;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};

use crate::error::{ErrorKind, RegistryError, Result};
use crate::names::Name;
use crate::route::Route;
use crate::upload::CAPABILITY;
use crate::{Registry, Req};

/// What one request may do.
pub(crate) enum Access {
    /// Authentication is off: everything is allowed.
    Open,
    /// Authentication is on: the caller and the policy snapshot of this request.
    Checked(berth_auth::Access),
}

impl Access {
    /// Whether the caller may do `action` on `name`.
    pub(crate) fn allows(&self, name: &Name, action: Action) -> bool {
        match self {
            Access::Open => true,
            Access::Checked(access) => access.allows(name.as_str(), action),
        }
    }

    /// Whether listings (the catalog) show `repository` to the caller: those it may pull.
    pub(crate) fn lists(&self, repository: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Checked(access) => access.policy_allows(repository, Action::Pull),
        }
    }

    /// The authenticated user, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Access::Open => None,
            Access::Checked(access) => access.user(),
        }
    }
}

/// What a route needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Nothing: the token endpoint checks credentials itself.
    Nothing,
    /// Any valid credentials (an anonymous token counts): `/v2/` and `/v2/_catalog`.
    Login,
    /// An action on a repository.
    Repo(&'a Name, Action),
}

/// The table of what each route needs with each method.
pub(crate) fn need<'a>(route: &'a Route, method: &Method) -> Need<'a> {
    let by_method = || match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match route {
        Route::Token => Need::Nothing,
        Route::Base | Route::Catalog => Need::Login,
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
    /// Establishes the caller's access from the `Authorization` header.
    pub(crate) async fn authenticate(&self, req: &Req) -> Result<Access> {
        let Some(auth) = &self.auth else { return Ok(Access::Open) };
        let authorization = req.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
        match auth.authenticate(authorization, req.client).await {
            Ok(access) => Ok(Access::Checked(access)),
            Err(refusal) => Err(self.refused(req, refusal)),
        }
    }

    /// The answer to refused credentials: 401 with a challenge (`error="invalid_token"` for a
    /// bad token), or 429 with `Retry-After` when the client has failed too often.
    pub(crate) fn refused(&self, req: &Req, refusal: Refusal) -> RegistryError {
        let error = match &refusal {
            Refusal::Login(LoginError::Throttled(wait)) => {
                return RegistryError::new(ErrorKind::TooManyRequests, refusal.to_string())
                    .with_header(RETRY_AFTER, wait.as_secs().max(1).to_string());
            }
            Refusal::Token(_) => Some("invalid_token"),
            Refusal::Malformed(_) | Refusal::Login(LoginError::Invalid) => None,
        };
        RegistryError::new(ErrorKind::Unauthorized, refusal.to_string())
            .with_header(WWW_AUTHENTICATE, self.challenge(req, None, error))
    }

    /// `Bearer realm=…,service=…[,scope=…][,error=…]`.
    fn challenge(&self, req: &Req, scope: Option<&str>, error: Option<&str>) -> String {
        let service = self.auth.as_ref().map_or("", |a| a.service());
        let mut value = format!("Bearer realm=\"{}/token\",service=\"{service}\"", self.origin(req));
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        value
    }

    /// The registry's base URL as the client sees it: the configured public URL, else the
    /// request's `Host` (or HTTP/2 authority) and `X-Forwarded-Proto`.
    fn origin(&self, req: &Req) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_string();
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

    /// Decides whether the request's caller may take `route`: the one authorization check.
    pub(crate) fn authorize(&self, route: &Route, req: &Req) -> Result<()> {
        let Access::Checked(access) = &req.access else { return Ok(()) };
        let challenge = |scope: Option<&str>, error: Option<&str>| self.challenge(req, scope, error);
        let (name, action) = match need(route, &req.method) {
            Need::Nothing => return Ok(()),
            Need::Login => {
                return match access.caller() {
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
        let from = mount_source(route, req);
        let scope = scope(name, action, from.as_ref());
        if access.allows(name.as_str(), action) {
            return match from {
                // A mount whose token lacks pull on the source, which the policy would grant: ask
                // for a token that covers both, so the blob is mounted rather than sent again.
                // (Without the policy's consent the handler falls back to a normal upload.)
                Some(from)
                    if matches!(access.caller(), Caller::Token(_))
                        && !access.allows(from.as_str(), Action::Pull)
                        && access.policy_allows(from.as_str(), Action::Pull) =>
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
        // An upload session's URL may carry its own authorization, for an upload host that
        // clients send no credentials to.
        if let (Route::Upload(_, id), Some(capability), Some(auth)) =
            (route, req.query.get(CAPABILITY), self.auth.as_deref())
        {
            return auth.check_upload_capability(capability, name.as_str(), id).map_err(|e| {
                RegistryError::new(ErrorKind::Unauthorized, e.to_string())
                    .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), None))
            });
        }
        let verb = action.as_str();
        match access.caller() {
            Caller::Anonymous => Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!("authentication required to {verb} repository {name}"),
            )
            .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), None))),
            Caller::Token(_) if access.user().is_none() || access.policy_allows(name.as_str(), action) => {
                Err(RegistryError::new(
                    ErrorKind::Unauthorized,
                    format!("the token does not grant {verb} on repository {name}"),
                )
                .with_header(WWW_AUTHENTICATE, challenge(Some(&scope), Some("insufficient_scope"))))
            }
            _ => Err(RegistryError::new(
                ErrorKind::Denied,
                format!("{} may not {verb} repository {name}", access.user().unwrap_or("anonymous")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_what_the_table_says() {
        let n = Name::parse("a/b").unwrap();
        let (pull, push, delete) = (Action::Pull, Action::Push, Action::Delete);
        let repo = |action| Need::Repo(&n, action);
        let (get, head, put, post, patch, del) =
            (Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE);
        let rows: Vec<(Route, &Method, Need)> = vec![
            (Route::Token, &get, Need::Nothing),
            (Route::Token, &post, Need::Nothing),
            (Route::Base, &get, Need::Login),
            (Route::Base, &head, Need::Login),
            (Route::Catalog, &get, Need::Login),
            (Route::Tags(n.clone()), &get, repo(pull)),
            (Route::Manifest(n.clone(), "t".into()), &get, repo(pull)),
            (Route::Manifest(n.clone(), "t".into()), &head, repo(pull)),
            (Route::Manifest(n.clone(), "t".into()), &put, repo(push)),
            (Route::Manifest(n.clone(), "t".into()), &del, repo(delete)),
            (Route::Blob(n.clone(), "d".into()), &get, repo(pull)),
            (Route::Blob(n.clone(), "d".into()), &head, repo(pull)),
            (Route::Blob(n.clone(), "d".into()), &del, repo(delete)),
            (Route::Referrers(n.clone(), "d".into()), &get, repo(pull)),
            (Route::UploadStart(n.clone()), &post, repo(push)),
            (Route::Upload(n.clone(), "u".into()), &get, repo(push)),
            (Route::Upload(n.clone(), "u".into()), &patch, repo(push)),
            (Route::Upload(n.clone(), "u".into()), &put, repo(push)),
            (Route::Upload(n.clone(), "u".into()), &del, repo(push)),
        ];
        for (route, method, expected) in &rows {
            assert_eq!(&need(route, method), expected, "{method} {route:?}");
        }
    }

    #[test]
    fn challenges_ask_for_pull_with_push_and_for_the_mount_source() {
        let (a, b) = (Name::parse("a").unwrap(), Name::parse("b").unwrap());
        assert_eq!(scope(&a, Action::Push, None), "repository:a:pull,push");
        assert_eq!(scope(&a, Action::Delete, None), "repository:a:delete");
        assert_eq!(scope(&a, Action::Push, Some(&b)), "repository:a:pull,push repository:b:pull");
    }
}
