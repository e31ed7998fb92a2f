//! HS256, the one JWT algorithm berth signs and accepts, as jsonwebtoken's crypto provider:
//! the HMAC-SHA256 of [`crate::mac`], as everything else berth signs (capability and upload
//! URLs). Every other algorithm is refused, here as in the tokens' validation. A provider of
//! berth's own keeps jsonwebtoken's RSA, EC and EdDSA code, and a second crypto library, out of
//! the binaries (the Lambda bootstrap's size).

use hmac::Mac;
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};

use crate::mac::MacKey;

/// The provider: HS256 only, no JWK support (berth reads no JWK sets).
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key| Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret()?)?)),
    verifier_factory: |algorithm, key| Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret()?)?)),
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes [`PROVIDER`] the process's; later calls find it installed and leave it.
pub(crate) fn install() {
    let _already_installed = PROVIDER.install_default();
}

/// A key, ready to sign or verify.
struct Hs256(MacKey);

impl Hs256 {
    fn new(algorithm: &Algorithm, secret: &[u8]) -> Result<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Self(MacKey::new(secret)))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.of(message).finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        self.0.of(message).verify_slice(signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    /// RFC 7519's HS256 example as jwt.io shows it: a token of another implementation.
    const FOREIGN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const FOREIGN_SECRET: &[u8] = b"your-256-bit-secret";

    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation
    }

    #[test]
    fn signs_and_verifies_as_other_implementations_do() {
        super::install();
        let (message, signature) = FOREIGN.rsplit_once('.').unwrap();
        let key = EncodingKey::from_secret(FOREIGN_SECRET);
        assert_eq!(jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap(), signature);
        let claims = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
            FOREIGN,
            &DecodingKey::from_secret(FOREIGN_SECRET),
            &validation(),
        );
        assert_eq!(claims.unwrap().claims["name"], "John Doe");
        let wrong = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
            FOREIGN,
            &DecodingKey::from_secret(b"another"),
            &validation(),
        );
        assert_eq!(wrong.unwrap_err().kind(), &ErrorKind::InvalidSignature);
    }

    #[test]
    fn refuses_other_algorithms() {
        super::install();
        let claims = HashMap::from([("sub", "someone")]);
        let signed = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &EncodingKey::from_secret(b"k"));
        assert_eq!(signed.unwrap_err().kind(), &ErrorKind::InvalidAlgorithm);
    }
}
