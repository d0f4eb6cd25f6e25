//! TLS to the registry: a custom CA file (PEM), mutual TLS with a client certificate and key, and the typed error
//! when the registry's certificate is not trusted. Certificates are made with the `openssl` command at test time;
//! the registry is a one-endpoint stand-in served with rustls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use schema_registry::{Error, RegistryConfig, SchemaRegistryClient};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n[dn]\nCN = streams-rs test CA\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1,DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-config", "ca.cnf",
    ]);
    openssl(dir, &args);
    for (name, cn) in [("server", "localhost"), ("client", "svc")] {
        let subject = format!("/CN={cn}");
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// Serves `GET /schemas/ids/1` over TLS on 127.0.0.1 from a background thread; returns the base URL.
fn serve(dir: &Path, require_client_cert: bool) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = Arc::new(builder.with_single_cert(certs, key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { continue };
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            let complete = loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => {
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            break true;
                        }
                    }
                }
            };
            if !complete {
                continue;
            }
            let body = r#"{"schema":"\"string\""}"#;
            let (status, body) = if request.starts_with(b"GET /schemas/ids/1 ") {
                ("200 OK", body.to_string())
            } else {
                (
                    "404 Not Found",
                    r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    format!("https://127.0.0.1:{port}")
}

fn client(url: &str, pairs: &[(&str, String)]) -> SchemaRegistryClient {
    let mut config = RegistryConfig::new(url);
    for (k, v) in pairs {
        config.set(k, v).unwrap();
    }
    SchemaRegistryClient::new(config).unwrap()
}

#[test]
fn tls_registry_with_a_custom_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let url = serve(dir.path(), false);
    let ca = dir.path().join("ca.pem").display().to_string();

    let trusted = client(&url, &[("ssl.ca.location", ca)]);
    assert_eq!(trusted.schema_by_id(1).unwrap().schema, "\"string\"");

    // Without the CA, the built-in web roots do not trust the registry's certificate.
    let untrusted = client(&url, &[]);
    let err = untrusted.schema_by_id(1).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn tls_registry_requiring_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let url = serve(dir.path(), true);
    let path = |f: &str| dir.path().join(f).display().to_string();

    let with_cert = client(
        &url,
        &[
            ("schema.registry.ssl.ca.location", path("ca.pem")),
            (
                "schema.registry.ssl.certificate.location",
                path("client.pem"),
            ),
            ("schema.registry.ssl.key.location", path("client.key")),
        ],
    );
    assert_eq!(with_cert.schema_by_id(1).unwrap().schema, "\"string\"");

    let without = client(&url, &[("ssl.ca.location", path("ca.pem"))]);
    let err = without.schema_by_id(1).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");

    // A certificate without its key is refused up front, naming the key to set.
    let mut config = RegistryConfig::new(&url);
    config
        .set("ssl.certificate.location", &path("client.pem"))
        .unwrap();
    let err = SchemaRegistryClient::new(config).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}
