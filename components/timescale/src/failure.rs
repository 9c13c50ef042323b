//! Why a write (or connect) failed, sorted by what the writer does about
//! it: retry the batch later (the database is away or misconfigured), or
//! split it to find the row the database refuses (SQLSTATE classes 22, 23
//! and 54: errors that belong to a row, not to the database).

/// The SQLSTATE classes that belong to a row: the database is fine, this
/// row is not. Each is a `reason` of `timescale_rows_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowClass {
    /// Class 22, data exception: a value too long for its `varchar`, an
    /// invalid number or time, a JSON text jsonb refuses.
    Data,
    /// Class 23, integrity constraint violation: `NOT NULL`, `CHECK`,
    /// a unique index other than the dedup one, a foreign key.
    Integrity,
    /// Class 54, program limit exceeded: an index entry larger than a
    /// b-tree page allows, JSON nested deeper than the server's stack.
    Limit,
}

impl RowClass {
    /// Every class, for metrics present from the start.
    pub const ALL: [RowClass; 3] = [RowClass::Data, RowClass::Integrity, RowClass::Limit];

    /// The `reason` label: a short, stable word.
    pub fn reason(self) -> &'static str {
        match self {
            RowClass::Data => "data_exception",
            RowClass::Integrity => "integrity_violation",
            RowClass::Limit => "program_limit",
        }
    }

    /// The class of a five-character SQLSTATE, when it belongs to a row.
    pub fn of(sqlstate: &str) -> Option<Self> {
        match sqlstate.get(..2)? {
            "22" => Some(RowClass::Data),
            "23" => Some(RowClass::Integrity),
            "54" => Some(RowClass::Limit),
            _ => None,
        }
    }
}

/// Why a write (or connect) failed, by what to do about it.
#[derive(Debug)]
pub enum Failure {
    /// The database is unreachable. `ambiguous`: the commit may have
    /// happened.
    Connection { message: String, ambiguous: bool },
    /// The dedup index (`23505`) refused a row: write with
    /// `ON CONFLICT DO NOTHING` from now on.
    Unique(String),
    /// A row of the batch was refused (`sqlstate` of `class`): isolate it.
    Row {
        class: RowClass,
        sqlstate: String,
        message: String,
    },
    /// Anything else (permissions, missing table, …): retried.
    Other(String),
}

impl Failure {
    /// The same failure, seen as the database's: an error of the connect
    /// or schema step never belongs to a row of the batch.
    pub fn of_database(self) -> Failure {
        match self {
            Failure::Row { message, .. } | Failure::Unique(message) => Failure::Other(message),
            f => f,
        }
    }

    /// The same failure, its message followed by `; hint`.
    pub fn with_hint(mut self, hint: Option<&str>) -> Failure {
        if let Some(hint) = hint {
            match &mut self {
                Failure::Connection { message, .. } | Failure::Row { message, .. } => {
                    *message = format!("{message}; {hint}");
                }
                Failure::Unique(m) | Failure::Other(m) => *m = format!("{m}; {hint}"),
            }
        }
        self
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Connection { message, .. } | Failure::Row { message, .. } => message,
            Failure::Unique(m) | Failure::Other(m) => m,
        }
    }
}

/// Sort an sqlx error; `committing`: the end of the write had been sent.
pub fn classify(e: &sqlx::Error, committing: bool) -> Failure {
    let message = e.to_string();
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code == "23505" {
                Failure::Unique(message)
            } else if let Some(class) = RowClass::of(&code) {
                Failure::Row {
                    class,
                    sqlstate: code,
                    message,
                }
            } else if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                Failure::Connection {
                    message,
                    ambiguous: committing,
                }
            } else {
                Failure::Other(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Connection {
            message,
            ambiguous: committing,
        },
        _ => Failure::Other(message),
    }
}

/// What to change in the URL when a connect failed for a reason of TLS
/// that the error's own words leave to be guessed.
pub fn tls_hint(e: &sqlx::Error) -> Option<&'static str> {
    let text = e.to_string();
    match e {
        // A `hostssl`-only server refusing a plain connection (28000).
        sqlx::Error::Database(_) if text.contains("pg_hba.conf") && text.contains("no encryption") => {
            Some("the server takes only TLS connections from this host: set sslmode=require, or verify-full with sslrootcert, in the URL")
        }
        // rustls reports it from the handshake's I/O, so sqlx may wrap it
        // as `Io` ("error communicating with database: …") as well as `Tls`.
        sqlx::Error::Tls(_) | sqlx::Error::Io(_)
            if text.contains("invalid peer certificate: UnknownIssuer") =>
        {
            Some("the server's TLS certificate is signed neither by the CA in the URL's sslrootcert nor by a public CA")
        }
        // `hostssl … cert` in pg_hba.conf, or `clientcert=verify-…`.
        sqlx::Error::Database(_) if text.contains("requires a valid client certificate") => {
            Some("give a client certificate and its key as sslcert and sslkey in the URL")
        }
        sqlx::Error::Database(_) if text.contains("certificate authentication failed") => Some(
            "the common name of the certificate in sslcert must be the user name of the URL",
        ),
        sqlx::Error::Tls(_) if text.contains("server does not support TLS") => Some(
            "the server has ssl off: sslmode=prefer connects without TLS, or turn ssl on in the server",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_classes() {
        assert_eq!(RowClass::of("22001"), Some(RowClass::Data));
        assert_eq!(RowClass::of("23514"), Some(RowClass::Integrity));
        assert_eq!(RowClass::of("54000"), Some(RowClass::Limit));
        assert_eq!(RowClass::of("54001"), Some(RowClass::Limit));
        for other in ["08006", "42P01", "57P01", "53300", "XX000", "", "5"] {
            assert_eq!(RowClass::of(other), None, "{other}");
        }
        let reasons: Vec<_> = RowClass::ALL.iter().map(|c| c.reason()).collect();
        assert_eq!(
            reasons,
            ["data_exception", "integrity_violation", "program_limit"]
        );
    }

    #[test]
    fn io_errors_are_connection_failures() {
        let e = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            classify(&e, true),
            Failure::Connection {
                ambiguous: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&sqlx::Error::RowNotFound, false),
            Failure::Other(_)
        ));
    }

    #[test]
    fn tls_failures_get_a_hint() {
        let unknown = sqlx::Error::Io(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        let f = classify(&unknown, false).with_hint(tls_hint(&unknown));
        assert!(matches!(f, Failure::Connection { .. }));
        assert!(
            f.message()
                .ends_with("UnknownIssuer; the server's TLS certificate is signed neither by the CA in the URL's sslrootcert nor by a public CA"),
            "{}",
            f.message()
        );
        let unknown = sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into());
        assert!(tls_hint(&unknown).is_some());
        let off = sqlx::Error::Tls("server does not support TLS".into());
        assert!(tls_hint(&off).is_some_and(|h| h.contains("ssl off")));
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(tls_hint(&refused), None);
        assert_eq!(Failure::Other("m".into()).with_hint(None).message(), "m");
    }

    #[test]
    fn schema_step_errors_are_never_a_rows() {
        let row = Failure::Row {
            class: RowClass::Limit,
            sqlstate: "54000".into(),
            message: "m".into(),
        };
        assert!(matches!(row.of_database(), Failure::Other(m) if m == "m"));
        assert!(matches!(
            Failure::Unique("u".into()).of_database(),
            Failure::Other(_)
        ));
        let conn = Failure::Connection {
            message: "c".into(),
            ambiguous: false,
        };
        assert!(matches!(conn.of_database(), Failure::Connection { .. }));
    }
}
