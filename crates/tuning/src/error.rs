//! [`ConfigError`]: why a configuration could not be loaded, naming the source and the expected form.

use std::io;
use std::path::PathBuf;

use crate::detect::DetectError;

/// Why a configuration could not be loaded. Every variant names where the bad input came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value did not parse or is out of range, e.g.
    /// `WAITRESS_THREADS="abc": expected a whole number from 1 to 1024`.
    #[error("{origin}={value:?}: expected {expected}")]
    Invalid {
        /// Where the value came from: an env var name, `--flag`, or `file:line: key`.
        origin: String,
        /// The value as given.
        value: String,
        /// The expected form, e.g. `a whole number from 1 to 1024`.
        expected: String,
    },
    /// Two values that are each valid make no sense together.
    #[error("{message}")]
    Conflict {
        /// Names both values, their sources and what is expected.
        message: String,
    },
    /// The config file has a key recon does not know.
    #[error("{}: unknown key `{key}`{hint}", file.display())]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The unknown key.
        key: String,
        /// `; did you mean ...?`, or empty.
        hint: String,
    },
    /// A file (the config file or the API keys file) could not be read.
    #[error("{}: {named_by} names it: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What named the file: `--config`, `env RECON_CONFIG`,
        /// `env RECON_API_KEYS_FILE`, a config file's `api_keys_file`...
        named_by: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The API keys file holds no key: it is empty, or only blank lines and
    /// `#` comments. Naming a keys file asks for authentication, so this is
    /// refused rather than served open (a secret that was not mounted, or
    /// mounted empty, must not turn authentication off).
    #[error(
        "{}: {named_by} names it as the API keys file, but it holds no key (only blank lines and # comments): expected one key per line; to serve without keys, name no keys file",
        path.display()
    )]
    NoKeys {
        /// The file.
        path: PathBuf,
        /// What named the file, as for [`ConfigError::Read`].
        named_by: String,
    },
    /// The config file is not valid TOML.
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// Neither the cgroup files nor the host told us the CPUs and memory.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// Merging the layers failed; a bug in recon, not in the input.
    #[error("merging configuration layers: {0}")]
    Layering(String),
}
