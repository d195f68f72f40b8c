//! Placeholder until the Redis store lands.
use super::store::{SessionStore, StoreFuture};
use crate::protocol::session::Session;
pub struct RedisStore;
impl RedisStore {
    pub fn new(_url: &str, _prefix: Option<String>, _ttl: Option<std::time::Duration>) -> Result<Self, String> {
        Err("the redis store is not built yet".into())
    }
}
impl SessionStore for RedisStore {
    fn get<'a>(&'a self, _sid: &'a str) -> StoreFuture<'a, Option<Session>> { Box::pin(async { Err("unavailable".into()) }) }
    fn set<'a>(&'a self, _sid: &'a str, _s: Session) -> StoreFuture<'a, ()> { Box::pin(async { Err("unavailable".into()) }) }
    fn destroy<'a>(&'a self, _sid: &'a str) -> StoreFuture<'a, ()> { Box::pin(async { Err("unavailable".into()) }) }
}
