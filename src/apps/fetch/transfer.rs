//! `Transfer`: one URL's way from request to result, as a state machine.
//!
//! Seed 001's `Fetcher` strings its steps together as callbacks re-registered on the
//! selector: `get_url` connects and registers `send_request` for EVENT_WRITE, which sends
//! and registers `read_data` for EVENT_READ. Here the steps are the transfer's `Phase`,
//! and the fetcher (`fetcher.rs`) moves it along as the loop reports events:
//!
//! ```text
//! Resolving ──▶ Waiting ──▶ Connecting ──▶ Requesting ──▶ result
//! (DNS thread)  (host at    (writable +    (head, then    │
//!      ▲         --per-host) SO_ERROR)      body)         │ 3xx + Location
//!      └──────────────── next URL ◀───────────────────────┘
//! ```
//!
//! A URL waits in the fetcher's list, not yet a `Transfer`, until the `--concurrency`
//! window admits it. Steps not needed are skipped: known addresses skip Resolving, a free
//! connection slot skips Waiting, and a reused keep-alive connection skips Connecting
//! (the request is written at once). Head and body are both read in Requesting; there is
//! no final phase: the finished transfer is removed, and its result is reported once the
//! output's writer thread has written its body out (`delivery.rs`). This
//! file holds what belongs to the transfer itself — the request it sends, what a response
//! head means for it (a redirect to follow, a loop, a final response to save) — so the
//! fetcher only routes bytes and connections.

use std::sync::Arc;
use std::time::Instant;

use mio::Token;
use url::Url;

use crate::apps::fetch::decode::Decoder;
use crate::apps::fetch::net::NetState;
use crate::apps::fetch::report::FetchResult;
use crate::apps::fetch::request::Request;
use crate::apps::fetch::sending::{write_head, Sending};
use crate::apps::fetch::upload::Upload;
use crate::apps::fetch::writer::{Key, Sink};
use crate::core::TimerId;
use crate::proto::http_response::{Head, ResponseParser};

/// Where a transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its host's addresses (a resolver thread is on it).
    Resolving,
    /// Waiting for a connection to its host (`--per-host` reached).
    Waiting,
    /// Its own connection is being opened (non-blocking connect in progress).
    Connecting,
    /// The request is sent; reading the response.
    Requesting,
}

/// What a response head means for the transfer.
#[derive(Debug)]
pub enum HeadAction {
    /// A redirect to follow once this response's body has been read (and dropped).
    Redirect(Url),
    /// The final response: save its body.
    Final,
}

/// One URL being fetched.
#[derive(Debug)]
pub struct Transfer {
    /// The URL as given (reported as is).
    pub requested: String,
    /// The URL parsed as given (names the output file).
    pub first: Url,
    /// The URL being fetched now (after redirects).
    pub url: Url,
    /// The pool entry of `url`'s host.
    pub host: usize,
    /// Where it is.
    pub phase: Phase,
    /// URLs already fetched in this chain, to report redirect loops.
    pub visited: Vec<Url>,
    /// Redirects followed.
    pub redirects: u32,
    /// Its number in the run (the URL's position): never reused, unlike its slab key.
    pub serial: u64,
    /// When the transfer started (admitted into the `--concurrency` window).
    pub started: Instant,
    /// `--timeout`: the loop timer that fails the transfer, cancelled when it ends.
    pub timeout: Option<TimerId>,
    /// The connection carrying it, while it has one.
    pub conn: Option<Token>,
    /// Which of the host's addresses to try next for a new connection.
    pub next_addr: usize,
    /// Take a new connection, not an idle one (after a reused one failed).
    pub fresh_conn: bool,
    /// A failed reused connection was already retried once.
    pub retried: bool,
    /// The response being read.
    pub parser: ResponseParser,
    /// The current response is a redirect to this URL (its body is dropped).
    pub redirect_to: Option<Url>,
    /// The current response allows another request on its connection.
    pub keep_alive: bool,
    /// Final status, once its head arrived.
    pub status: Option<u16>,
    /// Body bytes of the final response so far.
    pub bytes: u64,
    /// Where the final response's body goes.
    pub sink: Sink,
    /// Bytes handed to the output's writer thread and not yet written.
    pub unwritten: usize,
    /// Its connection is not being read because too much of its output is unwritten.
    pub paused: bool,
    /// Send HEAD instead of GET.
    pub head_only: bool,
    /// Keep raw heads (for `--include`).
    pub keep_heads: bool,
    /// The run's request settings (`-X`, `-H`, `-d`, `-u`, ...).
    pub request: Arc<Request>,
    /// Method, body and credentials of the current request (redirects change them).
    pub sending: Sending,
    /// The file body being sent (`--data-binary @FILE`), while it is.
    pub upload: Option<Upload>,
    /// Decodes the final response's `Content-Encoding` (`--compressed`).
    pub decoder: Option<Decoder>,
    /// Body bytes of the final response as they arrived (before decoding).
    pub wire_bytes: u64,
    /// Retry attempts, racing connects, phase timings (`net.rs`).
    pub net: NetState,
}

impl Transfer {
    /// Transfer number `serial` of `url` (already parsed), as given in `requested`.
    pub fn new(
        serial: u64,
        requested: String,
        mut url: Url,
        host: usize,
        head_only: bool,
        keep: bool,
        request: Arc<Request>,
    ) -> Self {
        // A fragment is never sent, and must not make `/a#x` and `/a` two URLs.
        url.set_fragment(None);
        let sending = Sending::new(&request, &url, head_only);
        // `-X HEAD` reads the response as a HEAD response too (no body).
        let head_only = sending.method == "HEAD";
        Transfer {
            requested,
            first: url.clone(),
            visited: vec![url.clone()],
            url,
            host,
            phase: Phase::Waiting,
            redirects: 0,
            serial,
            started: Instant::now(),
            timeout: None,
            conn: None,
            next_addr: 0,
            fresh_conn: false,
            retried: false,
            parser: ResponseParser::new(head_only, keep),
            redirect_to: None,
            keep_alive: false,
            status: None,
            bytes: 0,
            sink: Sink::None,
            unwritten: 0,
            paused: false,
            head_only,
            keep_heads: keep,
            request,
            sending,
            upload: None,
            decoder: None,
            wire_bytes: 0,
            net: NetState::new(),
        }
    }

    /// The request for the current URL, into `buf` (cleared first): its head, and an
    /// in-memory body; `cookie` is the `Cookie` value the run's jar has for the URL.
    pub fn write_request(&self, buf: &mut Vec<u8>, keepalive: bool, cookie: Option<&str>) {
        write_head(
            buf,
            &self.request,
            &self.sending,
            &self.url,
            cookie,
            keepalive,
        );
    }

    /// A response head arrived: follow a redirect, or take it as the final response.
    pub fn on_head(&mut self, head: &Head, max_redirects: u32) -> Result<HeadAction, String> {
        self.keep_alive = head.keep_alive;
        let redirect = matches!(head.status, 301 | 302 | 303 | 307 | 308);
        let Some(location) = head.location.as_deref().filter(|_| redirect) else {
            self.status = Some(head.status);
            return Ok(HeadAction::Final);
        };
        // A relative Location is resolved against the URL that answered.
        let next = self
            .url
            .join(location)
            .map_err(|e| format!("redirect to a bad Location {location:?}: {e}"))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(format!("redirect to an unsupported URL {next}"));
        }
        if self.visited.contains(&next) {
            let chain: Vec<&str> = self.visited.iter().map(Url::as_str).collect();
            return Err(format!("redirect loop: {} -> {next}", chain.join(" -> ")));
        }
        if self.redirects >= max_redirects {
            return Err(format!(
                "too many redirects (more than --max-redirects {max_redirects}), next was {next}"
            ));
        }
        // The next request's method, body, credentials and referer.
        self.sending
            .after_redirect(&self.request, head.status, &self.url, &next);
        Ok(HeadAction::Redirect(next))
    }

    /// The final response's head arrived: decode its body if `--compressed` asked for
    /// codings and it came with one.
    pub fn start_decoding(&mut self, head: &Head) -> Result<(), String> {
        self.decoder = match (&head.content_encoding, self.request.compressed) {
            (Some(coding), true) => Decoder::for_encoding(coding)?,
            _ => None,
        };
        Ok(())
    }

    /// Move on to the redirect target: a new response, possibly on another host.
    pub fn follow(&mut self, next: Url, host: usize) {
        self.redirects += 1;
        self.visited.push(next.clone());
        self.url = next;
        self.host = host;
        self.next_addr = 0;
        self.upload = None;
        self.parser = ResponseParser::new(self.head_only, self.keep_heads);
    }

    /// Start the current request again on a new connection (a reused connection died
    /// before answering: the server had closed it while it sat idle).
    pub fn restart(&mut self) {
        self.retried = true;
        self.fresh_conn = true;
        self.next_addr = 0;
        self.parser = ResponseParser::new(self.head_only, self.keep_heads);
        self.redirect_to = None;
        self.upload = None;
        self.decoder = None;
    }

    /// Who the transfer is, for the output's writer thread.
    pub fn key(&self, id: usize) -> Key {
        Key {
            id,
            serial: self.serial,
        }
    }

    /// The result as far as the network goes, once the transfer is over. The file (and
    /// an output error) are filled in once the writer has finished with its body.
    pub fn into_result(self, error: Option<String>) -> FetchResult {
        let elapsed = self.started.elapsed();
        let https = self.url.scheme() == "https";
        FetchResult {
            url: self.requested,
            status: self.status,
            bytes: self.bytes,
            wire_bytes: self.wire_bytes,
            elapsed,
            redirects: self.redirects,
            file: None,
            error,
            attempts: self.net.attempts,
            timings: Some(self.net.marks.report(self.started, https, elapsed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http_response::BodyKind;

    fn head(status: u16, location: Option<&str>) -> Head {
        Head {
            status,
            location: location.map(str::to_string),
            body: BodyKind::Empty,
            keep_alive: true,
            raw: None,
            content_encoding: None,
            set_cookies: Vec::new(),
            retry_after: None,
        }
    }

    #[test]
    fn requests_and_redirects() {
        let url = Url::parse("http://[::1]:8080/a/b?q=1#frag").unwrap();
        let request = Arc::new(Request::default());
        let mut t = Transfer::new(0, url.to_string(), url, 0, false, false, request);
        let mut buf = Vec::new();
        t.write_request(&mut buf, false, None);
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("GET /a/b?q=1 HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"));

        let next = match t.on_head(&head(302, Some("../c")), 5).unwrap() {
            HeadAction::Redirect(u) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(next.as_str(), "http://[::1]:8080/c");
        t.follow(next, 0);
        let e = t.on_head(&head(301, Some("/a/b?q=1")), 5).unwrap_err();
        assert!(e.starts_with("redirect loop"), "{e}");
        let e = t.on_head(&head(307, Some("/d")), 1).unwrap_err();
        assert!(e.starts_with("too many redirects"), "{e}");
        assert!(matches!(
            t.on_head(&head(304, None), 5),
            Ok(HeadAction::Final)
        ));
        assert_eq!(t.status, Some(304));
    }
}
