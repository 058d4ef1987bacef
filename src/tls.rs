//! The one TLS client configuration, for HTTPS (polls, token requests) and for PostgreSQL:
//! the system's roots through rustls-platform-verifier (`SSL_CERT_FILE` honoured), the
//! server's name always checked.

use std::sync::Arc;

/// A client configuration offering `alpn` (e.g. `http/1.1`; none for PostgreSQL).
pub fn client_config(alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
