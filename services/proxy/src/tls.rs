//! The HTTPS side: a rustls server config (ring) from PEM files, offering
//! HTTP/2 and HTTP/1.1 by ALPN.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

pub fn acceptor(tls: &Tls) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&tls.certificate)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls.certificate: reading {}", tls.certificate.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.certificate: {} holds no certificate",
        tls.certificate.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.private_key)
        .with_context(|| format!("tls.private_key: reading {}", tls.private_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls: the certificate and private key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
