//! The `http_input` config.

use fednode_kit::component::Listen;
use fednode_kit::config::{
    parse_checked, AuthConfig, ConfigError, Credential, PortRules, PortsConfig,
};
use fednode_ws::server::PathTemplate;
use serde::Deserialize;

/// `components.<name>.config` of an `http_input`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TCP port of the HTTP server (0 picks a free port).
    pub http_port: u16,
    /// Requests to `POST {path}` and `POST {path}/{anything}` are accepted;
    /// a path with `{name}` segments (`/predictions/{user_id}`) accepts
    /// exactly the paths it matches and adds each bound member to the body.
    #[serde(default = "default_path")]
    pub path: String,
    /// Address to bind.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Credential a caller must present (`Authorization` header).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Larger bodies are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Serve HTTPS with this certificate (`{cert_file, key_file,
    /// client_ca_file?}`; client certificates required with the CA).
    #[serde(default)]
    pub tls: Option<fednode_ws::tls::ServerTls>,
    /// `outputs: [{name: "out", subject}]`; the subject may be a template.
    #[serde(default)]
    pub ports: PortsConfig,
}

fn default_path() -> String {
    "/ingest".into()
}
fn default_bind() -> String {
    "0.0.0.0".into()
}
fn default_max_body() -> usize {
    1 << 20
}

impl Config {
    /// Parse and check the block at `path`; also resolves the credential
    /// from the environment.
    pub fn parse(
        value: &serde_json::Value,
        path: &str,
    ) -> Result<(Self, Credential), Vec<ConfigError>> {
        parse_checked(value, path, |cfg: Config| Self::resolve(cfg, path))
    }

    /// `path` without its trailing `/` (`/` itself for the root).
    pub fn base_path(&self) -> &str {
        match self.path.trim_end_matches('/') {
            "" => "/",
            base => base,
        }
    }

    /// `path` as a template (`None` only for a path [`Config::parse`]
    /// refuses).
    pub fn template(&self) -> Option<PathTemplate> {
        PathTemplate::parse(self.base_path()).ok()
    }

    /// The socket `start` binds (`None` only for a `bind` that
    /// [`Config::parse`] refuses).
    pub fn listen(&self) -> Option<Listen> {
        let addr = format!("{}:{}", self.bind, self.http_port).parse().ok()?;
        Some(Listen::tcp(addr, "http_port"))
    }

    /// Check the parsed block (at JSON path `path`).
    fn resolve(cfg: Config, path: &str) -> Result<(Self, Credential), Vec<ConfigError>> {
        let mut errors = cfg
            .ports
            .validate(&format!("{path}.ports"), &PortRules::SOURCE);
        if let Some(tls) = &cfg.tls {
            errors.extend(tls.validate(&format!("{path}.tls")));
        }
        if !cfg.path.starts_with('/') || cfg.path.contains('*') {
            errors.push(ConfigError::new(
                format!("{path}.path"),
                format!(
                    "expected a URL path starting with '/' and without '*', got {:?}",
                    cfg.path
                ),
            ));
        } else if let Err(why) = PathTemplate::parse(cfg.base_path()) {
            errors.push(ConfigError::new(format!("{path}.path"), why));
        }
        if format!("{}:{}", cfg.bind, cfg.http_port)
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            errors.push(ConfigError::new(
                format!("{path}.bind"),
                format!("expected an IP address, got {:?}", cfg.bind),
            ));
        }
        let credential = match cfg.auth.resolve(&format!("{path}.auth")) {
            Ok(c) => Some(c),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        match credential {
            Some(c) if errors.is_empty() => Ok((cfg, c)),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_listen_is_tcp_on_bind_and_http_port() {
        let (cfg, _) = Config::parse(
            &json!({"http_port": 8082,
                    "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}),
            "c",
        )
        .unwrap();
        let listen = cfg.listen().unwrap();
        assert_eq!(listen.to_string(), "TCP 0.0.0.0:8082");
        assert_eq!(listen.field, "http_port");
    }

    #[test]
    fn path_placeholders_are_whole_segments() {
        let parse = |p: &str| {
            Config::parse(
                &json!({"http_port": 1, "path": p,
                        "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}),
                "c",
            )
        };
        let (cfg, _) = parse("/predictions/{user_id}/").unwrap();
        let t = cfg.template().unwrap();
        assert_eq!(t.as_str(), "/predictions/{user_id}");
        assert_eq!(&*t.names()[0], "user_id");
        assert!(parse("/ingest").unwrap().0.template().unwrap().is_literal());
        for (p, why) in [
            ("/a{b}", "mixes text and braces"),
            ("/x/{}", "without a name"),
            ("/{id}/{id}", "appears twice"),
            ("/x/*", "without '*'"),
            ("x", "starting with '/'"),
        ] {
            let e = parse(p).unwrap_err();
            assert_eq!(e.len(), 1, "{e:?}");
            let line = e[0].to_string();
            assert!(
                line.starts_with("c.path: ") && line.contains(why),
                "{p}: {line}"
            );
        }
    }
}
