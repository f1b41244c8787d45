//! Bearer tokens compatible with the Node.js server storef replaces: HS256 JWTs whose claim `id`
//! is the user id, with `iat` and `exp`. Only HS256 is accepted (no `none`, no RS256 key
//! confusion); `exp` is required and enforced with a small leeway for clock skew.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub id: String,
    #[serde(default)]
    pub iat: Option<i64>,
    pub exp: i64,
}

/// Why a token was refused; the message goes to the client as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Clone)]
pub struct Auth {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        Auth {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token for `user` valid for `ttl_secs`.
    pub fn issue(&self, user: &str, now: i64, ttl_secs: i64) -> String {
        let claims = Claims {
            id: user.to_string(),
            iat: Some(now),
            exp: now + ttl_secs,
        };
        // HMAC signing of a serializable struct cannot fail.
        encode(&Header::new(Algorithm::HS256), &claims, &self.enc).unwrap_or_default()
    }

    /// The user id of an `Authorization` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<String, AuthError> {
        let h = header.ok_or(AuthError::Missing)?;
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        self.verify(token)
    }

    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        match decode::<Claims>(token, &self.dec, &self.validation) {
            Ok(d) if !d.claims.id.is_empty() => Ok(d.claims.id),
            Ok(_) => Err(AuthError::Invalid("claim `id` is empty".into())),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm must be HS256".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("claim `{c}` is missing"))
                }
                _ => AuthError::Invalid(e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_old_servers_token_shape_and_rejects_the_rest() {
        let a = Auth::new(b"s3cret", 30);
        let now = 1_750_489_037;
        let t = a.issue("684688c353e543e031f3b018", now, 86400);
        // The seed's token is `{"id":…,"iat":…,"exp":…}` under HS256: same shape.
        let real_now = time::OffsetDateTime::now_utc().unix_timestamp();
        let fresh = a.issue("u1", real_now, 60);
        assert_eq!(a.verify(&fresh).unwrap(), "u1");
        assert_eq!(a.verify(&t), Err(AuthError::Expired));
        let other = Auth::new(b"other", 30).issue("u1", real_now, 60);
        assert!(matches!(a.verify(&other), Err(AuthError::Invalid(_))));
        assert_eq!(a.verify_header(None), Err(AuthError::Missing));
        assert_eq!(a.verify_header(Some("Basic abc")), Err(AuthError::Missing));
        // alg none is refused.
        let parts: Vec<&str> = fresh.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(a.verify(&none).is_err());
        // within leeway
        let just_expired = a.issue("u1", real_now - 70, 60);
        assert_eq!(a.verify(&just_expired).unwrap(), "u1");
    }
}
