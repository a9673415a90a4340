//! Bearer-key authentication with a constant-time comparison.
//!
//! When keys are configured, `/v1/*` needs `Authorization: Bearer <key>`
//! (401 without one, 403 with a wrong one); operator routes need it too when
//! `protect_ops` is set; `/health`, `/ready` and `/openapi.json` stay open.

use http::{HeaderMap, header};
use tuning::{ApiKey, Config};

use crate::error::ApiError;
use crate::router::Access;

/// Checks a request's credentials for a route of class `access`.
///
/// # Errors
/// [`ApiError::Unauthorized`] without a bearer token, [`ApiError::Forbidden`]
/// when the token matches no key.
pub fn check(config: &Config, access: Access, headers: &HeaderMap) -> Result<(), ApiError> {
    if config.api_keys.is_empty() {
        return Ok(());
    }
    match access {
        Access::Open => return Ok(()),
        Access::Ops if !config.protect_ops => return Ok(()),
        Access::Ops | Access::Api => {}
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    if matches_any(&config.api_keys, token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The token of a `Bearer` authorization value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `token` equals any key; every key is compared in full, so timing does
/// not reveal which key or how many leading bytes matched (only length differs).
fn matches_any(keys: &[ApiKey], token: &[u8]) -> bool {
    let mut any = 0u8;
    for key in keys {
        any |= u8::from(constant_time_eq(key.0.as_bytes(), token));
    }
    any == 1
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn config(protect_ops: bool) -> Config {
        Config {
            api_keys: vec![ApiKey("k1".into()), ApiKey("secret-two".into())],
            protect_ops,
            ..Config::default()
        }
    }

    fn headers(auth: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(a));
        }
        h
    }

    #[test]
    fn keys_gate_api_and_ops() {
        let c = config(true);
        let status = |access, auth| match check(&c, access, &headers(auth)) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        };
        assert_eq!(status(Access::Api, None), 401);
        assert_eq!(status(Access::Api, Some("Bearer nope")), 403);
        assert_eq!(status(Access::Api, Some("Basic k1")), 401);
        assert_eq!(status(Access::Api, Some("Bearer secret-two")), 200);
        assert_eq!(status(Access::Api, Some("bearer k1")), 200);
        assert_eq!(status(Access::Ops, None), 401);
        assert_eq!(status(Access::Open, None), 200);
        let open_ops = config(false);
        assert!(check(&open_ops, Access::Ops, &headers(None)).is_ok());
        assert!(check(&Config::default(), Access::Api, &headers(None)).is_ok());
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
