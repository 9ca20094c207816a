//! The services of `netloop serve`: the line services echo, upper and hello, and the
//! framed file upload.
//!
//! Each service is one small `Handler` in its own file, answering both stream
//! connections (TCP, Unix) and UDP datagrams with the same transform, the way the seeds
//! run the same logic over TCP and UDP. Adding a service is one file and one `match` arm
//! in `build`.

pub mod echo;
pub mod hello;
pub mod upload;
pub mod upper;

pub use echo::Echo;
pub use hello::Hello;
pub use upload::{Upload, UploadOptions};
pub use upper::Upper;

/// The services `netloop serve` knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceKind {
    /// Bytes back unchanged (seed 001's echo; `--suffix` appends text, as the seed does).
    Echo,
    /// Bytes back ASCII-upper-cased (seeds 002 and 004).
    Upper,
    /// `Welcome!` on connect, `Hello, <msg>!` per message, `exit` closes (seed 003).
    Hello,
    /// Framed file upload into `--dir` (seeds 000 and 004; TCP and Unix only).
    Upload,
}
