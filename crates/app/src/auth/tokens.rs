//! Access tokens: short-lived JWTs signed with Ed25519 (EdDSA). Any instance
//! holding the public key verifies them without a database read.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use starling_domain::{Timestamp, UserId};

use crate::auth::revoked::RevokedSessions;

const ISSUER: &str = "starling";
const AUDIENCE: &str = "starling-api";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// The session (refresh-token family) the token was issued to: its
    /// live streams end when that session does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<i64>,
}

/// Who a verified access token speaks for, until when, and in which session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIdentity {
    pub user: UserId,
    /// Unix seconds.
    pub expires_at: i64,
    pub session: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("access token has expired")]
    Expired,
    #[error("access token is invalid")]
    Invalid,
    /// Its session has ended (signed out, ended from another session, the
    /// password changed): good signature, refused all the same.
    #[error("the session of this access token has ended")]
    Revoked,
}

#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
    /// Tokens whose signature has been checked, with their account and
    /// expiry. An Ed25519 verification costs tens of microseconds, more than
    /// the rest of a cached feed read; a client sends the same token for its
    /// whole lifetime. Keyed by the entire token, so only a byte-identical
    /// token can hit.
    verified: Arc<quick_cache::sync::Cache<String, TokenIdentity>>,
    /// Sessions ended before their tokens expire: checked after the
    /// signature (or `verified`), on every verification.
    revoked: Arc<RevokedSessions>,
}

/// Verified tokens remembered at most.
const VERIFIED_TOKENS: usize = 100_000;
/// Clock skew tolerated on expiry, as in the signature check.
const LEEWAY_SECS: i64 = 5;

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// A new Ed25519 private key as PKCS#8 PEM (the format `openssl genpkey -algorithm ed25519` writes).
pub fn generate_signing_key_pem() -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| anyhow::anyhow!("cannot encode the signing key: {error}"))?;
    Ok(pem.to_string())
}

impl AccessTokens {
    /// Tokens signed with the Ed25519 key in `private_key_pem` (PKCS#8), valid `ttl_secs`.
    pub fn from_pem(private_key_pem: &str, ttl_secs: i64) -> anyhow::Result<Self> {
        let signing_key = SigningKey::from_pkcs8_pem(private_key_pem)
            .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {error}"))?;
        let private_der = signing_key
            .to_pkcs8_der()
            .map_err(|error| anyhow::anyhow!("cannot encode the signing key: {error}"))?;
        let encoding = EncodingKey::from_ed_der(private_der.as_bytes());
        let decoding = DecodingKey::from_ed_der(signing_key.verifying_key().as_bytes());
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS as u64;
        Ok(Self {
            encoding,
            decoding,
            validation,
            ttl_secs,
            verified: Arc::new(quick_cache::sync::Cache::new(VERIFIED_TOKENS)),
            revoked: Arc::new(RevokedSessions::default()),
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// How long after its session ends a token of it may still be
    /// unexpired: its lifetime and the clock leeway.
    pub fn outlives_session_by_secs(&self) -> i64 {
        self.ttl_secs + LEEWAY_SECS
    }

    /// The sessions this instance refuses the tokens of.
    pub fn revoked(&self) -> &RevokedSessions {
        &self.revoked
    }

    /// A token for `user`, in `session` when it belongs to one (tokens
    /// made for benchmarks and tools belong to none).
    pub fn issue(
        &self,
        user: UserId,
        session: Option<i64>,
        now: Timestamp,
    ) -> anyhow::Result<String> {
        let issued_at = now.millis() / 1000;
        let claims = AccessClaims {
            sub: user.to_string(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: issued_at,
            exp: issued_at + self.ttl_secs,
            sid: session,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|error| anyhow::anyhow!("cannot sign an access token: {error}"))
    }

    /// The account a valid, unexpired token speaks for (the tests' shorthand
    /// for `identify`).
    #[cfg(test)]
    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        self.identify(token).map(|identity| identity.user)
    }

    /// All a valid, unexpired token says: account, expiry, session.
    pub fn identify(&self, token: &str) -> Result<TokenIdentity, TokenError> {
        let now = Timestamp::now_ms() / 1000;
        if let Some(identity) = self.verified.get(token) {
            if now > identity.expires_at + LEEWAY_SECS {
                self.verified.remove(token);
                return Err(TokenError::Expired);
            }
            return self.unless_revoked(identity);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let user: UserId = data.claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        let identity = TokenIdentity {
            user,
            expires_at: data.claims.exp,
            session: data.claims.sid,
        };
        self.verified.insert(token.to_owned(), identity);
        self.unless_revoked(identity)
    }

    fn unless_revoked(&self, identity: TokenIdentity) -> Result<TokenIdentity, TokenError> {
        match identity.session {
            Some(session) if self.revoked.contains(session) => Err(TokenError::Revoked),
            _ => Ok(identity),
        }
    }
}

/// Reads the Ed25519 signing key, creating it (mode 0600) on first start.
pub fn load_or_create_signing_key(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()));
    }
    let pem = generate_signing_key_pem()?;
    write_private_file(path, pem.as_bytes())
        .with_context(|| format!("writing a new signing key to {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new token signing key");
    Ok(pem)
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: i64) -> AccessTokens {
        AccessTokens::from_pem(&generate_signing_key_pem().unwrap(), ttl).unwrap()
    }

    #[test]
    fn a_token_names_its_user() {
        let tokens = tokens(900);
        let now = Timestamp::now();
        let token = tokens.issue(UserId(77), Some(5), now).unwrap();
        assert_eq!(tokens.verify(&token), Ok(UserId(77)));
        assert_eq!(
            tokens.identify(&token),
            Ok(TokenIdentity {
                user: UserId(77),
                expires_at: now.millis() / 1000 + 900,
                session: Some(5),
            })
        );
        // Two sessions' tokens of one second differ.
        assert_ne!(tokens.issue(UserId(77), Some(6), now).unwrap(), token);
        let sessionless = tokens.issue(UserId(77), None, now).unwrap();
        assert_eq!(tokens.identify(&sessionless).unwrap().session, None);
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let tokens = tokens(1);
        let token = tokens.issue(UserId(9), None, Timestamp::now()).unwrap();
        assert_eq!(tokens.verify(&token), Ok(UserId(9)));
        assert_eq!(tokens.verify(&token), Ok(UserId(9)), "answered from memory");
        let exp = Timestamp::now_ms() / 1000 + 1;
        tokens.verified.insert(
            token.clone(),
            TokenIdentity {
                user: UserId(9),
                expires_at: exp - 10,
                session: None,
            },
        );
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
        // A token that differs in one byte is not the remembered one.
        let mut forged = token.clone();
        forged.pop();
        forged.push('A');
        if forged != token {
            assert_eq!(tokens.verify(&forged), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn tokens_of_a_revoked_session_are_refused_remembered_or_not() {
        let tokens = tokens(900);
        let now = Timestamp::now();
        let ended = tokens.issue(UserId(3), Some(41), now).unwrap();
        let other = tokens.issue(UserId(3), Some(42), now).unwrap();
        let sessionless = tokens.issue(UserId(3), None, now).unwrap();
        assert_eq!(
            tokens.verify(&ended),
            Ok(UserId(3)),
            "remembered from here on"
        );
        tokens.revoked().add([41], now.millis());
        assert_eq!(tokens.verify(&ended), Err(TokenError::Revoked));
        assert_eq!(tokens.verify(&other), Ok(UserId(3)));
        assert_eq!(tokens.verify(&sessionless), Ok(UserId(3)));
        // A clone (another service holding the tokens) shares the set.
        assert_eq!(tokens.clone().verify(&ended), Err(TokenError::Revoked));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let tokens = tokens(900);
        let old = tokens
            .issue(UserId(1), None, Timestamp::now().plus_seconds(-3600))
            .unwrap();
        assert_eq!(tokens.verify(&old), Err(TokenError::Expired));

        let token = tokens.issue(UserId(1), None, Timestamp::now()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"2","iss":"starling","aud":"starling-api","iat":0,"exp":99999999999}"#,
        );
        assert_eq!(tokens.verify(&parts.join(".")), Err(TokenError::Invalid));

        let stranger = self::tokens(900)
            .issue(UserId(1), None, Timestamp::now())
            .unwrap();
        assert_eq!(tokens.verify(&stranger), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("not.a.token"), Err(TokenError::Invalid));
    }
}
