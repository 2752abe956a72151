//! Bearer-token authentication. The operator token (from configuration) reaches every
//! tenant; tenant tokens (stored as SHA-256, see `store::tokens`) reach only their tenant,
//! and another tenant's resources answer 404 as if absent. Tokens are compared in constant
//! time and never logged.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::{
    config::Secret,
    error::{AppError, AppResult, ErrorCode},
    store::tokens::{hash_token, TokenStore},
};
use dashmap::DashMap;
use entities::tenant_tokens;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    /// Operator-only routes: a tenant token gets 403.
    pub fn require_operator(&self) -> AppResult<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(_) => Err(AppError::new(
                ErrorCode::Forbidden,
                "this route needs the operator token",
            )),
        }
    }

    /// Tenant-scoped routes: another tenant's data answers 404, as if it did not exist.
    pub fn reach(&self, tenant_key: &str) -> AppResult<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(own) if own == tenant_key => Ok(()),
            Caller::Tenant(_) => Err(AppError::new(ErrorCode::NotFound, "tenant not found")),
        }
    }
}

/// Checks presented tokens against the operator token and the stored tenant tokens.
/// Checks bearer tokens without the database: the operator's hash and every tenant token's
/// hash are held in memory (a few per tenant), loaded at start and changed by the token
/// routes, so a wrong token costs a hash and a map lookup, and a revoked one is refused at
/// once. Until the load succeeds, tenant tokens are looked up in the database.
#[derive(Clone)]
pub struct Authenticator {
    operator_hash: Option<[u8; 32]>,
    tokens: TokenStore,
    /// Token hash -> (tenant, token id).
    known: Arc<DashMap<String, (String, i64)>>,
    loaded: Arc<AtomicBool>,
}

impl Authenticator {
    pub fn new(operator_token: Option<&Secret>, tokens: TokenStore) -> Self {
        let operator_hash = operator_token
            .filter(|t| !t.is_empty())
            .map(|t| Sha256::digest(t.expose().as_bytes()).into());
        Self {
            operator_hash,
            tokens,
            known: Arc::default(),
            loaded: Arc::default(),
        }
    }

    /// Reads every tenant token's hash; from then on no token check reads the database.
    pub async fn load(&self) -> AppResult<usize> {
        let rows = self.tokens.all().await?;
        self.known.clear();
        for row in &rows {
            self.remember(row);
        }
        self.loaded.store(true, Ordering::Release);
        Ok(rows.len())
    }

    /// Reads every token again (another instance created or revoked one). Unlike [`Self::load`]
    /// the known tokens are never cleared first, so a check meanwhile never misses one that
    /// stays.
    pub async fn reload(&self) -> AppResult<usize> {
        let rows = self.tokens.all().await?;
        let ids: std::collections::HashSet<i64> = rows.iter().map(|r| r.id).collect();
        for row in &rows {
            self.remember(row);
        }
        self.known.retain(|_, (_, id)| ids.contains(id));
        self.loaded.store(true, Ordering::Release);
        Ok(rows.len())
    }

    /// A token just created.
    pub fn remember(&self, row: &tenant_tokens::Model) {
        self.known
            .insert(row.token_hash.clone(), (row.tenant_key.clone(), row.id));
    }

    /// A token just revoked: refused from now on.
    pub fn forget(&self, token_id: i64) {
        self.known.retain(|_, (_, id)| *id != token_id);
    }

    pub fn has_operator_token(&self) -> bool {
        self.operator_hash.is_some()
    }

    /// Resolves a presented bearer token to a caller.
    pub async fn authenticate(&self, token: &str) -> AppResult<Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(op) = &self.operator_hash {
            if bool::from(op.ct_eq(&presented)) {
                return Ok(Caller::Operator);
            }
        }
        let hash = hash_token(token);
        if self.loaded.load(Ordering::Acquire) {
            // The map is keyed by the hash: a hit compares equal hashes.
            return match self.known.get(&hash) {
                Some(entry) => Ok(Caller::Tenant(entry.0.clone())),
                None => Err(invalid()),
            };
        }
        if let Some(row) = self.tokens.find_by_hash(&hash).await? {
            if bool::from(row.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
                return Ok(Caller::Tenant(row.tenant_key));
            }
        }
        Err(invalid())
    }
}

fn invalid() -> AppError {
    AppError::new(ErrorCode::AuthInvalid, "the bearer token is not valid")
}

/// The bearer token of a request: 401 `auth_required` without one, `auth_invalid` when
/// the header is malformed.
fn bearer(req: &HttpRequest) -> AppResult<String> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Err(AppError::new(
            ErrorCode::AuthRequired,
            "send Authorization: Bearer <token>",
        ));
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let (scheme, token) = text.trim().split_once(' ').ok_or_else(invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 512 {
        return Err(invalid());
    }
    Ok(token.to_owned())
}

impl FromRequest for Caller {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state = state.ok_or_else(|| AppError::internal("admin state is not configured"))?;
            state.auth.authenticate(&token).await
        })
    }
}
