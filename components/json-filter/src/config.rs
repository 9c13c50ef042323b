//! The `json_filter` processor's config.

use fednode_kit::config::{join, parse_checked, ConfigError, PortRules, PortsConfig};
use fednode_kit::filter::{CriteriaSpec, Filter, FilterSpec, MatchMode};
use serde::Deserialize;

/// `components.<name>.config` of a `json_filter` processor.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What a message must satisfy to pass: one `{path, operator, value}`
    /// object or a list of them.
    pub criteria: CriteriaSpec,
    /// How a list of criteria combines: `all` (every one holds, the default)
    /// or `any` (at least one holds). Written `match` beside `criteria`.
    #[serde(rename = "match", default = "default_match")]
    pub match_mode: MatchMode,
    /// `inputs`: one or more subjects to read (any port names, `*` and `>`
    /// allowed; `in` by convention). `outputs`: exactly `out`, whose subject
    /// may be a template filled from each passing message.
    #[serde(default)]
    pub ports: PortsConfig,
    /// Messages held per input subscription before the bus drops (and
    /// counts) new ones: room for bursts while the filter catches up.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
}

fn default_match() -> MatchMode {
    MatchMode::All
}

fn default_queue_size() -> usize {
    fednode_kit::bus::DEFAULT_CAPACITY
}

impl Config {
    /// Parse and check the block at `path`: fields, ports, queue size and the
    /// filter itself (compiled, so a bad operator, JSONPath or regex is a
    /// config error). Every problem is reported, each with its JSON path.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, Vec<ConfigError>> {
        parse_checked(value, path, |cfg: Config| Self::resolve(cfg, path))
    }

    /// Check the parsed block (at JSON path `path`).
    fn resolve(cfg: Config, path: &str) -> Result<Self, Vec<ConfigError>> {
        let ports_path = join(path, "ports");
        let mut errors = cfg.ports.validate(&ports_path, &PortRules::PROCESSOR);
        if cfg.ports.inputs.is_empty() {
            errors.push(ConfigError::new(
                join(&ports_path, "inputs"),
                "at least one input port is required (conventionally named \"in\")",
            ));
        }
        if cfg.queue_size == 0 {
            errors.push(ConfigError::new(
                join(path, "queue_size"),
                "expected at least 1, got 0",
            ));
        }
        if let Err(mut e) = cfg.compile(path) {
            errors.append(&mut e);
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The filter as written.
    pub fn filter_spec(&self) -> FilterSpec {
        FilterSpec::new(self.criteria.clone(), self.match_mode)
    }

    /// Compile the filter; errors are located below `path` (the config
    /// block), e.g. `<path>.criteria[1].operator`.
    pub fn compile(&self, path: &str) -> Result<Filter, Vec<ConfigError>> {
        self.filter_spec().compile().map_err(|errors| {
            errors
                .into_iter()
                .map(|e| ConfigError::new(join(path, &e.path), e.message))
                .collect()
        })
    }
}
