//! The install's secrets under `<out>/secret`: the token signing key and its
//! self-signed certificate, the internal secret, and the encryption key for
//! stored credentials. Created once and kept on every later run; files are
//! written whole (temp file, then rename) with mode 0600.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::Rng as _;

use crate::Error;

/// Where the secrets are and the two that go into configs as values.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub dir: PathBuf,
    /// PEM RSA private key (PKCS#8) that core signs tokens with.
    pub token_key: PathBuf,
    /// PEM self-signed certificate of that key, which the registry verifies with.
    pub token_crt: PathBuf,
    /// Shared secret of the internal calls between services.
    pub internal_secret: String,
    /// Harbor's `secretkey`: the AES key for stored credentials (16 characters).
    pub secret_key: PathBuf,
    /// Files created by this run (empty on a re-run).
    pub created: Vec<PathBuf>,
}

/// Creates the secrets that are missing in `dir` and keeps the others.
pub fn ensure(dir: &Path) -> Result<Secrets, Error> {
    create_private_dir(dir)?;
    let mut created = vec![];
    let token_key = dir.join("token.key");
    let token_crt = dir.join("token.crt");
    let key_pem = match std::fs::read_to_string(&token_key) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pem = generate_rsa_key()?;
            write_private(&token_key, pem.as_bytes())?;
            created.push(token_key.clone());
            // A certificate of another key is useless; make a new one below.
            let _ = std::fs::remove_file(&token_crt);
            pem
        }
        Err(e) => return Err(Error::io(&token_key, e)),
    };
    if !token_crt.exists() {
        let crt = self_signed_certificate(&key_pem)?;
        write_private(&token_crt, crt.as_bytes())?;
        created.push(token_crt.clone());
    }
    let internal_secret = keep_or_create(dir, "internal_secret", &mut created, || {
        let bytes: [u8; 32] = rand::thread_rng().gen();
        hex::encode(bytes)
    })?;
    let secret_key_path = dir.join("secretkey");
    keep_or_create(dir, "secretkey", &mut created, || {
        rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect()
    })?;
    Ok(Secrets {
        dir: dir.to_path_buf(),
        token_key,
        token_crt,
        internal_secret,
        secret_key: secret_key_path,
        created,
    })
}

fn keep_or_create(
    dir: &Path,
    name: &str,
    created: &mut Vec<PathBuf>,
    make: impl FnOnce() -> String,
) -> Result<String, Error> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) => Err(Error::Secret(format!(
            "{} is empty; delete it to have a new one made",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            write_private(&path, value.as_bytes())?;
            created.push(path);
            Ok(value)
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn generate_rsa_key() -> Result<String, Error> {
    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| Error::Secret(format!("generating the token key: {e}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Secret(format!("encoding the token key: {e}")))?;
    Ok(pem.to_string())
}

/// A ten-year self-signed certificate for the token key, `CN=harbor-token-issuer`.
fn self_signed_certificate(key_pem: &str) -> Result<String, Error> {
    use chrono::Datelike as _;
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| Error::Secret(format!("reading the token key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "harbor-token-issuer");
    let now = chrono::Utc::now();
    let (y, m, d) = (now.year(), now.month() as u8, now.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d) - std::time::Duration::from_secs(86400);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d);
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Secret(format!("making the token certificate: {e}")))?;
    Ok(cert.pem())
}

/// Creates `dir` (and parents) and makes it private to its owner.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` with mode 0600: a temp file beside it, then a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = ensure(&dir.path().join("secret")).unwrap();
        assert_eq!(s.created.len(), 4);
        let read = |p: &Path| std::fs::read(p).unwrap();
        let before: Vec<Vec<u8>> = [&s.token_key, &s.token_crt, &s.secret_key]
            .iter()
            .map(|p| read(p))
            .collect();
        assert!(String::from_utf8_lossy(&before[0]).starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(String::from_utf8_lossy(&before[1]).starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(before[2].len(), 16);
        assert_eq!(s.internal_secret.len(), 64);
        for p in [&s.token_key, &s.token_crt, &s.secret_key] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let again = ensure(&s.dir).unwrap();
        assert!(again.created.is_empty());
        assert_eq!(again.internal_secret, s.internal_secret);
        let after: Vec<Vec<u8>> = [&s.token_key, &s.token_crt, &s.secret_key]
            .iter()
            .map(|p| read(p))
            .collect();
        assert_eq!(before, after);
        // A lost certificate is made again from the kept key.
        std::fs::remove_file(&s.token_crt).unwrap();
        let third = ensure(&s.dir).unwrap();
        assert_eq!(third.created, vec![s.token_crt.clone()]);
        assert_eq!(read(&s.token_key), before[0]);
    }
}
