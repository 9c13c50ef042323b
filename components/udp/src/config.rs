//! The `udp` input's config.

use fednode_kit::component::Listen;
use fednode_kit::config::{parse_checked, ConfigError, PortRules, PortsConfig};
use serde::Deserialize;

/// `components.<name>.config` of a `udp` input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// UDP port to receive JSON datagrams on (0 picks a free port).
    pub port: u16,
    /// Address to bind.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Kernel receive buffer hint; bursts beyond it are lost by the OS.
    #[serde(default = "default_recv_buffer")]
    pub recv_buffer_bytes: usize,
    /// `outputs: [{name: "out", subject}]`; the subject may be a template.
    #[serde(default)]
    pub ports: PortsConfig,
}

fn default_bind() -> String {
    "0.0.0.0".into()
}

fn default_recv_buffer() -> usize {
    4 << 20
}

impl Config {
    /// Parse and check the block at `path`.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, Vec<ConfigError>> {
        parse_checked(value, path, |cfg: Config| Self::resolve(cfg, path))
    }

    /// The socket `start` binds (`None` only for a `bind` that
    /// [`Config::parse`] refuses).
    pub fn listen(&self) -> Option<Listen> {
        let addr = format!("{}:{}", self.bind, self.port).parse().ok()?;
        Some(Listen::udp(addr, "port"))
    }

    /// Check the parsed block (at JSON path `path`).
    fn resolve(cfg: Config, path: &str) -> Result<Self, Vec<ConfigError>> {
        let mut errors = cfg
            .ports
            .validate(&format!("{path}.ports"), &PortRules::SOURCE);
        if format!("{}:{}", cfg.bind, cfg.port)
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            errors.push(ConfigError::new(
                format!("{path}.bind"),
                format!("expected an IP address, got {:?}", cfg.bind),
            ));
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_listen_is_udp_on_bind_and_port() {
        let cfg = Config::parse(
            &json!({"port": 14550, "bind": "127.0.0.1",
                    "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}),
            "c",
        )
        .unwrap();
        let listen = cfg.listen().unwrap();
        assert_eq!(listen.to_string(), "UDP 127.0.0.1:14550");
        assert_eq!(listen.field, "port");
    }
}
