//! Password and secret hashing with argon2id, always off the async runtime.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::{ApiError, Result};

pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing failed: {e}")))
}

/// Checks `password` against a PHC hash. With `None` (unknown user) a dummy
/// hash is checked anyway, so the answer takes as long either way and does
/// not reveal which users exist.
pub async fn verify(hash: Option<String>, password: &str) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        let (h, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (dummy.as_str(), false),
        };
        let ok = PasswordHash::new(h)
            .map(|p| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &p)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"wharf-dummy-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Harbor's password policy: 8 to 128 characters with at least one upper-case
/// letter, one lower-case letter and one digit.
pub fn check_policy(password: &str) -> Result<()> {
    let len = password.chars().count();
    let ok = (8..=128).contains(&len)
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "the password must be 8 to 128 characters long and contain at least one upper-case letter, one lower-case letter and one digit"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("Secret123").await.unwrap();
        assert!(verify(Some(h.clone()), "Secret123").await);
        assert!(!verify(Some(h), "secret123").await);
        assert!(!verify(None, "Secret123").await);
    }

    #[test]
    fn policy() {
        assert!(check_policy("Harbor12345").is_ok());
        for bad in [
            "short1A",
            "alllowercase1",
            "ALLUPPER1",
            "NoDigitsHere",
            &"Aa1".repeat(50),
        ] {
            assert!(check_policy(bad).is_err(), "{bad}");
        }
    }
}
