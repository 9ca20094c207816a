//! TLS for `https://` URLs: rustls on the loop's own non-blocking sockets.
//!
//! rustls does no I/O of its own, which is what lets it sit on a readiness loop: the loop
//! reads ciphertext from the socket as for any connection and hands it to the fetcher's
//! `on_data`, which feeds it to the session (`read_tls` from a slice, then
//! `process_new_packets`) and takes the decrypted bytes out (`reader()`); whatever the
//! session wants to send — handshake messages, then the encrypted request — is taken out
//! with `write_tls` into a buffer and given to `ctx.send`, so it is written through,
//! or queued until the next writable edge like any other bytes. No socket is ever handed
//! to rustls, and nothing blocks: a handshake is just a few more round trips of the same
//! readable/writable events.
//!
//! Trust: the Mozilla roots compiled in (`webpki-roots`), plus any `--cacert FILE`, whose
//! self-signed server certificates are accepted as curl accepts them (`trust.rs`, which
//! also words every TLS error for people). `--insecure` replaces verification with
//! nothing, and the command prints a warning.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use super::trust::Verifier;

/// Build the client configuration shared by every TLS connection of a run.
pub fn client_config(cacert: Option<&Path>, insecure: bool) -> io::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut pinned = Vec::new();
    if let Some(path) = cacert {
        let bad = |e: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--cacert {}: {e}", path.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert.clone()).map_err(|e| bad(e.to_string()))?;
            pinned.push(cert);
        }
        if pinned.is_empty() {
            return Err(bad("no PEM certificate in the file".into()));
        }
    }
    let setup = |e: String| io::Error::other(format!("TLS setup: {e}"));
    // rustls's own verification, wrapped to accept a self-signed `--cacert` certificate
    // as curl does (`trust.rs`).
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| setup(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?;
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier::new(webpki, pinned)))
        .with_no_client_auth();
    if insecure {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerification(provider)));
    }
    // We speak HTTP/1.1 only; say so, so an HTTP/2-capable server does not pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One TLS session over one connection of the loop.
pub struct TlsSession {
    conn: ClientConnection,
}

impl TlsSession {
    /// Start a session with `host` (a DNS name or an IP address literal).
    pub fn new(config: &Arc<ClientConfig>, host: &str) -> Result<TlsSession, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS: bad server name {host:?}: {e}"))?;
        let conn = ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| format!("TLS: cannot start a session: {e}"))?;
        Ok(TlsSession { conn })
    }

    /// Plaintext to send (the request). rustls keeps it until the handshake is done and
    /// then encrypts it; `take_outgoing` collects the records.
    pub fn write_plain(&mut self, data: &[u8]) -> Result<(), String> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| format!("TLS: {e}"))
    }

    /// Ciphertext from the socket: decrypt it, appending the plaintext to `plain`.
    /// Returns true when the server sent `close_notify` (a clean end of the stream).
    pub fn receive(&mut self, mut cipher: &[u8], plain: &mut Vec<u8>) -> Result<bool, String> {
        let mut closed = false;
        while !cipher.is_empty() && !closed {
            // Reading from a slice cannot fail except when rustls's own buffers are
            // full, which the draining below prevents.
            let n = self
                .conn
                .read_tls(&mut cipher)
                .map_err(|e| format!("TLS: {e}"))?;
            let handshaking = self.conn.is_handshaking();
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| describe(e, handshaking))?;
            closed = self.drain(plain)? || state.peer_has_closed() || n == 0;
        }
        Ok(closed)
    }

    /// Move decrypted bytes out of rustls; true on `close_notify`.
    fn drain(&mut self, plain: &mut Vec<u8>) -> Result<bool, String> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(format!("TLS: {e}")),
            }
        }
    }

    /// The handshake is not complete yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Encrypted bytes the session wants sent (handshake, request, alerts), appended.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }
}

/// One line for a rustls error, in words (`trust.rs`).
fn describe(e: rustls::Error, handshaking: bool) -> String {
    super::trust::describe(&e, handshaking)
}

/// `--insecure`: accept any certificate for any name (signatures are still checked, so
/// the session is encrypted, but to whoever answered).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
