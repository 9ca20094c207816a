//! The upload client's reading jobs: opening, reading and hashing files on its
//! one-thread offload pool, off the loop thread.
//!
//! A [`Source`] (the open file and its running SHA-256) travels with each job and comes
//! back with the chunk it read, so the loop starts the next read only once the previous
//! one is back: chunks arrive in file order, and a file is never read by two threads.
//! A file that ends early (shrank while being sent) or cannot be read is a `Failed`
//! piece naming the file; the loop then fails the upload.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::proto::frames::UploadHeader;
use crate::services::upload::store::hex;

/// The file being read, travelling between the loop and the reading thread.
pub(super) struct Source {
    path: PathBuf,
    file: File,
    size: u64,
    left: u64,
    hasher: Sha256,
}

/// What a reading job brings back.
pub(super) enum Piece {
    /// A file was opened: its header frame, and the file to read.
    Opened(Box<Source>, Vec<u8>),
    /// Bytes of the file; more to come.
    Chunk(Box<Source>, Vec<u8>),
    /// The file's last bytes (perhaps none), and what to expect in its reply.
    Last(Sent, Vec<u8>),
    /// Opening or reading failed (the message names the file).
    Failed(String),
}

/// A file fully read, waiting for its reply.
pub(super) struct Sent {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Open `path` and make its header frame (the name is the path's last component).
pub(super) fn open(path: PathBuf) -> io::Result<Piece> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = File::open(&path).map_err(context)?;
    let size = file.metadata().map_err(context)?.len();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: the file name is not UTF-8", path.display()),
            )
        })?
        .to_string();
    let header = UploadHeader {
        file_name: name,
        file_size: size,
    }
    .encode();
    if size == 0 {
        // The header is the whole upload, and its reply may come as soon as the header
        // is out: so the file awaits its reply from the moment the header is ready.
        let sent = Sent {
            path,
            size,
            sha256: hex(&Sha256::new().finalize()),
        };
        return Ok(Piece::Last(sent, header));
    }
    let source = Source {
        path,
        file,
        size,
        left: size,
        hasher: Sha256::new(),
    };
    Ok(Piece::Opened(Box::new(source), header))
}

/// Read and hash the next chunk of `source` into `buf` (a recycled buffer). The last
/// chunk comes back as `Last`, which the loop receives before it sends that chunk: a
/// file is awaiting its reply before the server can have all of it.
pub(super) fn read_chunk(mut source: Box<Source>, mut buf: Vec<u8>, chunk: usize) -> Piece {
    let want = usize::try_from(source.left)
        .unwrap_or(usize::MAX)
        .min(chunk);
    // A recycled buffer keeps its length: only a longer one is zeroed (once).
    buf.resize(want, 0);
    let mut got = 0;
    while got < want {
        match source.file.read(&mut buf[got..]) {
            Ok(0) => {
                return Piece::Failed(format!(
                    "{} shrank while being sent: {} of {} bytes were there",
                    source.path.display(),
                    source.size - source.left + got as u64,
                    source.size
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Piece::Failed(format!("reading {}: {e}", source.path.display())),
        }
    }
    source.hasher.update(&buf);
    source.left -= want as u64;
    if source.left > 0 {
        return Piece::Chunk(source, buf);
    }
    let source = *source;
    let sent = Sent {
        path: source.path,
        size: source.size,
        sha256: hex(&source.hasher.finalize()),
    };
    Piece::Last(sent, buf)
}
