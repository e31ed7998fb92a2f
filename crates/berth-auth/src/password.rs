//! Password hashes: argon2 PHC strings (`$argon2id$…`) and bcrypt (`$2a$`, `$2b$`, `$2y$`, as
//! `htpasswd -B` writes them). Verification is done by the hash crates, which compare in constant
//! time; unknown users are checked against a fixed hash so that they take as long as known ones.

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher};

/// Cost of the bcrypt hashes `berth user --bcrypt` writes.
pub const BCRYPT_COST: u32 = 10;

/// A valid bcrypt hash (of a random string) that no password matches in practice; unknown users
/// are verified against it so a login for a missing user costs what one for a real user costs.
const DECOY: &str = "$2b$10$zC5eJbBf3zS.3lC8D0Cj8eK0J1a2oY2TIcHgGx4sFhQmA3y5mZp4G";

/// Hash kinds recognised by their prefix.
enum Kind {
    Bcrypt,
    Argon2,
}

fn kind(hash: &str) -> Option<Kind> {
    if ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        Some(Kind::Bcrypt)
    } else if hash.starts_with("$argon2") {
        Some(Kind::Argon2)
    } else {
        None
    }
}

/// Checks that `hash` is a bcrypt or argon2 hash this module can verify.
pub fn check_format(hash: &str) -> Result<(), String> {
    match kind(hash) {
        Some(Kind::Bcrypt) => {
            // `$2y$NN$` then 22 characters of salt and 31 of hash.
            let cost = hash.get(4..6).and_then(|c| c.parse::<u32>().ok());
            if hash.len() == 60 && hash.as_bytes()[6] == b'$' && cost.is_some_and(|c| (4..=31).contains(&c)) {
                Ok(())
            } else {
                Err("malformed bcrypt hash".into())
            }
        }
        Some(Kind::Argon2) => PasswordHash::new(hash).map(|_| ()).map_err(|e| format!("malformed argon2 hash: {e}")),
        None => Err("not a password hash: use `berth user <name>` (argon2) or `htpasswd -nB <name>` (bcrypt)".into()),
    }
}

/// Whether `password` matches `hash`; `None` (unknown user) does the work of a check and fails.
pub fn verify(hash: Option<&str>, password: &str) -> bool {
    let Some(hash) = hash else {
        let _ = bcrypt::verify(password, DECOY);
        return false;
    };
    match kind(hash) {
        Some(Kind::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Some(Kind::Argon2) => PasswordHash::new(hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()),
        None => false,
    }
}

/// Hashes `password` with argon2id (default parameters) or, with `bcrypt`, bcrypt at [`BCRYPT_COST`].
pub fn hash(password: &str, bcrypt: bool) -> Result<String, String> {
    if bcrypt {
        bcrypt::hash(password, BCRYPT_COST).map_err(|e| e.to_string())
    } else {
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_round_trip() {
        for bcrypt in [false, true] {
            let h = hash("s3cret", bcrypt).unwrap();
            check_format(&h).unwrap();
            assert!(verify(Some(&h), "s3cret"));
            assert!(!verify(Some(&h), "s3cret "));
        }
    }

    #[test]
    fn htpasswd_bcrypt_is_accepted() {
        // `htpasswd -nbB user password` with cost 5, as Apache writes it ($2y$).
        let h = bcrypt::hash_with_result("password", 5).unwrap().format_for_version(bcrypt::Version::TwoY);
        assert!(h.starts_with("$2y$05$"));
        check_format(&h).unwrap();
        assert!(verify(Some(&h), "password"));
    }

    #[test]
    fn decoy_is_a_valid_hash_and_unknown_users_fail() {
        check_format(DECOY).unwrap();
        assert_eq!(bcrypt::verify("anything", DECOY).ok(), Some(false), "the decoy must cost a full check");
        assert!(!verify(None, "anything"));
        assert!(check_format("plain").is_err());
        assert!(check_format("$2y$05$short").is_err());
        assert!(!verify(Some("plain"), "plain"));
    }
}
