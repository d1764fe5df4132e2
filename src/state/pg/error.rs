//! What can go wrong with the pg state backend.

/// Everything that can go wrong talking to the database (lock contention is reported as
/// [`StateError::Locked`] / [`StateError::LockTimeout`], like the file backend's).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum PgError {
    #[error("the `conn` of the pg state backend is not a valid connection string")]
    #[diagnostic(
        code(cairn::state::pg::conn),
        help("use libpq's form (`host=db.example.org dbname=cairn user=cairn`) or a URL (`postgresql://cairn@db.example.org/cairn`)")
    )]
    InvalidConn(#[source] tokio_postgres::Error),

    #[error("`sslmode={value}` in the `conn` of the pg state backend is not one of: {allowed}")]
    #[diagnostic(
        code(cairn::state::pg::sslmode),
        help("`verify-full` checks that the server's certificate chains to `sslrootcert` and names the host; `require` encrypts without checking it")
    )]
    InvalidSslMode { value: String, allowed: &'static str },

    #[error("refusing to send the password in `conn` to {host} without TLS")]
    #[diagnostic(
        code(cairn::state::pg::cleartext_password),
        help("with `sslmode=prefer` (the default) the password goes out in cleartext if the server does not offer TLS; add `sslmode=verify-full` (with `sslrootcert=CA.pem` for a private CA) or `sslmode=require` to `conn`, or write `sslmode=disable` to send it in cleartext on purpose")
    )]
    CleartextPassword { host: String },

    #[error("cannot read the certificates of `sslrootcert` {}: {why}", path.display())]
    #[diagnostic(
        code(cairn::state::pg::sslrootcert),
        help("`sslrootcert` names a PEM file holding the CA certificate(s) the server's certificate must chain to")
    )]
    RootCert { path: std::path::PathBuf, why: String },

    #[error("cannot set up TLS for the pg state backend: {what}")]
    #[diagnostic(code(cairn::state::pg::tls))]
    Tls { what: String },

    #[error("cannot derive the name of the pg state from the repository at {}: {why}", root.display())]
    #[diagnostic(
        code(cairn::state::pg::no_state_name),
        help("without `name`, the state block's name comes from the repository's first commit; commit first, or set `name = \"...\"` in the state block")
    )]
    NoStateName { root: std::path::PathBuf, why: String },

    #[error("{location} is empty, but the state \"default\" in the same database has {serial} version(s)")]
    #[diagnostic(
        code(cairn::state::pg::legacy_default),
        help("a state block without `name` used the name \"default\"; now the name comes from the repository (\"{name}\"). If \"default\" is this repository's state, set `name = \"default\"` in the state block, or move it, with no cairn run going: UPDATE cairn.state_versions SET name = '{name}' WHERE name = 'default'. If it is another repository's, set `name` here to a name of its own. cairn does not start an empty state while that one exists")
    )]
    LegacyDefaultState { location: String, name: String, serial: i64 },

    #[error("{location} did not complete the connection (TLS handshake and login) within {}s", deadline.as_secs())]
    #[diagnostic(
        code(cairn::state::pg::login_timeout),
        help("something accepts connections at that address but does not answer as PostgreSQL does: check `host` and `port` in `conn`; a slow network may need a larger `connect_timeout` (this limit is three times it per host)")
    )]
    LoginTimeout { location: String, deadline: std::time::Duration },

    #[error("cannot connect to {location} (sslmode={ssl_mode})")]
    #[diagnostic(
        code(cairn::state::pg::connect),
        help("check `conn` in the state block (and the variable it reads, e.g. CAIRN_PG_CONN), that the server accepts this user, and, with TLS, that its certificate chains to `sslrootcert` and names the host in `conn`")
    )]
    Connect {
        location: String,
        ssl_mode: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{what} failed on {location}")]
    #[diagnostic(
        code(cairn::state::pg::query),
        help("the user in `conn` needs to read and write the tables in schema `cairn` (and, on first use, CREATE on the database)")
    )]
    Query {
        what: &'static str,
        location: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("the connection to {location} was lost")]
    #[diagnostic(
        code(cairn::state::pg::connection_lost),
        help("check the database server; a run that lost its connection also lost the state lock")
    )]
    ConnectionLost {
        location: String,
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    #[error("the cairn tables in {location} have layout version {found}; this cairn knows layout {supported} and older")]
    #[diagnostic(
        code(cairn::state::pg::layout_too_new),
        help("upgrade cairn to the version the rest of your team uses; this cairn will not touch that database")
    )]
    LayoutTooNew { location: String, found: i32, supported: usize },

    #[error("version {serial} of {location} does not parse: {message}")]
    #[diagnostic(
        code(cairn::state::pg::corrupt),
        help("every earlier version is kept in cairn.state_versions: inspect them, and delete the broken row (name and serial) to make the one before it current")
    )]
    Corrupt { location: String, serial: i64, message: String },

    #[error("this run no longer holds the state lock of {location}: {why}")]
    #[diagnostic(
        code(cairn::state::pg::lock_lost),
        help("nothing was written by this commit; run the command again")
    )]
    LockLost { location: String, why: String },

    #[error("cannot start the PostgreSQL client's runtime")]
    #[diagnostic(code(cairn::state::pg::runtime))]
    Runtime(#[source] std::io::Error),
}
