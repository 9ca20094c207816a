//! Worker processes: more cores and more descriptors than one process has.
//!
//! - [`spawn`]: reserving ports and starting copies of ourselves (`serve --workers`).
//! - [`supervisor`]: their parent, a handler on the loop: output, restarts, signals.

pub mod spawn;
pub mod supervisor;
