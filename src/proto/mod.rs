//! Pure codecs: bytes in, values out, no sockets and no loop.
//!
//! Each codec is fed whatever pieces the loop happened to read and says `Incomplete`
//! until a whole unit is there (STYLE: framing in two phases), so it can be tested, and
//! fuzzed, without any I/O.
//!
//! - [`frames`]: seeds 000/004's sticky-packet fix: a 4-byte length, a JSON header, a body.
//! - [`hmac_auth`]: seed 000 demo 4's HMAC-SHA256 challenge and response.
//! - [`http_response`]: one HTTP/1.1 response, incrementally, for the fetcher;
//!   [`http_head`]: what its header section means, and the limits on it.
//! - [`http_probe`]: just enough of a response to time round trips, for the stress tester.

pub mod frames;
pub mod hmac_auth;
pub mod http_head;
pub mod http_probe;
pub mod http_response;
