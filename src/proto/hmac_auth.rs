//! Client authentication: seed 000's HMAC challenge (demo 4), with SHA-256.
//!
//! The server sends 32 random bytes; the client proves it knows the shared secret by
//! answering HMAC-SHA256(secret, challenge). The secret never crosses the wire, and since
//! every connection gets a fresh challenge, an answer recorded from one connection is
//! worthless on the next (no replay). The comparison is constant-time (`Mac::verify_slice`)
//! so the time a refusal takes says nothing about how many bytes were right.
//!
//! The seed uses `hmac.new(key, msg)`, whose default digest (MD5) newer Pythons refuse;
//! the Python equivalent here is `hmac.new(key, msg, 'sha256').digest()`.
//!
//! Nothing here touches a socket. On the loop the rule that matters is that the answer
//! may arrive in pieces: the server keeps bytes unconsumed until all 32 are there, and a
//! per-connection handler deadline (`Ctx::set_deadline`, not a blocking `recv`) bounds
//! how long it waits. That deadline is the handler's own: the loop's idle timeout runs
//! beside it, unchanged, so neither has to put the other's clock back.

use std::fmt;
use std::io;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes in a challenge, and in an answer (the size of a SHA-256 MAC).
pub const CHALLENGE_LEN: usize = 32;

/// The shared secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret itself, not even in debug output.
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// A secret from bytes (must not be empty).
    pub fn new(bytes: Vec<u8>) -> io::Result<Secret> {
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the secret is empty",
            ));
        }
        Ok(Secret(bytes))
    }

    /// The file's bytes, one trailing newline removed (so `echo egg > key` gives `egg`).
    pub fn from_file(path: &Path) -> io::Result<Secret> {
        let mut bytes = std::fs::read(path).map_err(|e| {
            io::Error::new(e.kind(), format!("secret file {}: {e}", path.display()))
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        Secret::new(bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("secret file {}: {e}", path.display())))
    }

    fn mac(&self, challenge: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail; `new_from_slice` only
        // reports errors for MACs with fixed key sizes.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(challenge);
        mac
    }

    /// The client's answer to a challenge.
    pub fn answer(&self, challenge: &[u8]) -> [u8; CHALLENGE_LEN] {
        self.mac(challenge).finalize().into_bytes().into()
    }

    /// Whether `answer` is right for `challenge`, compared in constant time.
    pub fn verify(&self, challenge: &[u8], answer: &[u8]) -> bool {
        self.mac(challenge).verify_slice(answer).is_ok()
    }
}

/// A fresh random challenge from the operating system's generator.
pub fn challenge() -> io::Result<[u8; CHALLENGE_LEN]> {
    let mut bytes = [0u8; CHALLENGE_LEN];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("random challenge: {e}")))?;
    Ok(bytes)
}
