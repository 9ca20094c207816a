//! `netloop serve exec`: the options of the exec service, and the checks made before
//! anything listens.
//!
//! Two options are shared with `serve upload` rather than declared again: `--dir` (here
//! the children's working directory) and `--secret-file` with `--auth-timeout` (the same
//! HMAC challenge). The rest are exec's own. The security rules enforced here, at start:
//! an allowlist is required; authentication is required unless `--no-auth` is given, and
//! `--no-auth` is refused unless every listener is loopback TCP or a Unix socket (it
//! then logs a warning); UDP and `--workers` are refused (a command's reply is a stream,
//! and `--max-children` bounds the whole server).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use log::warn;

use netloop::proto::hmac_auth::Secret;
use netloop::services::exec::{
    Allowlist, Exec, ExecOptions, DEFAULT_MAX_CHILDREN, DEFAULT_MAX_OUTPUT, DEFAULT_TIMEOUT,
};

use super::args::{at_least_one, secs};
use super::serve::{ServeArgs, ServiceKind};

/// Options of the exec service (flattened into `ServeArgs`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ExecArgs {
    /// exec: file listing the programs that may run, one absolute path per line,
    /// optionally with fixed leading arguments (required for the exec service).
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,
    /// exec: run commands without authentication; only on loopback and Unix listeners,
    /// and with a warning (otherwise --secret-file is required).
    #[arg(long)]
    pub no_auth: bool,
    /// exec: seconds a command may run before its process group gets SIGTERM (and
    /// SIGKILL a second later); also how long a client may read nothing of a reply
    /// [default: 10].
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub timeout: Option<Duration>,
    /// exec: most bytes of output (stdout and stderr together) in one reply; past it the
    /// command is killed and the reply marked truncated. Suffixes K, M, G (powers of
    /// 1024) [default: 16M].
    #[arg(long, value_name = "BYTES", value_parser = bytes)]
    pub max_output: Option<usize>,
    /// exec: most commands running at once; further requests wait in arrival order
    /// [default: 16].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_children: Option<usize>,
    /// exec: pass this variable of the server's environment on to commands (repeatable;
    /// they get only PATH otherwise).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
}

impl ExecArgs {
    /// True when any exec option was given (they make no sense for other services).
    pub fn any_given(&self) -> bool {
        self.allow.is_some()
            || self.no_auth
            || self.timeout.is_some()
            || self.max_output.is_some()
            || self.max_children.is_some()
            || !self.env.is_empty()
    }
}

/// A byte count: `1048576`, `1024K`, `1M`, `2G`.
pub fn bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let factor: usize = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` is not a byte count (e.g. 65536, 64K, 16M)"
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count (e.g. 65536, 64K, 16M)"))?;
    match n.checked_mul(factor) {
        Some(0) => Err("must be at least 1 byte".to_string()),
        Some(n) => Ok(n),
        None => Err(format!("`{text}` is too large")),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Refuse option combinations that make no sense or are unsafe, before listening.
pub fn check(args: &ServeArgs) -> io::Result<()> {
    if args.service != ServiceKind::Exec {
        if args.exec.any_given() {
            return Err(invalid(
                "--allow, --no-auth, --timeout, --max-output, --max-children and --env only \
                 apply to the exec service"
                    .into(),
            ));
        }
        return Ok(());
    }
    let upload = &args.upload;
    if upload.max_file_size != netloop::proto::frames::DEFAULT_MAX_FILE_SIZE
        || upload.max_header != netloop::proto::frames::DEFAULT_MAX_HEADER
        || upload.header_timeout != netloop::services::upload::DEFAULT_HEADER_TIMEOUT
    {
        return Err(invalid(
            "--max-file-size, --max-header and --header-timeout only apply to the upload \
             service"
                .into(),
        ));
    }
    if !args.udp.is_empty() {
        return Err(invalid(
            "the exec service runs over TCP and Unix sockets, not UDP".into(),
        ));
    }
    if args.workers != super::serve_workers::WorkerCount::N(1) {
        return Err(invalid(
            "the exec service runs in one process (--max-children bounds the whole \
             server): --workers is refused"
                .into(),
        ));
    }
    if args.exec.allow.is_none() {
        return Err(invalid(
            "serve exec needs --allow FILE: the programs that may run".into(),
        ));
    }
    match (&upload.secret_file, args.exec.no_auth) {
        (Some(_), true) => Err(invalid(
            "--secret-file and --no-auth contradict each other".into(),
        )),
        (Some(_), false) => Ok(()),
        (None, false) => Err(invalid(
            "serve exec needs --secret-file FILE (clients answer its HMAC challenge), or \
             --no-auth on a loopback or Unix listener"
                .into(),
        )),
        (None, true) => match args.listen.iter().find(|a| !a.ip().is_loopback()) {
            Some(addr) => Err(invalid(format!(
                "--no-auth is refused on {addr}: anyone who can reach it could run the \
                 allowed programs; use --secret-file, or listen on 127.0.0.1, [::1] or \
                 --unix PATH"
            ))),
            None => Ok(()),
        },
    }
}

/// The service, from the options `check` accepted.
pub fn handler(args: &ServeArgs) -> io::Result<Exec> {
    let allow_path = args
        .exec
        .allow
        .as_deref()
        .ok_or_else(|| invalid("serve exec needs --allow FILE".into()))?;
    let allow = Allowlist::load(allow_path)?;
    let secret = args
        .upload
        .secret_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()?;
    if secret.is_none() {
        warn!(
            "exec: authentication is off (--no-auth): anyone who can connect to this \
             loopback or Unix listener can run the {} allowed programs",
            allow.entries().len()
        );
    }
    let auth_timeout = args.upload.auth_timeout;
    let dir = match &args.upload.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()
            .map_err(|e| io::Error::new(e.kind(), format!("current directory: {e}")))?,
    };
    Exec::new(ExecOptions {
        allow,
        secret,
        auth_timeout,
        timeout: args.exec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        max_output: args.exec.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        max_children: args.exec.max_children.unwrap_or(DEFAULT_MAX_CHILDREN),
        env: args.exec.env.clone(),
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("64K"), Ok(65536));
        assert_eq!(bytes("1M"), Ok(1 << 20));
        assert_eq!(bytes("2g"), Ok(2 << 30));
        assert!(bytes("0").is_err());
        assert!(bytes("1T").is_err());
        assert!(bytes("M").is_err());
        assert!(bytes("-1").is_err());
    }
}
