//! NATS connection options from a bus's settings (feature `nats`): the one
//! place that turns `bus.token`, `bus.user`/`bus.password`,
//! `bus.creds_file` and `bus.tls` into `async_nats` options, for the NATS
//! bus and for components that open a second connection to the same server
//! (JetStream consumers).

use crate::bus::NatsConnection;
use async_nats::ConnectOptions;

impl NatsConnection {
    /// Options with this connection's authentication and TLS; the caller
    /// adds its own name, timeouts and callbacks. Fails when the
    /// credentials file cannot be read.
    pub async fn connect_options(&self) -> Result<ConnectOptions, String> {
        let mut opts = ConnectOptions::new();
        if let Some(t) = &self.token {
            opts = opts.token(t.clone());
        }
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(path) = &self.creds_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| format!("cannot read bus.creds_file {path:?}: {e}"))?;
        }
        if let Some(tls) = &self.tls {
            opts = opts.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                opts = opts.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> NatsConnection {
        NatsConnection {
            url: "nats://127.0.0.1:4222".into(),
            token: None,
            user: None,
            password: None,
            creds_file: None,
            tls: None,
        }
    }

    #[tokio::test]
    async fn an_unreadable_credentials_file_is_named() {
        let c = NatsConnection {
            creds_file: Some("/nonexistent/fednode.creds".into()),
            ..conn()
        };
        let e = c.connect_options().await.unwrap_err();
        assert!(
            e.starts_with(r#"cannot read bus.creds_file "/nonexistent/fednode.creds": "#),
            "{e}"
        );
    }

    #[tokio::test]
    async fn plain_settings_need_nothing_read() {
        assert!(conn().connect_options().await.is_ok());
    }
}
