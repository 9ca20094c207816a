//! `Jar`: cookies within a run, and curl's Netscape cookie files (`-b FILE`, `-c FILE`).
//!
//! Every response head's `Set-Cookie` values go into one in-memory store for the whole
//! run, and every request carries the cookies that store has for its URL — so a login
//! page's session cookie reaches the next page of the same site, the way a browser (and
//! `curl -b`) does. The rules for which cookie goes where — domain and host-only
//! matching, path prefixes, `Secure` only over https, `Max-Age` and `Expires` — are the
//! `cookie_store` crate's (RFC 6265), not ours. Without a public suffix list it cannot
//! refuse a `Domain=com` cookie; with a run's handful of sites chosen by the user that
//! is an accepted gap (documented in README).
//!
//! The loop thread uses the store directly: a lookup per request and a parse per
//! `Set-Cookie`, both in memory. The files are read before the run and written after it,
//! off the loop. The file format is curl's (and wget's, and browsers' export):
//! one cookie a line, seven tab-separated fields — domain, include-subdomains,
//! path, secure, expiry (Unix seconds, 0 for a session cookie), name, value — with
//! `#HttpOnly_` before the domain of an HttpOnly cookie and `#` starting comments.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cookie_store::{CookieDomain, CookieExpiration, CookieStore};
use url::Url;

/// The run's cookies; None inside when cookies are off (`--no-cookies`).
#[derive(Debug, Default)]
pub struct Jar {
    store: Option<CookieStore>,
}

impl Jar {
    /// An empty jar, or none at all when `enabled` is false.
    pub fn new(enabled: bool) -> Jar {
        Jar {
            store: enabled.then(CookieStore::default),
        }
    }

    /// Keep the `Set-Cookie` values of a response to `url` (invalid ones are dropped, as
    /// a browser drops them).
    pub fn store(&mut self, set_cookies: &[String], url: &Url) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        for value in set_cookies {
            if let Err(e) = store.parse(value, url) {
                log::debug!("{url}: Set-Cookie {value:?} ignored: {e}");
            }
        }
    }

    /// The `Cookie` header value for a request to `url`, if any cookie matches.
    pub fn header(&self, url: &Url) -> Option<String> {
        let store = self.store.as_ref()?;
        let mut value = String::new();
        for (name, v) in store.get_request_values(url) {
            if !value.is_empty() {
                value.push_str("; ");
            }
            let _ = write!(value, "{name}={v}");
        }
        // A value cannot break the request: the cookie crate refuses CR and LF, and this
        // check makes sure of it.
        (!value.is_empty() && !value.contains(['\r', '\n'])).then_some(value)
    }

    /// How many cookies the jar holds (unexpired).
    pub fn len(&self) -> usize {
        self.store
            .as_ref()
            .map_or(0, |s| s.iter_unexpired().count())
    }

    /// True if the jar holds no cookie.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add the cookies of a Netscape cookie file (`-b FILE`); errors name the file.
    pub fn load(&mut self, path: &Path) -> io::Result<usize> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("-b {}: {e}", path.display())))?;
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        let now = unix_now();
        let mut loaded = 0;
        for (i, line) in text.lines().enumerate() {
            let (line, http_only) = match line.strip_prefix("#HttpOnly_") {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            let [domain, subdomains, path_attr, secure, expiry, name, value] = f[..] else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "-b {} line {}: expected 7 tab-separated fields (Netscape cookie file)",
                        path.display(),
                        i + 1
                    ),
                ));
            };
            let expiry: i64 = expiry.parse().unwrap_or(0);
            if expiry > 0 && expiry <= now {
                continue; // expired
            }
            let host = domain.trim_start_matches('.');
            let secure = secure.eq_ignore_ascii_case("TRUE");
            let mut set = format!("{name}={value}; Path={path_attr}");
            if subdomains.eq_ignore_ascii_case("TRUE") {
                let _ = write!(set, "; Domain={host}");
            }
            if secure {
                set.push_str("; Secure");
            }
            if http_only {
                set.push_str("; HttpOnly");
            }
            if expiry > 0 {
                let _ = write!(set, "; Max-Age={}", expiry - now);
            }
            let scheme = if secure { "https" } else { "http" };
            let url = Url::parse(&format!("{scheme}://{host}{path_attr}"))
                .or_else(|_| Url::parse(&format!("{scheme}://{host}/")));
            match url.map(|url| store.parse(&set, &url)) {
                Ok(Ok(_)) => loaded += 1,
                _ => log::warn!(
                    "-b {} line {}: cookie {name:?} for {domain} not usable, skipped",
                    path.display(),
                    i + 1
                ),
            }
        }
        Ok(loaded)
    }

    /// Write every unexpired cookie (session cookies too, as curl does) to a Netscape
    /// cookie file (`-c FILE`), replacing it.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::from(
            "# Netscape HTTP Cookie File\n# Written by netloop fetch (-c). Edit at your own risk.\n\n",
        );
        if let Some(store) = &self.store {
            for c in store.iter_unexpired() {
                let (domain, subdomains) = match &c.domain {
                    CookieDomain::HostOnly(d) => (d.clone(), "FALSE"),
                    CookieDomain::Suffix(d) => (format!(".{d}"), "TRUE"),
                    _ => continue,
                };
                let expiry = match &c.expires {
                    CookieExpiration::AtUtc(t) => t.unix_timestamp(),
                    CookieExpiration::SessionEnd => 0,
                };
                let prefix = if c.http_only() == Some(true) {
                    "#HttpOnly_"
                } else {
                    ""
                };
                let secure = if c.secure() == Some(true) {
                    "TRUE"
                } else {
                    "FALSE"
                };
                let _ = writeln!(
                    text,
                    "{prefix}{domain}\t{subdomains}\t{}\t{secure}\t{expiry}\t{}\t{}",
                    &*c.path,
                    c.name(),
                    c.value()
                );
            }
        }
        std::fs::write(path, text)
            .map_err(|e| io::Error::new(e.kind(), format!("-c {}: {e}", path.display())))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_path_secure_and_files() {
        let mut jar = Jar::new(true);
        let a = Url::parse("http://a.site.test/login").unwrap();
        jar.store(
            &[
                "sid=1; Path=/".into(),
                "pref=x; Path=/app".into(),
                "wide=w; Domain=site.test".into(),
                "tls=t; Secure; Path=/".into(),
                "gone=g; Max-Age=0".into(),
                "bad".into(),
            ],
            &a,
        );
        // The order of cookies in the header is not specified: compare sorted.
        let at = |jar: &Jar, u: &str| {
            jar.header(&Url::parse(u).unwrap()).map(|h| {
                let mut v: Vec<String> = h.split("; ").map(str::to_string).collect();
                v.sort();
                v.join("; ")
            })
        };
        assert_eq!(
            at(&jar, "http://a.site.test/"),
            Some("sid=1; wide=w".into())
        );
        assert_eq!(
            at(&jar, "http://a.site.test/app/x"),
            Some("pref=x; sid=1; wide=w".into())
        );
        assert_eq!(
            at(&jar, "https://a.site.test/"),
            Some("sid=1; tls=t; wide=w".into())
        );
        // Host-only cookies stay on their host; a Domain cookie reaches the others.
        assert_eq!(at(&jar, "http://b.site.test/"), Some("wide=w".into()));
        assert_eq!(at(&jar, "http://other.test/"), None);

        let dir = std::env::temp_dir().join(format!("netloop-jar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jar.txt");
        jar.save(&file).unwrap();
        let mut again = Jar::new(true);
        assert_eq!(again.load(&file).unwrap(), jar.len());
        assert_eq!(
            at(&again, "http://a.site.test/"),
            Some("sid=1; wide=w".into())
        );
        assert_eq!(at(&again, "http://b.site.test/"), Some("wide=w".into()));
        std::fs::write(&file, "a.site.test\tFALSE\t/\n").unwrap();
        let e = Jar::new(true).load(&file).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("7 tab-separated"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
