//! Tenant API tokens: created by the operator, stored as SHA-256 hex, shown once.

use entities::tenant_tokens::{self, Entity as TenantTokens};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use sha2::{Digest, Sha256};

use super::{now_ms, Database};
use crate::error::AppResult;

/// Prefix of every tenant token, so a leaked one is recognisable in a secret scanner.
pub const TOKEN_PREFIX: &str = "sgt_";

/// Hex SHA-256 of a token: the only form that is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token: the prefix and 32 random bytes in hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

#[derive(Clone, Debug)]
pub struct TokenStore {
    db: Database,
}

impl TokenStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a token for `tenant_key`; returns the stored row and the token (the only time
    /// it exists outside the caller's hands).
    pub async fn create(&self, tenant_key: &str) -> AppResult<(tenant_tokens::Model, String)> {
        let token = generate_token();
        crate::redact::hide(&token);
        let row = tenant_tokens::ActiveModel {
            tenant_key: Set(tenant_key.to_owned()),
            token_hash: Set(hash_token(&token)),
            created_at: Set(now_ms()),
            ..Default::default()
        }
        .insert(self.db.conn())
        .await?;
        Ok((row, token))
    }

    pub async fn list(&self, tenant_key: &str) -> AppResult<Vec<tenant_tokens::Model>> {
        Ok(TenantTokens::find()
            .filter(tenant_tokens::Column::TenantKey.eq(tenant_key))
            .order_by_asc(tenant_tokens::Column::Id)
            .all(self.db.conn())
            .await?)
    }

    /// Revokes one token of `tenant_key`; false when there is no such token for that tenant.
    pub async fn revoke(&self, tenant_key: &str, token_id: i64) -> AppResult<bool> {
        let res = TenantTokens::delete_many()
            .filter(tenant_tokens::Column::TenantKey.eq(tenant_key))
            .filter(tenant_tokens::Column::Id.eq(token_id))
            .exec(self.db.conn())
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Every tenant's tokens (hashes only), for the authenticator's memory.
    pub async fn all(&self) -> AppResult<Vec<tenant_tokens::Model>> {
        Ok(TenantTokens::find()
            .order_by_asc(tenant_tokens::Column::Id)
            .all(self.db.read_conn())
            .await?)
    }

    /// The row whose hash equals `hash`, if any.
    pub async fn find_by_hash(&self, hash: &str) -> AppResult<Option<tenant_tokens::Model>> {
        Ok(TenantTokens::find()
            .filter(tenant_tokens::Column::TokenHash.eq(hash))
            .one(self.db.conn())
            .await?)
    }
}
