//! Bearer-token checks: the registry verifies core's RS256 JWTs itself, so a
//! pull never waits on core. Verified tokens are cached until they expire,
//! which keeps signature checks off the hot path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::TokenAuth;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub exp: i64,
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

/// Who is calling, once authenticated (or not, when auth is off).
#[derive(Debug, Clone)]
pub enum Caller {
    Open,
    Token(Arc<Claims>),
}

impl Caller {
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token(c) => c.sub.as_deref().filter(|s| !s.is_empty()),
        }
    }

    pub fn can(&self, kind: &str, name: &str, action: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(c) => c.allows(kind, name, action),
        }
    }
}

const CACHE_MAX: usize = 50_000;

pub struct Verifier {
    cfg: TokenAuth,
    key: DecodingKey,
    validation: Validation,
    cache: RwLock<HashMap<String, Arc<Claims>>>,
}

impl Verifier {
    pub fn new(cfg: TokenAuth) -> anyhow::Result<Verifier> {
        let pem = std::fs::read(&cfg.certificate)?;
        let key = decoding_key(&pem)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&cfg.service]);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Verifier {
            cfg,
            key,
            validation,
            cache: RwLock::new(HashMap::new()),
        })
    }

    fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.cfg.realm, self.cfg.service
        );
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    fn verify(&self, token: &str) -> Option<Arc<Claims>> {
        let now = chrono::Utc::now().timestamp();
        if let Some(c) = self.cache.read().expect("cache lock").get(token) {
            if c.exp > now {
                return Some(c.clone());
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        let claims = Arc::new(data.claims);
        let mut cache = self.cache.write().expect("cache lock");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), claims.clone());
        Some(claims)
    }

    /// Authenticates the request and checks that its token covers `endpoint`.
    pub fn authorize(&self, headers: &HeaderMap, endpoint: &Endpoint) -> Result<Caller> {
        let need = required(endpoint);
        let scope = need.as_ref().map(|n| n.scope());
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(Error::Unauthorized {
                challenge: self.challenge(scope.as_deref(), None),
                message: "authentication required",
            });
        };
        let Some(claims) = self.verify(token) else {
            return Err(Error::Unauthorized {
                challenge: self.challenge(scope.as_deref(), Some("invalid_token")),
                message: "the bearer token is invalid, expired or not meant for this registry",
            });
        };
        if let Some(n) = &need {
            if !n.actions.iter().all(|a| claims.allows(n.kind, &n.name, a)) {
                return Err(Error::Unauthorized {
                    challenge: self.challenge(scope.as_deref(), Some("insufficient_scope")),
                    message: "the token does not grant access to this resource",
                });
            }
        }
        Ok(Caller::Token(claims))
    }
}

struct Need {
    kind: &'static str,
    name: String,
    actions: &'static [&'static str],
}

impl Need {
    fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

fn required(e: &Endpoint) -> Option<Need> {
    use Endpoint::*;
    let repo = |name: &wharf_oci::RepositoryName, actions| {
        Some(Need {
            kind: "repository",
            name: name.to_string(),
            actions,
        })
    };
    match e {
        Base => None,
        Catalog => Some(Need {
            kind: "registry",
            name: "catalog".into(),
            actions: &["*"],
        }),
        GetManifest { name, .. }
        | GetBlob { name, .. }
        | ListTags { name }
        | Referrers { name, .. } => repo(name, &["pull"]),
        PutManifest { name, .. }
        | StartUpload { name }
        | UploadStatus { name, .. }
        | PatchUpload { name, .. }
        | PutUpload { name, .. }
        | CancelUpload { name, .. } => repo(name, &["pull", "push"]),
        DeleteManifest { name, .. } | DeleteBlob { name, .. } => repo(name, &["delete"]),
    }
}

/// Accepts a certificate (the registry's usual `rootcertbundle`) or a bare public key.
fn decoding_key(pem: &[u8]) -> anyhow::Result<DecodingKey> {
    let text = std::str::from_utf8(pem)?;
    if text.contains("BEGIN CERTIFICATE") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| anyhow::anyhow!("reading certificate PEM: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("parsing certificate: {e}"))?;
        let spki = cert.public_key();
        return Ok(DecodingKey::from_rsa_der(&spki.subject_public_key.data));
    }
    Ok(DecodingKey::from_rsa_pem(pem)?)
}
