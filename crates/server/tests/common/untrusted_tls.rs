//! A TLS server on 127.0.0.1 whose certificate (for `localhost`, in
//! `tests/fixtures`, made for these tests and signed by itself) no client
//! should trust. It counts the handshakes it saw fail and the connections
//! that got as far as sending it anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const CERTIFICATE: &[u8] = include_bytes!("../fixtures/untrusted-localhost.crt");
const KEY: &[u8] = include_bytes!("../fixtures/untrusted-localhost.key");

#[derive(Default)]
struct Seen {
    failed_handshakes: AtomicUsize,
    requests: AtomicUsize,
}

pub struct UntrustedTls {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

impl UntrustedTls {
    pub async fn start() -> Self {
        let certificates = CertificateDer::pem_slice_iter(CERTIFICATE)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let counts = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(mut tls) => {
                            let mut first = [0u8; 1];
                            if matches!(tls.read(&mut first).await, Ok(1)) {
                                counts.requests.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(_) => {
                            counts.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Self { addr, seen }
    }

    pub fn failed_handshakes(&self) -> usize {
        self.seen.failed_handshakes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}
