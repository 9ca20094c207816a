//! Which server certificates are trusted, and why one was not, in plain words.
//!
//! Verification is rustls's own (`WebPkiServerVerifier`: the chain up to a trusted root,
//! validity dates, the host name), with the Mozilla roots and every `--cacert`
//! certificate as trust anchors. `Verifier` wraps it for one case it refuses and curl,
//! OpenSSL, aiohttp and httpx accept: a **self-signed server certificate given with
//! `--cacert`**. `openssl req -x509` makes such certificates with `CA:TRUE`, and webpki
//! will not accept a CA certificate as the server's own (`CaUsedAsEndEntity`), even when
//! it is the trust anchor itself. So when that is the only complaint and the server's
//! certificate is *byte for byte* one given with `--cacert`, it is accepted like a pinned
//! certificate — after checking the host name here, since webpki stopped before it.
//! Its dates are checked all the same: webpki checks validity before basic constraints,
//! so an expired certificate fails as expired (a test holds it to that). The handshake
//! signature, checked as always, proves the server has the certificate's key.
//!
//! Errors: rustls's are precise but written for programmers
//! (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`); `describe` turns
//! each into one line for people — expired (with the date), wrong host name (with the
//! names the certificate has), unknown issuer, self-signed and not trusted, a server
//! that does not speak TLS on that port, no protocol in common.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, Error, OtherError};

/// The server's certificate is self-signed (issuer = subject) and not trusted: a more
/// useful thing to say than "unknown issuer".
#[derive(Debug)]
struct SelfSigned;

impl fmt::Display for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("self-signed certificate not trusted")
    }
}

impl std::error::Error for SelfSigned {}

/// rustls's verifier, plus the self-signed certificates of `--cacert` accepted as pins.
#[derive(Debug)]
pub struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    /// Every certificate of `--cacert` (only an exact match is ever pinned).
    pinned: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// Wrap `inner`; `pinned`: the certificates of `--cacert`.
    pub fn new(inner: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        Verifier { inner, pinned }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let e =
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            };
        let ca_as_leaf = is_webpki(&e, webpki::Error::CaUsedAsEndEntity);
        if ca_as_leaf
            && self
                .pinned
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
        {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        let unknown = matches!(
            e,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        if (unknown || ca_as_leaf) && self_signed(end_entity) {
            let why = OtherError(Arc::new(SelfSigned));
            return Err(Error::InvalidCertificate(CertificateError::Other(why)));
        }
        Err(e)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The error is webpki's `which`, wrapped by rustls as an "other" certificate error.
fn is_webpki(e: &Error, which: webpki::Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<webpki::Error>() == Some(&which)
        }
        _ => false,
    }
}

/// Issuer and subject are the same name.
fn self_signed(cert: &CertificateDer<'_>) -> bool {
    webpki::EndEntityCert::try_from(cert).is_ok_and(|c| c.issuer() == c.subject())
}

/// One line for a TLS error (`handshaking`: it happened during the handshake).
pub fn describe(e: &Error, handshaking: bool) -> String {
    let words = match e {
        Error::InvalidCertificate(c) => certificate(c),
        Error::AlertReceived(alert) => alert_text(*alert),
        Error::InvalidMessage(_) if handshaking => {
            "the server does not speak TLS on this port (is it an http:// port?)".into()
        }
        Error::NoCertificatesPresented => "the server sent no certificate".into(),
        Error::PeerIncompatible(why) => format!("the server's TLS is incompatible: {why:?}"),
        Error::PeerMisbehaved(why) => format!("the server broke the TLS protocol: {why:?}"),
        other => other.to_string(),
    };
    match handshaking {
        true => format!("TLS handshake failed: {words}"),
        false => format!("TLS: {words}"),
    }
}

/// Why the server's certificate was refused.
fn certificate(c: &CertificateError) -> String {
    let cert = "the server's certificate";
    match c {
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{cert} expired on {} (it is now {})",
            date(not_after.as_secs()),
            date(time.as_secs())
        ),
        CertificateError::Expired => format!("{cert} has expired"),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("{cert} is not valid before {}", date(not_before.as_secs()))
        }
        CertificateError::NotValidYet => format!("{cert} is not valid yet"),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "{cert} is for {}, not for {}",
            if presented.is_empty() {
                "no host name".to_string()
            } else {
                let names: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
                names.join(", ")
            },
            expected.to_str()
        ),
        CertificateError::NotValidForName => format!("{cert} is for another host name"),
        CertificateError::UnknownIssuer => format!(
            "{cert} is not signed by a CA we trust (the built-in roots and --cacert): \
             unknown issuer"
        ),
        CertificateError::BadSignature => format!("{cert} has a bad signature"),
        CertificateError::Revoked => format!("{cert} was revoked"),
        CertificateError::BadEncoding => format!("{cert} is malformed"),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("{cert} is not meant for a TLS server (its extended key usage)")
        }
        CertificateError::Other(OtherError(inner)) if inner.is::<SelfSigned>() => format!(
            "{cert} is self-signed and not trusted (to trust it, give it with --cacert FILE)"
        ),
        CertificateError::Other(OtherError(inner))
            if inner.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity) =>
        {
            format!("{cert} is a CA certificate, not a server's")
        }
        other => format!("{cert} was refused: {other:?}"),
    }
}

/// webpki lists a certificate's names in Debug form (`DnsName("a.example")`,
/// `IpAddress(10.0.0.1)`): the name alone.
fn bare_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

/// What an alert from the server means, mostly.
fn alert_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
            "the server found no cipher or key exchange in common".into()
        }
        AlertDescription::ProtocolVersion => "the server found no TLS version in common".into(),
        AlertDescription::UnrecognisedName => {
            "the server does not serve this host name (SNI)".into()
        }
        AlertDescription::NoApplicationProtocol => {
            "the server does not speak HTTP/1.1 over TLS (ALPN)".into()
        }
        other => format!("the server ended the handshake ({other:?})"),
    }
}

/// `2026-12-01 08:40:00 UTC` for seconds since the Unix epoch.
pub fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil: the proleptic Gregorian calendar from day counts.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(1_798_706_096), "2026-12-31 08:34:56 UTC");
    }

    #[test]
    fn names_without_their_debug_dress() {
        assert_eq!(bare_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("URI"), "URI");
    }
}
