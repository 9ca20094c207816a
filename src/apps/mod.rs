//! Clients and tools that run on the loop, each a `Handler` (or a few).
//!
//! - [`client`]: `netloop client`, the seeds' interactive client (TCP, UDP, Unix).
//! - [`upload`]: `netloop upload`, the framed upload client.
//! - [`exec`]: `netloop exec`, the client of `serve exec` (seed 004's command client).
//! - [`fetch`]: `netloop fetch`, many URLs at once (seed 001's `selectors` `Fetcher`).
//! - [`stress`]: `netloop stress`, many idle connections and a few measured ones.
//! - [`resolve`]: `netloop resolve`, seed 001's address lookups.
//! - [`timeline`]: `netloop timeline`, a `--record` file drawn as SVG or an HTML page.

pub mod client;
pub mod exec;
pub mod fetch;
pub mod resolve;
pub mod stress;
pub mod timeline;
pub mod upload;
