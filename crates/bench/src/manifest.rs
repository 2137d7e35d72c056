//! What `starling-bench seed` leaves for `starling-bench run`: who can act, with which token,
//! and some posts to like.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeededUser {
    pub id: String,
    pub handle: String,
    /// An access token minted with the server's signing key.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub users: Vec<SeededUser>,
    /// Every seeded account's id (followed at random by `starling-bench run`).
    pub all_user_ids: Vec<String>,
    pub sample_posts: Vec<String>,
    /// The most followed accounts and their follower counts.
    pub most_followed: Vec<(String, u64)>,
    pub follows: u64,
    pub posts: u64,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::report::write_json(path, self)
    }
}
