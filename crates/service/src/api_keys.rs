//! API keys: which routes a caller may use (see [`ApiScope`]). A key's
//! secret is returned once, at creation; the store keeps its SHA-256 only,
//! and checking a key is one hash and one map lookup. Whether keys are
//! required is the HTTP layer's choice (it requires them once a master key
//! is configured).

use crate::Service;
use crate::error::{Result, ServiceError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use travelrec_store::{ApiKey, ApiScope, Lifecycle, ResourceKind, Status, validate_name};

/// What a verified key grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The key's name (never its secret), for errors and logs.
    pub name: String,
    pub scopes: Vec<ApiScope>,
}

impl Grant {
    pub fn allows(&self, scope: ApiScope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == ApiScope::Admin)
    }
}

/// Characters of a secret kept to tell keys apart: `trk_` and eight more.
const PREFIX_CHARS: usize = 12;

/// Hex SHA-256 of a secret.
pub fn secret_sha256(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// 244 random bits (two version-4 UUIDs, from the operating system's generator).
fn new_secret() -> String {
    format!("trk_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Service {
    /// Creates a key with `scopes`; returns it with its secret, which is
    /// not stored and cannot be shown again.
    pub async fn create_api_key(&self, name: &str, description: &str, scopes: &[ApiScope]) -> Result<(ApiKey, String)> {
        validate_name(name).map_err(ServiceError::invalid)?;
        if scopes.is_empty() {
            return Err(ServiceError::invalid("scopes: give at least one of recommend, track, read, admin"));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        let secret = new_secret();
        let key = ApiKey {
            name: name.to_string(),
            api_key_arn: self.config().arns.arn(ResourceKind::ApiKey, name),
            description: description.to_string(),
            scopes: scopes.clone(),
            prefix: secret[..PREFIX_CHARS].to_string(),
            secret_sha256: secret_sha256(&secret),
            lifecycle: Lifecycle::new(Status::Active),
        };
        self.store_dyn().insert(key.clone()).await?;
        self.inner.api_keys.insert(key.secret_sha256.clone(), Arc::new(Grant { name: key.name.clone(), scopes }));
        Ok((key, secret))
    }

    /// Deletes a key; requests with it are refused at once.
    pub async fn delete_api_key(&self, arn: &str) -> Result<()> {
        let key: ApiKey = self.describe(arn).await?;
        // The store first: a failure leaves the key working, not revoked until a restart.
        self.store_dyn().delete_resource(arn).await?;
        self.inner.api_keys.remove(&key.secret_sha256);
        Ok(())
    }

    /// What the key whose secret has this [`secret_sha256`] grants, if it exists.
    pub fn api_key_grant(&self, secret_sha256: &str) -> Option<Arc<Grant>> {
        self.inner.api_keys.get(secret_sha256).map(|grant| grant.clone())
    }

    /// Keeps a stored key's grant in memory (at start).
    pub(crate) fn load_api_key(&self, key: ApiKey) {
        self.inner.api_keys.insert(key.secret_sha256, Arc::new(Grant { name: key.name, scopes: key.scopes }));
    }
}
