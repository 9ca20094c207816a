//! Proxies: `-x/--proxy URL`, `--noproxy LIST`, and the environment as curl reads it.
//!
//! Which proxy a URL takes (`ProxyConfig`): `-x` for every URL if given; else the
//! environment — `http_proxy` for http:// URLs (lower case only: curl ignores
//! `HTTP_PROXY`, which a CGI program could be handed by a client as the `Proxy:`
//! request header), `https_proxy` or `HTTPS_PROXY` for https://, `all_proxy` or
//! `ALL_PROXY` for either when its own is unset. A host listed in `--noproxy` (else
//! `no_proxy` or `NO_PROXY`) goes direct: entries are comma-separated host names
//! matching the host and its subdomains (a leading dot is allowed), IP addresses
//! matching exactly, or `*` for every host. A proxy URL without a scheme is http://.
//!
//! How (`Route`): an http:// URL through an http proxy is sent to the proxy with the
//! request line in absolute form (`GET http://host:port/path HTTP/1.1`). An https://
//! URL asks the proxy for a tunnel first (`CONNECT host:port`); once it answers 2xx,
//! the TLS session runs inside the tunnel, on the same connection, exactly as it would
//! directly: the proxy only moves bytes. Both are a few more steps of the same state
//! machine on the one loop — the connection to the proxy is an ordinary connect
//! (happy eyeballs included), the CONNECT answer arrives in `on_data` like any bytes.
//! Credentials in the proxy URL (`http://user:pw@proxy:3128`) are sent as
//! `Proxy-Authorization: Basic`. A `socks5h://[user:pw@]host[:port]` proxy tunnels
//! every URL (`socks.rs`: the proxy resolves the name); http:// then goes in origin form
//! through the tunnel, as directly.
//!
//! Pool entries stay keyed by the *target* host (`HostKey`), their addresses being the
//! proxy's: connections through the proxy are reused for the same target only, so a
//! tunnel is never handed to another host.

use std::collections::HashMap;
use std::net::IpAddr;

use percent_encoding::percent_decode_str;
use url::Url;

use super::pool::HostKey;
use super::request::basic;

/// Which proxy each URL takes: plain values, from `-x`/`--noproxy` or the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The proxy for http:// URLs.
    pub http: Option<Url>,
    /// The proxy for https:// URLs.
    pub https: Option<Url>,
    /// Hosts that go direct (`--noproxy`, `no_proxy`).
    pub no_proxy: Vec<String>,
}

impl ProxyConfig {
    /// From `-x URL` (None: from the environment, read with `env`) and `--noproxy LIST`
    /// (None: `no_proxy`/`NO_PROXY`). Errors name the option or variable.
    pub fn new(
        proxy: Option<&str>,
        noproxy: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyConfig, String> {
        // Unset and empty are the same, as for curl.
        let var = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names
                .iter()
                .find_map(|&n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let parse = |name: &str, value: &str| {
            parse_proxy(value).map_err(|e| format!("{name} {value:?}: {e}"))
        };
        let (http, https) = match proxy {
            Some(p) => {
                let url = parse("--proxy", p)?;
                (Some(url.clone()), Some(url))
            }
            None => {
                let all = var(&["all_proxy", "ALL_PROXY"]);
                let http = var(&["http_proxy"]).or_else(|| all.clone());
                let https = var(&["https_proxy", "HTTPS_PROXY"]).or(all);
                (
                    http.map(|(n, v)| parse(n, &v)).transpose()?,
                    https.map(|(n, v)| parse(n, &v)).transpose()?,
                )
            }
        };
        let list = match noproxy {
            Some(list) => list.to_string(),
            None => var(&["no_proxy", "NO_PROXY"])
                .map(|(_, v)| v)
                .unwrap_or_default(),
        };
        let no_proxy = list
            .split(',')
            .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(ProxyConfig {
            http,
            https,
            no_proxy,
        })
    }

    /// The proxy for a URL to `key`, or None to go direct.
    pub fn for_host(&self, key: &HostKey) -> Option<&Url> {
        let proxy = if key.tls { &self.https } else { &self.http };
        let proxy = proxy.as_ref()?;
        let host = key.host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            entry == "*"
                || match (entry.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                    (Ok(a), Ok(b)) => a == b,
                    (Err(_), Err(_)) => host == entry || host.ends_with(&format!(".{entry}")),
                    _ => false,
                }
        });
        (!bypass).then_some(proxy)
    }
}

/// A proxy URL as given: a scheme is optional (http://); http:// and socks5h://.
fn parse_proxy(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("not a proxy URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "socks5h") {
        return Err(format!(
            "proxy scheme {:?} is not supported (http:// and socks5h:// are)",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err("no host".into());
    }
    Ok(url)
}

/// How a host's connections go through its proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The proxy's host (a name, or an IP literal in brackets for IPv6).
    pub host: String,
    /// The proxy's port (default 1080, as curl).
    pub port: u16,
    /// A SOCKS5 proxy (`socks5h://`), not an HTTP one.
    pub socks: bool,
    /// Open a tunnel first (https:// through an HTTP proxy, anything through SOCKS);
    /// else absolute-form requests.
    pub tunnel: bool,
    /// `Proxy-Authorization` value, from credentials in the proxy URL.
    pub auth: Option<String>,
    /// The same credentials decoded, for SOCKS.
    pub credentials: Option<(String, String)>,
}

impl Route {
    /// The route to `key` through `proxy`.
    pub fn new(key: &HostKey, proxy: &Url) -> Route {
        // The URL keeps credentials %-escaped; the header and SOCKS want them as typed.
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = (!proxy.username().is_empty()).then(|| {
            let user = decode(proxy.username());
            (user, decode(proxy.password().unwrap_or("")))
        });
        let auth = credentials
            .as_ref()
            .map(|(user, pw)| basic(&format!("{user}:{pw}")));
        let socks = proxy.scheme() == "socks5h";
        Route {
            host: proxy.host_str().unwrap_or("").to_string(),
            port: proxy.port().unwrap_or(1080),
            socks,
            tunnel: key.tls || socks,
            auth,
            credentials,
        }
    }

    /// The CONNECT request for `key`.
    pub fn connect_request(&self, key: &HostKey) -> Vec<u8> {
        let target = format!("{}:{}", key.host, key.port);
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.auth {
            req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        req.push_str("\r\n");
        req.into_bytes()
    }

    /// Rewrite an origin-form request in `buf` for the proxy: the request target
    /// becomes the absolute URL, and credentials for the proxy are added.
    pub fn absolute_form(&self, buf: &mut Vec<u8>, url: &Url) {
        let Some(first) = buf.iter().position(|&b| b == b' ') else {
            return;
        };
        let Some(len) = buf[first + 1..].iter().position(|&b| b == b' ') else {
            return;
        };
        let mut absolute = url.clone();
        absolute.set_fragment(None);
        buf.splice(first + 1..first + 1 + len, absolute.as_str().bytes());
        if let (Some(auth), Some(eol)) = (&self.auth, buf.windows(2).position(|w| w == b"\r\n")) {
            let line = format!("Proxy-Authorization: {auth}\r\n");
            buf.splice(eol + 2..eol + 2, line.bytes());
        }
    }
}

/// The routes of a run's hosts, worked out once per host.
#[derive(Debug, Default)]
pub struct Proxies {
    /// Which proxy each URL takes.
    pub config: ProxyConfig,
    /// Per pool host id: its route (None: direct).
    routes: HashMap<usize, Option<Route>>,
}

impl Proxies {
    /// Routes following `config`.
    pub fn new(config: ProxyConfig) -> Proxies {
        Proxies {
            config,
            routes: HashMap::new(),
        }
    }

    /// The route of host `id` (`key`); the bool is true the first time it is asked.
    pub fn route(&mut self, id: usize, key: &HostKey) -> (Option<&Route>, bool) {
        let mut first = false;
        let config = &self.config;
        let route = self.routes.entry(id).or_insert_with(|| {
            first = true;
            config.for_host(key).map(|p| Route::new(key, p))
        });
        (route.as_ref(), first)
    }

    /// The route of host `id`, once worked out.
    pub fn get(&self, id: usize) -> Option<&Route> {
        self.routes.get(&id).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> HostKey {
        HostKey::of(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn the_environment_as_curl_reads_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        // Upper-case HTTP_PROXY is ignored; HTTPS_PROXY is not.
        let c = ProxyConfig::new(
            None,
            None,
            env(&[("HTTP_PROXY", "evil:1"), ("HTTPS_PROXY", "p:3128")]),
        )
        .unwrap();
        assert_eq!(c.http, None);
        assert_eq!(c.https.as_ref().map(Url::as_str), Some("http://p:3128/"));
        let c = ProxyConfig::new(
            None,
            None,
            env(&[
                ("http_proxy", "http://h:8080"),
                ("no_proxy", "localhost, .example.com,10.1.2.3"),
            ]),
        )
        .unwrap();
        assert!(c.for_host(&key("http://a.b/")).is_some());
        assert!(c.for_host(&key("http://localhost:99/")).is_none());
        assert!(c.for_host(&key("http://www.example.com/")).is_none());
        assert!(c.for_host(&key("http://example.com/")).is_none());
        assert!(c.for_host(&key("http://notexample.com/")).is_some());
        assert!(c.for_host(&key("http://10.1.2.3/")).is_none());
        assert!(c.for_host(&key("https://a.b/")).is_none(), "no https proxy");
        // -x wins over the environment; --noproxy '*' over everything.
        let c = ProxyConfig::new(Some("q:1"), Some("*"), env(&[("http_proxy", "h:1")])).unwrap();
        assert!(c.for_host(&key("http://a.b/")).is_none());
        let c = ProxyConfig::new(None, None, env(&[("ALL_PROXY", "socks5h://s")])).unwrap();
        assert!(c.for_host(&key("http://a.b/")).is_some() && c.https.is_some());
        let e = ProxyConfig::new(Some("socks4://q:1"), None, env(&[])).unwrap_err();
        assert!(e.contains("--proxy") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn absolute_form_and_connect() {
        let proxy = Url::parse("http://us%40r:p%3Aw@proxy:3128").unwrap();
        let route = Route::new(&key("http://a.b:81/"), &proxy);
        let mut buf = b"GET /x?y HTTP/1.1\r\nHost: a.b:81\r\n\r\n".to_vec();
        route.absolute_form(&mut buf, &Url::parse("http://a.b:81/x?y#f").unwrap());
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "GET http://a.b:81/x?y HTTP/1.1\r\nProxy-Authorization: Basic dXNAcjpwOnc=\r\nHost: a.b:81\r\n\r\n"
        );
        let route = Route::new(&key("https://a.b/"), &Url::parse("http://proxy").unwrap());
        assert_eq!(route.port, 1080);
        assert_eq!(
            route.connect_request(&key("https://a.b/")),
            b"CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n"
        );
    }
}
