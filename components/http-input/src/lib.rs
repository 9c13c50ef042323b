//! The `http_input`: `POST {path}/{suffix…}` with a JSON body
//! publishes the body on the `out` subject and answers 202; a body that is
//! not JSON gets 400 with the reason. A `path` with placeholders
//! (`/predictions/{user_id}`) accepts exactly the paths it matches and
//! binds their values into the body. The REST route for producers that
//! cannot hold a socket.
//!
//! - `config.rs`: the config block.
//! - `server.rs`: the axum server.

mod config;
mod metrics;
mod server;

pub use config::Config;
pub use server::HttpInput;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry.
pub fn registration() -> Registration {
    Registration {
        name: "http_input",
        aliases: &[],
        kinds: &[ComponentKind::Input],
        build: |cx, value| {
            let (cfg, credential) = Config::parse(value, cx.path)?;
            Ok(Arc::new(HttpInput::new(cfg, credential)))
        },
        schema: || schemars::schema_for!(Config),
    }
}
