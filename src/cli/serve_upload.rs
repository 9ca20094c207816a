//! `netloop serve upload`: the upload service's options on the command line.
//!
//! Flattened into `serve`'s arguments (`ServeArgs::upload`); turned into the library's
//! plain `UploadOptions` here, and back into arguments for `serve --workers` children.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use netloop::proto::frames::{DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_HEADER};
use netloop::services::upload::{UploadOptions, DEFAULT_AUTH_TIMEOUT, DEFAULT_HEADER_TIMEOUT};

use super::args::secs;

/// Options of `netloop serve upload`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// upload: directory to store files in (created if missing); required for the upload
    /// service. An existing file is never overwritten: a taken name is stored as
    /// `name (1).ext`, `name (2).ext`, ...
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// upload: largest file accepted, in bytes (default 10 GiB).
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_file_size: u64,
    /// upload: largest JSON header accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER, value_name = "BYTES")]
    pub max_header: usize,
    /// upload: require HMAC-SHA256 challenge/response with the secret in this file (its
    /// bytes, one trailing newline removed).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// upload: seconds a client has to answer the challenge.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = secs)]
    pub auth_timeout: Duration,
    /// upload: seconds a client has to deliver a whole frame header, counted from its
    /// first byte (a byte now and then does not extend it).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = secs)]
    pub header_timeout: Duration,
}

impl Args {
    /// True when any upload option was given (they make no sense for other services).
    pub fn any_given(&self) -> bool {
        self.dir.is_some()
            || self.secret_file.is_some()
            || self.max_file_size != DEFAULT_MAX_FILE_SIZE
            || self.max_header != DEFAULT_MAX_HEADER
            || self.auth_timeout != DEFAULT_AUTH_TIMEOUT
            || self.header_timeout != DEFAULT_HEADER_TIMEOUT
    }

    /// The library's options (`--dir` is required).
    pub fn options(&self) -> io::Result<UploadOptions> {
        let dir = self.dir.clone().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "serve upload needs --dir DIR")
        })?;
        if dir.exists() && !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--dir {}: exists and is not a directory (give a directory; it is \
                     created if missing)",
                    dir.display()
                ),
            ));
        }
        Ok(UploadOptions {
            dir,
            max_file_size: self.max_file_size,
            max_header: self.max_header,
            secret_file: self.secret_file.clone(),
            auth_timeout: self.auth_timeout,
            header_timeout: self.header_timeout,
        })
    }

    /// The same options as command-line arguments, for `serve --workers` children.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            out.push(format!("--dir={}", dir.display()));
        }
        out.push(format!("--max-file-size={}", self.max_file_size));
        out.push(format!("--max-header={}", self.max_header));
        if let Some(path) = &self.secret_file {
            out.push(format!("--secret-file={}", path.display()));
        }
        out.push(format!(
            "--auth-timeout={}",
            self.auth_timeout.as_secs_f64()
        ));
        out.push(format!(
            "--header-timeout={}",
            self.header_timeout.as_secs_f64()
        ));
        out
    }
}
