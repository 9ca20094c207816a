//! The services of `netloop serve`: the line services echo, upper and hello, the
//! framed file upload, and exec (allowed commands, run as children on the loop).
//!
//! Each service is one small `Handler` in its own file, answering both stream
//! connections (TCP, Unix) and UDP datagrams with the same transform, the way the seeds
//! run the same logic over TCP and UDP. A service knows nothing of the command line:
//! adding one to `netloop serve` is its file here plus its line in the table of
//! `src/cli/serve.rs` (`ServiceKind`, and its arm in `start`). `metrics` is not a
//! service of its own but a wrapper: `WithMetrics<H>` answers `GET /metrics` on one
//! listener and hands everything else to the service `H`, on the same loop.

pub mod echo;
pub mod exec;
pub mod hello;
pub mod metrics;
pub mod upload;
pub mod upper;

pub use echo::Echo;
pub use exec::{Exec, ExecOptions};
pub use hello::Hello;
pub use metrics::WithMetrics;
pub use upload::{Upload, UploadOptions};
pub use upper::Upper;
