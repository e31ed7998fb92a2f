//! What the token endpoint hands out (Docker token authentication and its OAuth2 form): each
//! requested scope is granted as far as the policy allows, possibly not at all — a token with
//! less access than asked is the answer, not an error; the registry then refuses the requests
//! the token does not cover. `registry:catalog:*` is granted to everyone, as the catalog lists
//! only what the caller may pull.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::{Action, Auth, ResourceActions, TokenError, TokenUse};

/// The tokens one request to the token endpoint receives.
#[derive(Debug)]
pub struct Grant {
    /// The access token, presented as `Authorization: Bearer`.
    pub access_token: String,
    /// A refresh token, when one was asked for by a user (never for an anonymous caller).
    pub refresh_token: Option<String>,
    /// Lifetime of the access token, in seconds.
    pub expires_in: u64,
    /// When it was issued, in RFC 3339 (UTC, seconds).
    pub issued_at: String,
    /// The granted scopes, as `<type>:<name>:<actions>`.
    pub scope: Vec<String>,
}

impl Auth {
    /// Issues an access token for `user` (`None`: anonymous) covering what the policy allows of
    /// `requested`, and with `refresh`, a refresh token for the user.
    pub fn grant(&self, user: Option<&str>, requested: &[ResourceActions], refresh: bool) -> Grant {
        let policy = self.policy();
        let mut access = Vec::new();
        for wanted in requested {
            let actions = match wanted.kind.as_str() {
                "registry" if wanted.name == "catalog" => vec!["*".to_string()],
                "repository" => {
                    let allowed = policy.allowed(user, &wanted.name);
                    let asked: BTreeSet<Action> = wanted
                        .actions
                        .iter()
                        .flat_map(|a| if a == "*" { Action::ALL.to_vec() } else { a.parse().into_iter().collect() })
                        .collect();
                    asked.intersection(&allowed).map(|a| a.as_str().to_string()).collect()
                }
                _ => continue,
            };
            if !actions.is_empty() {
                access.push(ResourceActions { actions, ..wanted.clone() });
            }
        }
        let scope = access.iter().map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(","))).collect();
        let refresh_token = user.filter(|_| refresh).map(|u| self.tokens.issue(u, vec![], TokenUse::Refresh));
        Grant {
            access_token: self.tokens.issue(user.unwrap_or(""), access, TokenUse::Access),
            refresh_token,
            expires_in: self.tokens.ttl.as_secs(),
            issued_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            scope,
        }
    }

    /// The user a refresh token was issued to, when the token is valid and the policy still
    /// has the user.
    pub fn redeem(&self, refresh_token: &str) -> Result<String, TokenError> {
        let claims = self.tokens.verify(refresh_token, TokenUse::Refresh)?;
        if self.policy().password_hash(&claims.sub).is_none() {
            return Err(TokenError::Invalid("its user no longer exists".into()));
        }
        Ok(claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{AuthConfig, MIN_SECRET_LEN, Policy};

    use super::*;

    fn auth() -> Auth {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let rules = "[[rules]]\nrepositories = [\"team/*\"]\nwho = [\"user:bob\"]\nactions = [\"pull\", \"push\"]\n\
                     [[rules]]\nrepositories = [\"public/*\"]\nwho = [\"anonymous\"]\nactions = [\"pull\"]\n";
        Auth::new(AuthConfig {
            policy: Policy::parse(&format!("[users]\nbob = \"{hash}\"\n{rules}")).unwrap(),
            secret: vec![3; MIN_SECRET_LEN],
            service: "svc".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(3600),
            reload: None,
        })
        .unwrap()
    }

    fn scopes(list: &[&str]) -> Vec<ResourceActions> {
        list.iter().map(|s| ResourceActions::parse_scope(s).unwrap()).collect()
    }

    #[tokio::test]
    async fn scopes_are_granted_as_far_as_the_policy_allows() {
        let auth = auth();
        let asked = scopes(&[
            "repository:team/app:pull,push,delete",
            "repository:private/x:pull",
            "repository:public/a:*",
            "registry:catalog:*",
            "other:thing:pull",
        ]);
        let grant = auth.grant(Some("bob"), &asked, true);
        assert_eq!(
            grant.scope,
            ["repository:team/app:pull,push", "repository:public/a:pull", "registry:catalog:*"].map(String::from)
        );
        assert_eq!(grant.expires_in, 300);
        assert_eq!(auth.redeem(grant.refresh_token.as_deref().unwrap()).unwrap(), "bob");
        assert!(auth.redeem(&grant.access_token).is_err(), "an access token is no refresh token");

        let anonymous = auth.grant(None, &asked, true);
        assert_eq!(anonymous.scope, ["repository:public/a:pull", "registry:catalog:*"].map(String::from));
        assert!(anonymous.refresh_token.is_none());
    }
}
