//! Bearer-token checks: the registry verifies core's RS256 JWTs itself, so a
//! pull never waits on core.

use std::sync::Arc;

use http::HeaderMap;
use wharf_token::Claims;

use crate::config::TokenAuth;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};

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
            Caller::Token(c) => Some(c.sub.as_str()).filter(|s| !s.is_empty()),
        }
    }

    pub fn can(&self, kind: &str, name: &str, action: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(c) => c.allows(kind, name, action),
        }
    }
}

pub struct Verifier {
    cfg: TokenAuth,
    tokens: wharf_token::Verifier,
}

impl Verifier {
    pub fn new(cfg: TokenAuth) -> anyhow::Result<Verifier> {
        let pem = std::fs::read(&cfg.certificate)?;
        let tokens = wharf_token::Verifier::new(&pem, &cfg.issuer, &cfg.service)?;
        Ok(Verifier { cfg, tokens })
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

    /// Authenticates the request and checks that its token covers `endpoint`.
    pub fn authorize(&self, headers: &HeaderMap, endpoint: &Endpoint) -> Result<Caller> {
        let need = required(endpoint);
        let scope = need.as_ref().map(Need::scope);
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
        let Some(claims) = self.tokens.verify(token) else {
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
