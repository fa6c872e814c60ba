//! Docker registry bearer tokens: scopes, claims, RS256 signing (core's
//! token service) and verification (the registry), in one place so the two
//! sides cannot drift apart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading key material: {0}")]
    Key(String),
    #[error("invalid scope {0:?}: expected type:name:actions")]
    Scope(String),
    #[error("signing the token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// One `access` entry: what may be done to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    /// Parses `type:name:actions`. The name may itself contain `:` (a
    /// registry host with a port), so the split is on the first and last colon.
    pub fn parse_scope(scope: &str) -> Result<Access, Error> {
        let (kind, rest) = scope
            .split_once(':')
            .ok_or_else(|| Error::Scope(scope.into()))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| Error::Scope(scope.into()))?;
        if kind.is_empty() || name.is_empty() {
            return Err(Error::Scope(scope.into()));
        }
        let actions = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Access {
            kind: kind.into(),
            name: name.into(),
            actions,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

/// What a token endpoint answers, per the Docker token specification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: i64,
    pub issued_at: String,
}

pub struct Signer {
    key: EncodingKey,
    issuer: String,
    lifetime_secs: i64,
}

impl Signer {
    /// `pem` is the RSA private key (PKCS#1 or PKCS#8).
    pub fn new(pem: &[u8], issuer: &str, lifetime_secs: i64) -> Result<Signer, Error> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| Error::Key(e.to_string()))?;
        Ok(Signer {
            key,
            issuer: issuer.into(),
            lifetime_secs,
        })
    }

    pub fn issue(
        &self,
        subject: &str,
        audience: &str,
        access: Vec<Access>,
    ) -> Result<TokenResponse, Error> {
        let now = chrono::Utc::now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.into(),
            aud: audience.into(),
            exp: now.timestamp() + self.lifetime_secs,
            nbf: now.timestamp() - 1,
            iat: now.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)?;
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: self.lifetime_secs,
            issued_at: now.to_rfc3339(),
        })
    }
}

const CACHE_MAX: usize = 50_000;

/// Verifies tokens against a certificate or public key. Verified tokens are
/// cached until they expire, which keeps signature checks off the hot path.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    cache: RwLock<HashMap<String, Arc<Claims>>>,
}

impl Verifier {
    /// `pem` holds a certificate (the registry's usual `rootcertbundle`) or a public key.
    pub fn new(pem: &[u8], issuer: &str, audience: &str) -> Result<Verifier, Error> {
        let key = decoding_key(pem)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Verifier {
            key,
            validation,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The token's claims, or `None` when it is expired, not yet valid, for
    /// another audience or issuer, or badly signed.
    pub fn verify(&self, token: &str) -> Option<Arc<Claims>> {
        let now = chrono::Utc::now().timestamp();
        if let Some(c) = self.cache.read().expect("token cache lock").get(token) {
            if c.exp > now && c.nbf <= now + 5 {
                return Some(c.clone());
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        let claims = Arc::new(data.claims);
        let mut cache = self.cache.write().expect("token cache lock");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), claims.clone());
        Some(claims)
    }
}

fn decoding_key(pem: &[u8]) -> Result<DecodingKey, Error> {
    let text = std::str::from_utf8(pem).map_err(|e| Error::Key(e.to_string()))?;
    if text.contains("BEGIN CERTIFICATE") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| Error::Key(format!("certificate PEM: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| Error::Key(format!("certificate: {e}")))?;
        return Ok(DecodingKey::from_rsa_der(
            &cert.public_key().subject_public_key.data,
        ));
    }
    DecodingKey::from_rsa_pem(pem).map_err(|e| Error::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let a = Access::parse_scope("repository:localhost:5000/lib/app:pull,push").unwrap();
        assert_eq!(a.kind, "repository");
        assert_eq!(a.name, "localhost:5000/lib/app");
        assert_eq!(a.actions, vec!["pull", "push"]);
        assert_eq!(
            Access::parse_scope("registry:catalog:*").unwrap().actions,
            vec!["*"]
        );
        assert!(Access::parse_scope("repository").is_err());
        assert!(Access::parse_scope("repository:pull").is_err());
    }
}
