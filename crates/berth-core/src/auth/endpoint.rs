//! The token endpoint, `/token` (Docker token authentication and its OAuth2 variant).
//!
//! - `GET /token?service=…&scope=…[&offline_token=true]`, with Basic credentials or none
//!   (anonymous), answers `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}`.
//! - `POST /token` with a form body: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), plus `service`, `scope` (space-separated),
//!   `client_id` and `access_type=offline` for a refresh token; answers
//!   `{"access_token","token_type","expires_in","issued_at","scope"[,"refresh_token"]}`.
//!
//! Each requested scope is granted as far as the policy allows (possibly not at all: a token with
//! less access than asked is the answer, not an error); the registry refuses the request the
//! token does not cover. `registry:catalog:*` is granted to everyone, as the catalog lists only
//! what the caller may pull.

use std::collections::BTreeSet;
use std::time::SystemTime;

use futures_util::StreamExt;
use http::header::{AUTHORIZATION, CACHE_CONTROL};
use http::{Method, StatusCode};
use serde_json::json;

use super::token::{ResourceActions, TokenUse};
use super::{Action, Auth, action_names, basic_credentials};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Query, Reply, RequestBody};
use crate::names::Name;
use crate::{Registry, Req};

/// Largest form body accepted by `POST /token`.
const MAX_FORM: usize = 64 * 1024;

fn bad_request(message: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorKind::TokenRequestInvalid, message)
}

impl Registry {
    /// `GET|POST /token`.
    pub(crate) async fn token(&self, req: &Req, body: &mut RequestBody) -> Result<Reply> {
        let Some(auth) = &self.auth else {
            return Err(RegistryError::new(ErrorKind::NotFound, "authentication is disabled: no token endpoint"));
        };
        match req.method {
            Method::GET => {
                let user = match req.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                    Some(value) => {
                        let (user, password) = value
                            .split_once(' ')
                            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                            .and_then(|(_, c)| basic_credentials(c.trim()))
                            .ok_or_else(|| {
                                RegistryError::new(
                                    ErrorKind::Unauthorized,
                                    "the token endpoint takes Basic credentials",
                                )
                            })?;
                        auth.login(req.client, &user, &password).await?;
                        Some(user)
                    }
                    None => None,
                };
                check_service(auth, req.query.get("service"))?;
                let scopes: Vec<&str> = req.query.get_all("scope").flat_map(str::split_whitespace).collect();
                let offline = req.query.get("offline_token") == Some("true");
                let (access, _) = grant(auth, user.as_deref(), &scopes);
                let token = auth.tokens.issue(user.as_deref().unwrap_or(""), access, TokenUse::Access);
                let mut answer = json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": auth.tokens.ttl.as_secs(),
                    "issued_at": issued_at(),
                });
                if let (true, Some(user)) = (offline, &user) {
                    answer["refresh_token"] = auth.tokens.issue(user, vec![], TokenUse::Refresh).into();
                }
                Ok(no_store(Reply::new(StatusCode::OK).json(&answer)))
            }
            Method::POST => {
                let form = Query::parse(Some(&read_form(body).await?));
                check_service(auth, form.get("service"))?;
                let user = match form.get("grant_type") {
                    Some("password") => {
                        let (Some(user), Some(password)) = (form.get("username"), form.get("password")) else {
                            return Err(bad_request("grant_type=password needs username and password"));
                        };
                        auth.login(req.client, user, password).await?;
                        user.to_string()
                    }
                    Some("refresh_token") => {
                        let token = form.get("refresh_token").ok_or_else(|| bad_request("refresh_token is missing"))?;
                        let claims = auth.tokens.verify(token, TokenUse::Refresh).map_err(|e| {
                            RegistryError::new(ErrorKind::Unauthorized, format!("refresh token refused: {e}"))
                        })?;
                        if auth.policy.get().password_hash(&claims.sub).is_none() {
                            return Err(RegistryError::new(ErrorKind::Unauthorized, "the user no longer exists"));
                        }
                        claims.sub
                    }
                    other => {
                        return Err(bad_request(format!(
                            "unsupported grant_type {:?}; use password or refresh_token",
                            other.unwrap_or("")
                        )));
                    }
                };
                let scopes: Vec<&str> = form.get_all("scope").flat_map(str::split_whitespace).collect();
                let (access, granted) = grant(auth, Some(&user), &scopes);
                let mut answer = json!({
                    "access_token": auth.tokens.issue(&user, access, TokenUse::Access),
                    "token_type": "Bearer",
                    "expires_in": auth.tokens.ttl.as_secs(),
                    "issued_at": issued_at(),
                    "scope": granted.join(" "),
                });
                if form.get("access_type") == Some("offline") && form.get("grant_type") == Some("password") {
                    answer["refresh_token"] = auth.tokens.issue(&user, vec![], TokenUse::Refresh).into();
                }
                Ok(no_store(Reply::new(StatusCode::OK).json(&answer)))
            }
            ref m => Err(RegistryError::new(ErrorKind::MethodNotAllowed, format!("{m} is not supported on /token"))),
        }
    }
}

/// A token for another service would be refused by that service; say so now.
fn check_service(auth: &Auth, service: Option<&str>) -> Result<()> {
    match service {
        Some(s) if s != auth.tokens.service() => {
            Err(bad_request(format!("this registry issues tokens for service {:?}, not {s:?}", auth.tokens.service())))
        }
        _ => Ok(()),
    }
}

/// What of the requested scopes the policy grants `user`: the token's access list and the granted
/// scopes as strings.
fn grant(auth: &Auth, user: Option<&str>, scopes: &[&str]) -> (Vec<ResourceActions>, Vec<String>) {
    let mut access = Vec::new();
    for requested in scopes.iter().filter_map(|s| ResourceActions::parse_scope(s)) {
        let actions = match requested.kind.as_str() {
            "registry" if requested.name == "catalog" => vec!["*".to_string()],
            "repository" if Name::parse(&requested.name).is_ok() => {
                let allowed = auth.policy.get().allowed(user, &requested.name);
                let wanted: BTreeSet<Action> = requested
                    .actions
                    .iter()
                    .flat_map(|a| if a == "*" { Action::ALL.to_vec() } else { a.parse().into_iter().collect() })
                    .collect();
                action_names(&wanted.intersection(&allowed).copied().collect())
            }
            _ => continue,
        };
        if !actions.is_empty() {
            access.push(ResourceActions { actions, ..requested });
        }
    }
    let granted = access.iter().map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(","))).collect();
    (access, granted)
}

fn issued_at() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn no_store(reply: Reply) -> Reply {
    reply.header(CACHE_CONTROL, "no-store")
}

/// Reads a form body of at most [`MAX_FORM`] bytes.
async fn read_form(body: &mut RequestBody) -> Result<String> {
    let mut form = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad_request(format!("reading the request body failed: {e}")))?;
        if form.len() + chunk.len() > MAX_FORM {
            return Err(bad_request("the form is too large"));
        }
        form.extend_from_slice(&chunk);
    }
    String::from_utf8(form).map_err(|_| bad_request("the form is not UTF-8"))
}
