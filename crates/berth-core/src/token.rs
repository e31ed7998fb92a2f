//! The token endpoint, `/token` (Docker token authentication and its OAuth2 form), in its two
//! grant flows; what is granted is decided by `berth-auth` ([`berth_auth::Auth::grant`]).
//!
//! - `GET /token?service=…&scope=…[&offline_token=true]`, with Basic credentials or none
//!   (anonymous), answers `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}`.
//! - `POST /token` with a form body: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), plus `service`, `scope` (space-separated),
//!   `client_id` and `access_type=offline` for a refresh token; answers
//!   `{"access_token","token_type","expires_in","issued_at","scope"[,"refresh_token"]}`.

use berth_auth::{Auth, Credentials, Grant, LoginError, ResourceActions};
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER};
use serde_json::json;

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
    /// The auth of the token endpoint, which exists only when authentication is on.
    pub(crate) fn token_auth(&self) -> Result<&Auth> {
        self.auth.as_deref().ok_or_else(|| {
            RegistryError::new(ErrorKind::NotFound, "authentication is disabled: there is no token endpoint")
        })
    }

    /// `GET /token`: a token for the caller of the Basic credentials, or for anonymous.
    pub(crate) async fn token_get(&self, req: &Req) -> Result<Reply> {
        let auth = self.token_auth()?;
        let user = match req.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or_default()) {
            None => None,
            Some(value) => match Credentials::parse(value) {
                Ok(Credentials::Basic { user, password }) => {
                    login(auth, req, &user, &password).await?;
                    Some(user)
                }
                _ => {
                    return Err(RegistryError::new(
                        ErrorKind::Unauthorized,
                        "the token endpoint takes Basic credentials",
                    ));
                }
            },
        };
        check_service(auth, req.query.get("service"))?;
        let offline = req.query.get("offline_token") == Some("true");
        let grant = auth.grant(user.as_deref(), &scopes(&req.query), offline);
        let mut answer = json!({
            "token": grant.access_token,
            "access_token": grant.access_token,
            "expires_in": grant.expires_in,
            "issued_at": grant.issued_at,
        });
        if let Some(refresh) = grant.refresh_token {
            answer["refresh_token"] = refresh.into();
        }
        Ok(no_store(answer))
    }

    /// `POST /token`: the OAuth2 password and refresh-token grants.
    pub(crate) async fn token_post(&self, req: &Req, body: &mut RequestBody) -> Result<Reply> {
        let auth = self.token_auth()?;
        let form = Query::parse(Some(&read_form(body).await?));
        check_service(auth, form.get("service"))?;
        let grant = match form.get("grant_type") {
            Some("password") => {
                let (Some(user), Some(password)) = (form.get("username"), form.get("password")) else {
                    return Err(bad_request("grant_type=password needs username and password"));
                };
                login(auth, req, user, password).await?;
                auth.grant(Some(user), &scopes(&form), form.get("access_type") == Some("offline"))
            }
            Some("refresh_token") => {
                let token = form.get("refresh_token").ok_or_else(|| bad_request("refresh_token is missing"))?;
                let user = auth
                    .redeem(token)
                    .map_err(|e| RegistryError::new(ErrorKind::Unauthorized, format!("refresh token refused: {e}")))?;
                auth.grant(Some(&user), &scopes(&form), false)
            }
            other => {
                return Err(bad_request(format!(
                    "unsupported grant_type {:?}; use password or refresh_token",
                    other.unwrap_or("")
                )));
            }
        };
        let Grant { access_token, refresh_token, expires_in, issued_at, scope } = grant;
        let mut answer = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "issued_at": issued_at,
            "scope": scope.join(" "),
        });
        if let Some(refresh) = refresh_token {
            answer["refresh_token"] = refresh.into();
        }
        Ok(no_store(answer))
    }
}

/// Checks a password; refusals are 401 (the token endpoint issues no challenge) or 429.
async fn login(auth: &Auth, req: &Req, user: &str, password: &str) -> Result<()> {
    auth.login(req.client, user, password).await.map_err(|e| match e {
        LoginError::Invalid => RegistryError::new(ErrorKind::Unauthorized, e.to_string()),
        LoginError::Throttled(wait) => RegistryError::new(ErrorKind::TooManyRequests, e.to_string())
            .with_header(RETRY_AFTER, wait.as_secs().max(1).to_string()),
    })
}

/// The requested scopes (`scope` parameters, each possibly space-separated); repository scopes
/// must name a valid repository.
fn scopes(query: &Query) -> Vec<ResourceActions> {
    query
        .get_all("scope")
        .flat_map(str::split_whitespace)
        .filter_map(ResourceActions::parse_scope)
        .filter(|s| s.kind != "repository" || Name::parse(&s.name).is_ok())
        .collect()
}

/// A token for another service would be refused by that service; say so now.
fn check_service(auth: &Auth, service: Option<&str>) -> Result<()> {
    match service {
        Some(s) if s != auth.service() => {
            Err(bad_request(format!("this registry issues tokens for service {:?}, not {s:?}", auth.service())))
        }
        _ => Ok(()),
    }
}

fn no_store(answer: serde_json::Value) -> Reply {
    Reply::new(StatusCode::OK).json(&answer).header(CACHE_CONTROL, "no-store")
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
