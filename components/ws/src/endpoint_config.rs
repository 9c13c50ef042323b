//! The fields every WebSocket component's `config` block starts with,
//! declared once: [`endpoint_config!`](crate::endpoint_config) writes a
//! component's `Config` struct with them and the component's own fields.
//!
//! A macro rather than a struct the two configs embed: serde's `flatten`
//! cannot be combined with `deny_unknown_fields`, which gives every typo
//! its own error line naming the field, and the schema (`fednode schema`)
//! must list the fields where users write them, at the top of the block.
//!
//! The shared fields: `mode`, `server`, `client`, the flat `http_port` /
//! `path` shorthand, `auth`, `backpressure`, `bidirectional`,
//! `max_message_bytes`, `delivery` and `heartbeat`. The generated
//! `resolve_endpoint` turns the first five into one checked
//! [`Endpoint`](crate::config::Endpoint) and checks the other blocks, so
//! each component adds only its own rules.

/// Declare a WebSocket component's `config` struct: the shared endpoint
/// fields, then the fields written in the braces (with their attributes
/// and docs). The struct derives `Debug`, `Clone`, `Deserialize` and
/// `JsonSchema` and refuses unknown fields; the calling crate depends on
/// `serde`, `schemars`, `fednode-kit` and `fednode-ws` under those names.
///
/// ```ignore
/// fednode_ws::endpoint_config! {
///     /// The whole `config` block.
///     pub struct Config {
///         /// The component's own field.
///         #[serde(default)]
///         pub ports: PortsConfig,
///     }
/// }
/// ```
#[macro_export]
macro_rules! endpoint_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($own:tt)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `server` (listen for peers) or `client` (connect to a peer:
            /// an edge's output to its hub's input, a hub's input to an
            /// edge's output). May be left out: `client` when only a
            /// `client` block is given, else `server`.
            #[serde(default)]
            pub mode: Option<$crate::config::Mode>,
            /// Server mode: where to listen.
            #[serde(default)]
            pub server: Option<$crate::config::ServerConfig>,
            /// Client mode: where to connect and how to reconnect.
            #[serde(default)]
            pub client: Option<$crate::config::ClientConfig>,
            /// Shorthand for `server.http_port`.
            #[serde(default)]
            pub http_port: Option<u16>,
            /// Shorthand for `server.path`.
            #[serde(default)]
            pub path: Option<String>,
            /// Server mode: the credential peers must present. Client mode:
            /// the credential this node presents.
            #[serde(default)]
            pub auth: ::fednode_kit::config::AuthConfig,
            /// Where data waits and what a full queue does: the input's
            /// queue between the sockets and the bus, each output
            /// connection's own queue (a slow peer never slows the others).
            #[serde(default)]
            pub backpressure: $crate::config::BackpressureConfig,
            /// Requests over the socket, both ways.
            #[serde(default)]
            pub bidirectional: $crate::config::BidirectionalConfig,
            /// Largest accepted frame; a larger one closes the connection
            /// with 1009.
            #[serde(default = "fednode_ws::config::default_max_message_bytes")]
            pub max_message_bytes: usize,
            /// `at_most_once` (default) or `at_least_once`: acknowledged
            /// delivery (the sender keeps data until acked and resends it;
            /// the receiver acks what it published and drops duplicate ids).
            #[serde(default)]
            pub delivery: $crate::config::Delivery,
            /// Ping every connection while it is quiet and close one on
            /// which nothing arrived for the timeout; `null` turns it off.
            #[serde(default = "fednode_ws::config::default_heartbeat")]
            pub heartbeat: Option<$crate::config::HeartbeatConfig>,
            $($own)*
        }

        impl $name {
            /// The endpoint (`mode`, `server`, `client` and the shorthand,
            /// taken out of the block) resolved, and the shared blocks
            /// checked; what is wrong goes into `errors`, each under `base`.
            pub fn resolve_endpoint(
                &mut self,
                base: &str,
                errors: &mut Vec<::fednode_kit::config::ConfigError>,
            ) -> Option<$crate::config::Endpoint> {
                let at = |f: &str| ::fednode_kit::config::join(base, f);
                let endpoint = $crate::config::Endpoint::resolve(
                    $crate::config::EndpointFields {
                        mode: self.mode.take(),
                        server: self.server.take(),
                        client: self.client.take(),
                        http_port: self.http_port.take(),
                        path: self.path.take(),
                    },
                    base,
                    errors,
                );
                errors.extend(self.backpressure.validate(&at("backpressure")));
                errors.extend(self.bidirectional.validate(&at("bidirectional")));
                if let Some(h) = &self.heartbeat {
                    errors.extend(h.validate(&at("heartbeat")));
                }
                errors.extend($crate::config::validate_max_message_bytes(
                    self.max_message_bytes,
                    &at("max_message_bytes"),
                ));
                endpoint
            }
        }
    };
}
