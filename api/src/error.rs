//! The error body shared by every failing answer of the query API and the webhook.

use serde::{Deserialize, Serialize};

/// `{"error": "..."}`: what went wrong, in one sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
