//! TLS and SASL for every client of the runtime, against tansu behind a TLS-terminating proxy (stunnel). tansu
//! advertises the proxy's port, so every connection of every client (consumers, producers, admin, metadata)
//! goes through TLS; a plain-text client cannot talk to it.
//!
//! The US-shareholders application runs end to end over TLS, over mutual TLS (certificate files, and PEM strings
//! with an encrypted key) and over SASL (PLAIN and SCRAM) on TLS, and its store is checked against the query
//! evaluated directly on the sample positions. Misconfigured clients (an unrelated CA, a wrong password) fail
//! `start()` within seconds with an error naming the broker and the setting to check; secrets never appear in
//! errors, `Debug` output or log lines (captured with a tracing subscriber).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use examples::us_shareholders::{sample_positions, topology, Position, POSITIONS_TOPIC, STORE};
use streams_dsl::streams_core::runtime::{KafkaStreams, State, StreamsConfig};
use streams_dsl::{ConnectionFailure, StoreKind, StreamsError};
use tests::tls::{self, Pki, SecureBroker, SecureBrokerOptions};
use tests::wait_until;

// ---- Log capture -------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary (every thread, every level), captured by a global subscriber.
fn logs() -> String {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Buffer(Arc::default());
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    });
    String::from_utf8_lossy(&buffer.0.lock().unwrap()).to_string()
}

fn assert_hidden(secrets: &[&str], texts: &[&str]) {
    for secret in secrets {
        for text in texts {
            assert!(
                !text.contains(secret),
                "a secret appears in:\n{}",
                text.replace(secret, ">>>SECRET<<<")
            );
        }
    }
}

// ---- The application ---------------------------------------------------------------------------------------

/// `select distinct(client) from open_positions where exchange = 'NASDAQ'`, evaluated directly.
fn reference(positions: &[Position]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in positions.iter().filter(|p| p.exchange == "NASDAQ") {
        out.entry(p.client.clone())
            .or_default()
            .insert(p.id.clone());
    }
    out
}

fn streams_config(
    app: &str,
    bootstrap: &str,
    dir: &std::path::Path,
    props: &[(&str, &str)],
) -> StreamsConfig {
    let mut c = StreamsConfig::new(app, bootstrap);
    c.set("commit.interval.ms", "200").unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("main.consumer.session.timeout.ms", "6000").unwrap();
    c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
    for (k, v) in props {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    c
}

/// Creates and fills the input topic through a plain client with `client_props`, runs the US-shareholders
/// application with `app_props`, and checks its store against the reference.
fn run_us_shareholders(
    broker: &SecureBroker,
    client_props: &[(&str, &str)],
    app_props: &[(&str, &str)],
) {
    let bootstrap = broker.bootstrap();
    tls::create_topic(&bootstrap, client_props, POSITIONS_TOPIC, 2, true);
    let positions = sample_positions();
    let records: Vec<_> = positions
        .iter()
        .map(|p| {
            (
                p.id.clone().into_bytes(),
                Some(serde_json::to_vec(p).unwrap()),
            )
        })
        .collect();
    tls::produce(&bootstrap, client_props, POSITIONS_TOPIC, &records);

    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("us-shareholders", &bootstrap, dir.path(), app_props);
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), config).unwrap();
    streams
        .start()
        .unwrap_or_else(|e| panic!("start: {e}\nproxy log:\n{}", broker.proxy_log()));
    let expected = reference(&positions);
    assert_eq!(
        expected,
        BTreeMap::from([
            (
                "client1".to_string(),
                BTreeSet::from(["1".to_string(), "3".to_string()])
            ),
            ("client2".to_string(), BTreeSet::from(["4".to_string()])),
        ])
    );
    let mut last = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(store) = streams.store::<String, BTreeSet<String>>(STORE) {
            last = store.all().unwrap().into_iter().collect();
            if last == expected {
                break;
            }
        }
        assert!(
            !matches!(streams.state(), State::Error | State::PendingError),
            "the application failed: {:?}",
            streams.errors()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last,
        expected,
        "state {:?}, errors {:?}",
        streams.state(),
        streams.errors()
    );
    assert!(streams.close(Duration::from_secs(30)));
}

/// Starts an application expected to fail at `start()`; returns the error and how long `start()` took.
fn failed_start(bootstrap: &str, props: &[(&str, &str)]) -> (StreamsError, Duration, State) {
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("refused-app", bootstrap, dir.path(), props);
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), config).unwrap();
    let began = Instant::now();
    let e = streams.start().expect_err("start must fail");
    (e, began.elapsed(), streams.state())
}

fn tls_props(pki: &Pki) -> Vec<(String, String)> {
    vec![
        ("security.protocol".into(), "SSL".into()),
        ("ssl.ca.location".into(), pki.file("ca.pem")),
    ]
}

fn refs(props: &[(String, String)]) -> Vec<(&str, &str)> {
    props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

// ---- TLS -----------------------------------------------------------------------------------------------------

#[test]
fn tls_runs_the_application_through_the_proxy() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(&pki, SecureBrokerOptions::default());
    // The broker is reachable through TLS only.
    assert!(!tls::can_connect(
        &broker.bootstrap(),
        &[],
        Duration::from_secs(3)
    ));
    let props = tls_props(&pki);
    run_us_shareholders(&broker, &refs(&props), &refs(&props));
}

#[test]
fn mutual_tls_with_certificate_files() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(
        &pki,
        SecureBrokerOptions {
            require_client_certificate: true,
            ..Default::default()
        },
    );
    let mut props = tls_props(&pki);
    assert!(
        !tls::can_connect(&broker.bootstrap(), &refs(&props), Duration::from_secs(3)),
        "the proxy must refuse a client without a certificate"
    );
    props.push(("ssl.certificate.location".into(), pki.file("client.pem")));
    props.push(("ssl.key.location".into(), pki.file("client.key")));
    run_us_shareholders(&broker, &refs(&props), &refs(&props));
}

/// The Java client's PEM settings (KIP-651), with the client key encrypted: mapped to librdkafka's
/// `ssl.ca.pem`, `ssl.certificate.pem` and `ssl.key.pem`, the key decrypted with `ssl.key.password`.
#[test]
fn mutual_tls_with_pem_strings_and_an_encrypted_key() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(
        &pki,
        SecureBrokerOptions {
            require_client_certificate: true,
            ..Default::default()
        },
    );
    let client_props = [
        ("security.protocol", "SSL".to_string()),
        ("ssl.ca.location", pki.file("ca.pem")),
        ("ssl.certificate.location", pki.file("client.pem")),
        ("ssl.key.location", pki.file("client.key")),
    ];
    let client_props: Vec<(&str, &str)> =
        client_props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ca, cert, key) = (
        pki.read("ca.pem"),
        pki.read("client.pem"),
        pki.read("client-encrypted.key"),
    );
    assert!(key.contains("ENCRYPTED PRIVATE KEY"));
    let app_props = [
        ("security.protocol", "SSL"),
        ("ssl.truststore.type", "PEM"),
        ("ssl.truststore.certificates", ca.as_str()),
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.certificate.chain", cert.as_str()),
        ("ssl.keystore.key", key.as_str()),
        ("ssl.key.password", Pki::KEY_PASSWORD),
    ];
    run_us_shareholders(&broker, &client_props, &app_props);
    assert_hidden(&[Pki::KEY_PASSWORD], &[&logs()]);
}

#[test]
fn an_unrelated_ca_fails_start_quickly_naming_ssl_ca_location() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(&pki, SecureBrokerOptions::default());
    let other = pki.file("other-ca.pem");
    let (e, took, state) = failed_start(
        &broker.bootstrap(),
        &[("security.protocol", "SSL"), ("ssl.ca.location", &other)],
    );
    let shown = e.to_string();
    match &e {
        StreamsError::Connection {
            failure,
            broker: at,
            setting,
            ..
        } => {
            assert_eq!(*failure, ConnectionFailure::Certificate, "{shown}");
            assert_eq!(*at, broker.bootstrap(), "{shown}");
            assert!(setting.contains("ssl.ca.location"), "{shown}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(
        shown.contains(&broker.bootstrap()) && shown.contains("ssl.ca.location"),
        "{shown}"
    );
    // Well below the 30 s allowed to an unreachable cluster: the failure is recognised, not waited out.
    assert!(took < Duration::from_secs(20), "start took {took:?}");
    assert_eq!(state, State::Created);
    eprintln!("wrong CA: start failed after {took:?}: {shown}");
}

#[test]
fn mutual_tls_without_a_client_certificate_fails_start() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(
        &pki,
        SecureBrokerOptions {
            require_client_certificate: true,
            ..Default::default()
        },
    );
    let props = tls_props(&pki);
    let (e, took, _) = failed_start(&broker.bootstrap(), &refs(&props));
    match &e {
        StreamsError::Connection {
            failure,
            broker: at,
            setting,
            ..
        } => {
            assert_eq!(*failure, ConnectionFailure::Tls, "{e}");
            assert_eq!(*at, broker.bootstrap(), "{e}");
            assert!(setting.contains("ssl.certificate.location"), "{e}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(20), "start took {took:?}");
    eprintln!("no client certificate: start failed after {took:?}: {e}");
}

#[test]
fn plain_text_client_against_a_tls_listener_fails_start() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(&pki, SecureBrokerOptions::default());
    let (e, took, _) = failed_start(&broker.bootstrap(), &[]);
    // The proxy resets the connection: librdkafka cannot tell this from a broker going away, so `start()` waits
    // for the 30 s it allows a cluster to answer, and says what it saw last.
    match &e {
        StreamsError::Connection {
            failure,
            setting,
            detail,
            ..
        } => {
            assert_eq!(*failure, ConnectionFailure::Unreachable, "{e}");
            assert!(setting.contains("security.protocol"), "{e}");
            assert!(detail.contains("last connection failure"), "{e}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(45), "start took {took:?}");
    eprintln!("plain text against TLS: start failed after {took:?}: {e}");
}

// ---- SASL over TLS (tansu --authentication) -----------------------------------------------------------------
//
// The tansu build used here (0.6.0) offers SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (no PLAIN), and with
// `--authentication` it refuses every request of an unauthenticated connection, AlterUserScramCredentials
// included; its memory storage lives in the broker process. So no SCRAM user can be created, and these tests
// show the refusals: the SASL exchange runs through TLS up to the broker's answer, and `start()` reports it.

fn sasl_broker(pki: &Pki) -> SecureBroker {
    SecureBroker::start(
        pki,
        SecureBrokerOptions {
            sasl: true,
            ..Default::default()
        },
    )
}

#[test]
fn refused_scram_credentials_fail_start_naming_them() {
    let pki = Pki::generate();
    let broker = sasl_broker(&pki);
    let ca = pki.file("ca.pem");
    let password = "Scram-Pa55-93ad17";
    let props = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "streams-app"),
        ("sasl.password", password),
        // librdkafka's security debug lines go through the same scrubbing.
        ("debug", "security"),
    ];
    let (e, took, state) = failed_start(&broker.bootstrap(), &props);
    let shown = format!("{e}\n{e:?}");
    match &e {
        StreamsError::Connection {
            failure,
            broker: at,
            setting,
            ..
        } => {
            assert_eq!(*failure, ConnectionFailure::Authentication, "{shown}");
            assert_eq!(*at, broker.bootstrap(), "{shown}");
            assert!(
                setting.contains("sasl.username") && setting.contains("sasl.password"),
                "{shown}"
            );
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(20), "start took {took:?}");
    assert_eq!(state, State::Created);
    let logged = logs();
    assert!(
        logged.contains("sasl.username and sasl.password"),
        "the failure is logged with the hint"
    );
    assert_hidden(&[password], &[&shown, &logged]);
    eprintln!("refused SCRAM login: start failed after {took:?}: {e}");
}

#[test]
fn a_mechanism_the_broker_does_not_offer_fails_start_naming_sasl_mechanism() {
    let pki = Pki::generate();
    let broker = sasl_broker(&pki);
    let ca = pki.file("ca.pem");
    let props = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "streams-app"),
        ("sasl.password", "Plain-Pa55-0c4d"),
    ];
    let (e, took, _) = failed_start(&broker.bootstrap(), &props);
    match &e {
        StreamsError::Connection {
            failure, setting, ..
        } => {
            assert_eq!(*failure, ConnectionFailure::Authentication, "{e}");
            assert!(setting.starts_with("sasl.mechanism"), "{e}");
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(20), "start took {took:?}");
    assert_hidden(&["Plain-Pa55-0c4d"], &[&format!("{e:?}"), &logs()]);
    eprintln!("PLAIN against a SCRAM/OAUTHBEARER broker: start failed after {took:?}: {e}");
}

/// The admin client trusts the right CA, the stream thread's consumer does not (a prefixed setting): `start()`
/// succeeds, then the thread stops with the error and the instance goes to `Error` instead of retrying forever.
#[test]
fn a_client_refused_at_run_time_moves_the_instance_to_error() {
    let pki = Pki::generate();
    let broker = SecureBroker::start(&pki, SecureBrokerOptions::default());
    let props = tls_props(&pki);
    tls::create_topic(&broker.bootstrap(), &refs(&props), POSITIONS_TOPIC, 2, true);
    let other = pki.file("other-ca.pem");
    let mut app = refs(&props);
    app.push(("main.consumer.ssl.ca.location", &other));
    let dir = tempfile::tempdir().unwrap();
    let config = streams_config("refused-consumer", &broker.bootstrap(), dir.path(), &app);
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), config).unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = errors.clone();
    streams.set_uncaught_error_handler(move |e| {
        seen.lock().unwrap().push(e.to_string());
        streams_dsl::streams_core::runtime::UncaughtErrorAction::ShutdownClient
    });
    let began = Instant::now();
    streams.start().expect("the admin client connects");
    wait_until("the instance to fail", Duration::from_secs(60), || {
        streams.state() == State::Error
    });
    let reported = errors.lock().unwrap().join("\n");
    assert!(
        reported.contains("ssl.ca.location") && reported.contains(&broker.bootstrap()),
        "{reported}"
    );
    assert_eq!(streams.errors(), errors.lock().unwrap().clone());
    eprintln!(
        "refused at run time: Error after {:?}: {reported}",
        began.elapsed()
    );
}

// ---- OAUTHBEARER with OIDC token retrieval ---------------------------------------------------------------------

fn base64(data: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64(b"id:secret", false), "aWQ6c2VjcmV0");
    assert_eq!(base64(b"ab", false), "YWI=");
    assert_eq!(base64(b"\xfb\xff", true), "-_8");
}

/// librdkafka fetches a token from the OIDC endpoint with the client-credentials grant, authenticating with the
/// client id and secret; the endpoint here is a tiny HTTP server recording what it receives. tansu offers
/// OAUTHBEARER but accepts no token, so the login is then refused, and `start()` says so without the secret.
#[test]
fn oidc_token_is_requested_with_the_client_credentials() {
    use axum::{extract::State as AxumState, http::HeaderMap, routing::post, Json, Router};

    type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;
    let seen: Seen = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
    let app = Router::new()
        .route(
            "/oauth2/token",
            post(|AxumState(seen): AxumState<Seen>, headers: HeaderMap, body: String| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                seen.lock().unwrap().push((auth, body));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = base64(br#"{"alg":"RS256","typ":"JWT"}"#, true);
                let claims = base64(
                    format!(r#"{{"sub":"streams-app","iat":{now},"exp":{},"scope":"kafka"}}"#, now + 3600)
                        .as_bytes(),
                    true,
                );
                let token = format!("{header}.{claims}.{}", base64(b"not-a-real-signature", true));
                Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
            }),
        )
        .with_state(seen.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let pki = Pki::generate();
    let broker = sasl_broker(&pki);
    let ca = pki.file("ca.pem");
    let (client_id, client_secret) = ("streams-app-client", "Oidc-Client-Secret-6a2f");
    let props = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("sasl.oauthbearer.method", "oidc"),
        ("sasl.oauthbearer.client.id", client_id),
        ("sasl.oauthbearer.client.secret", client_secret),
        ("sasl.oauthbearer.token.endpoint.url", endpoint.as_str()),
        ("sasl.oauthbearer.scope", "kafka"),
    ];
    let (e, took, _) = failed_start(&broker.bootstrap(), &props);
    let requests = seen.lock().unwrap().clone();
    assert!(
        !requests.is_empty(),
        "no token request reached the endpoint"
    );
    let expected_auth = format!(
        "Basic {}",
        base64(format!("{client_id}:{client_secret}").as_bytes(), false)
    );
    for (auth, body) in &requests {
        assert_eq!(auth.as_deref(), Some(expected_auth.as_str()), "{body}");
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("scope=kafka"), "{body}");
    }
    assert!(
        matches!(
            e,
            StreamsError::Connection {
                failure: ConnectionFailure::Authentication,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(40), "start took {took:?}");
    assert_hidden(
        &[client_secret],
        &[&e.to_string(), &format!("{e:?}"), &logs()],
    );
    eprintln!(
        "OIDC: {} token request(s); start failed after {took:?}: {e}",
        requests.len()
    );
}

// ---- Secrets -------------------------------------------------------------------------------------------------

/// Distinctive secrets in every sensitive setting; errors provoked before any connection (rejected settings,
/// an undecryptable key, a secret under a misspelt key) never show them, nor does `Debug`, nor the logs.
#[test]
fn secrets_never_appear_in_errors_debug_or_logs() {
    let pki = Pki::generate();
    let secrets = [
        "Sasl-Pa55-Secret-11",
        "Key-Pa55-Wrong-22",
        "Oidc-Secret-33",
        "Keystore-Pa55-44",
        "OauthConfig-Secret-55",
        "Misspelt-Secret-66",
        "Jaas-Secret-77",
    ];
    let mut texts: Vec<String> = Vec::new();

    let mut c = StreamsConfig::new("secrets", "127.0.0.1:1");
    c.set("security.protocol", "SASL_SSL").unwrap();
    c.set("ssl.ca.location", &pki.file("ca.pem")).unwrap();
    c.set("sasl.mechanism", "PLAIN").unwrap();
    c.set("sasl.username", "user").unwrap();
    c.set("sasl.password", secrets[0]).unwrap();
    c.set("sasl.oauthbearer.client.secret", secrets[2]).unwrap();
    c.set("admin.ssl.keystore.password", secrets[3]).unwrap();
    c.set(
        "producer.sasl.oauthbearer.config",
        &format!("principal=x secret={}", secrets[4]),
    )
    .unwrap();
    texts.push(format!("{c:?}"));
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"{}\";",
        secrets[6]
    );
    let e = c
        .clone()
        .set("sasl.jaas.config", &jaas)
        .map(|_| ())
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));

    // An encrypted key with the wrong password: librdkafka refuses to create the clients.
    let mut wrong_key = c.clone();
    wrong_key
        .set("ssl.certificate.location", &pki.file("client.pem"))
        .unwrap();
    wrong_key
        .set("ssl.key.location", &pki.file("client-encrypted.key"))
        .unwrap();
    wrong_key.set("ssl.key.password", secrets[1]).unwrap();
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), wrong_key).unwrap();
    let e = streams.start().expect_err("the key cannot be decrypted");
    texts.push(format!("{e} {e:?} {streams:?}"));

    // The key itself, inline, with the wrong password.
    let key_pem = pki.read("client-encrypted.key");
    let mut inline = c.clone();
    inline
        .set("ssl.certificate.pem", &pki.read("client.pem"))
        .unwrap();
    inline.set("ssl.key.pem", &key_pem).unwrap();
    inline.set("ssl.key.password", secrets[1]).unwrap();
    texts.push(format!("{inline:?}"));
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), inline).unwrap();
    let e = streams.start().expect_err("the key cannot be decrypted");
    texts.push(format!("{e} {e:?}"));

    // A secret under a key librdkafka does not know.
    let mut misspelt = c.clone();
    misspelt.set("sasl.passwrod", secrets[5]).unwrap();
    let streams = KafkaStreams::new(topology(StoreKind::InMemory).unwrap(), misspelt).unwrap();
    let e = streams.start().expect_err("unknown property");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("sasl.passwrod"), "{shown}");
    texts.push(shown);

    texts.push(logs());
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_hidden(&secrets, &texts);
    assert_hidden(&key_body, &texts);
    assert!(
        texts.iter().any(|t| t.contains("[redacted]")),
        "Debug shows redacted secrets"
    );
}
