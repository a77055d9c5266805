//! Bearer tokens (a ServiceAccount, a Prometheus scraper) checked by `TokenReview`, as the
//! delegated authenticator of an aggregated API server does; answers (yes and no) cached for
//! [`super::CACHE_TTL`], keyed by the token's SHA-256 so no token is kept in memory.

use std::time::Instant;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::cache::TtlCache;
use super::{CACHE_TTL, Error, User};

#[derive(Debug)]
pub struct Tokens {
    api: Api<TokenReview>,
    cache: TtlCache<[u8; 32], Option<User>>,
}

impl Tokens {
    pub fn new(client: kube::Client, capacity: usize) -> Tokens {
        Tokens {
            api: Api::all(client),
            cache: TtlCache::new(capacity),
        }
    }

    /// The user the token belongs to, `None` if the API server does not know it.
    pub async fn review(&self, token: &str) -> Result<Option<User>, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.cache.get(&key, Instant::now()) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| Error::Review {
                review: "TokenReview",
                source,
            })?;
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true))
            .then_some(status.user)
            .flatten()
            .and_then(|info| {
                Some(User {
                    name: info.username.filter(|n| !n.is_empty())?,
                    uid: info.uid.unwrap_or_default(),
                    groups: info.groups.unwrap_or_default(),
                    extra: info.extra.unwrap_or_default().into_iter().collect(),
                })
            });
        self.cache
            .insert(key, user.clone(), CACHE_TTL, Instant::now());
        Ok(user)
    }
}
