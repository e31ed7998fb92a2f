//! Sessions of the web UI. Signing in checks the password as every login does (throttled per
//! client address) and yields a token of use `session`, signed like every berth token, which the
//! UI keeps in an `HttpOnly` cookie; a request that presents it acts as that user, with what the
//! policy in force grants the user. No state is kept: signing out forgets the cookie, and the
//! token ends with its lifetime (the refresh-token lifetime), when the user leaves the policy, or
//! when the secret changes.

use std::net::IpAddr;

use crate::{Access, Auth, Caller, LoginError, TokenUse};

impl Auth {
    /// Checks `user`'s `password` (from a client at `client`, when known) and opens a session:
    /// its token.
    pub async fn open_session(&self, client: Option<IpAddr>, user: &str, password: &str) -> Result<String, LoginError> {
        self.login(client, user, password).await?;
        Ok(self.tokens.issue(user, vec![], TokenUse::Session))
    }

    /// What the holder of session `token` may do: as its user, by the policy in force; an absent,
    /// expired or forged token, or one whose user left the policy, is anonymous.
    pub fn session_access(&self, token: Option<&str>) -> Access {
        let policy = self.policy();
        let user = token
            .and_then(|t| self.tokens.verify(t, TokenUse::Session).ok())
            .map(|claims| claims.sub)
            .filter(|user| !user.is_empty() && policy.password_hash(user).is_some());
        Access { caller: user.map_or(Caller::Anonymous, Caller::User), policy }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Action, AuthConfig, MIN_SECRET_LEN, Policy};

    use super::*;

    /// One user, `user` (password `pw`), who may pull and delete in `team/*`; anonymous may pull
    /// `public/*`.
    fn auth(user: &str) -> Auth {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let rules = format!(
            "[[rules]]\nrepositories = [\"team/*\"]\nwho = [\"user:{user}\"]\nactions = [\"pull\", \"delete\"]\n\
             [[rules]]\nrepositories = [\"public/*\"]\nwho = [\"anonymous\"]\nactions = [\"pull\"]\n"
        );
        Auth::new(AuthConfig {
            policy: Policy::parse(&format!("[users]\n{user} = \"{hash}\"\n{rules}")).unwrap(),
            secret: vec![5; MIN_SECRET_LEN],
            service: "svc".into(),
            token_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(600),
            reload: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_session_acts_as_its_user_and_nothing_else_does() {
        let auth = auth("bob");
        assert!(auth.open_session(None, "bob", "wrong").await.is_err());
        let token = auth.open_session(None, "bob", "pw").await.unwrap();
        let access = auth.session_access(Some(&token));
        assert_eq!(access.user(), Some("bob"));
        assert!(access.allows("team/app", Action::Delete) && !access.allows("team/app", Action::Push));
        // Anonymous: no token, a forged one, or another kind of token.
        let refresh = auth.tokens.issue("bob", vec![], TokenUse::Refresh);
        for token in [None, Some("x.y.z"), Some(refresh.as_str())] {
            let access = auth.session_access(token);
            assert_eq!(access.user(), None);
            assert!(access.allows("public/x", Action::Pull) && !access.allows("team/app", Action::Pull));
        }
        // A session is no access or refresh token.
        assert!(auth.tokens.verify(&token, TokenUse::Refresh).is_err());
        assert!(auth.tokens.verify(&token, TokenUse::Access).is_err());
    }

    #[tokio::test]
    async fn a_session_ends_when_its_user_leaves_the_policy() {
        let token = auth("bob").open_session(None, "bob", "pw").await.unwrap();
        // The same secret and service, a policy without bob.
        assert_eq!(auth("carol").session_access(Some(&token)).user(), None);
    }
}
