//! TLS for the integration tests: certificates made with the `openssl` command, a TLS-terminating proxy
//! (stunnel) in front of a tansu broker that advertises the proxy's port, so that every client connection goes
//! through TLS, and plain rdkafka clients configured like the application under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::{free_loopback_port, futures_block_on, tansu_binary};

/// A small public-key infrastructure for one test: a CA, a server certificate for `127.0.0.1` and `localhost`
/// signed by it, a client certificate signed by it (for mutual TLS), the client key also encrypted with
/// [`Pki::KEY_PASSWORD`], and a second, unrelated CA (to test a client trusting the wrong one).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// The password of `client-encrypted.key`.
    pub const KEY_PASSWORD: &'static str = "Key-Pa55word-7f3a9c";

    /// Generates every file with the `openssl` command, or panics saying what is missing.
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("the openssl command (apt-get install -y openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (name, cn) in [("ca", "streams-rs test CA"), ("other-ca", "unrelated CA")] {
            let subject = format!("/CN={cn}");
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &pem,
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args);
        }
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        std::fs::write(
            d.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, cn) in [("server", "localhost"), ("client", "streams-app")] {
            let subject = format!("/CN={cn}");
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let mut args = vec!["req", "-nodes"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(&args);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ]);
        }
        let pass = format!("pass:{}", Self::KEY_PASSWORD);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            "client.key",
            "-out",
            "client-encrypted.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            &pass,
        ]);
        Pki { dir }
    }

    /// The path of one of the generated files: `ca.pem`, `other-ca.pem`, `server.pem`, `server.key`,
    /// `client.pem`, `client.key`, `client-encrypted.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as a string, for configurations.
    pub fn file(&self, name: &str) -> String {
        self.path(name).to_str().expect("a UTF-8 path").to_string()
    }

    /// The contents of a generated file.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("a generated file")
    }
}

/// Where the TLS proxy is: stunnel (Debian's `stunnel4` package) on the PATH.
pub fn stunnel_binary() -> Option<PathBuf> {
    std::env::var("PATH").ok().and_then(|p| {
        p.split(':')
            .flat_map(|d| [Path::new(d).join("stunnel4"), Path::new(d).join("stunnel")])
            .find(|p| p.exists())
    })
}

/// How the broker behind the proxy is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecureBrokerOptions {
    /// The proxy requires a client certificate signed by the test CA (mutual TLS).
    pub require_client_certificate: bool,
    /// tansu requires SASL authentication (`--authentication`).
    pub sasl: bool,
}

/// tansu behind a TLS-terminating stunnel: tansu listens on one loopback port in plain text and advertises
/// the proxy's port, so that clients reach every broker through TLS. Both processes are killed on drop.
pub struct SecureBroker {
    tansu: Child,
    proxy: Child,
    bootstrap: String,
    proxy_log: PathBuf,
    _config_dir: tempfile::TempDir,
}

fn wait_listening(addr: &str, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SecureBroker {
    /// Starts tansu and the proxy, or panics saying how to install what is missing.
    pub fn start(pki: &Pki, options: SecureBrokerOptions) -> SecureBroker {
        let tansu = tansu_binary().expect(
            "tansu is not installed: run `bash scripts/test.sh` (it installs it), or set TANSU_BIN to a tansu binary",
        );
        let stunnel = stunnel_binary().expect(
            "stunnel is not installed: run `bash scripts/test.sh` (it installs it), or apt-get install -y stunnel4",
        );
        let (plain, tls) = (free_loopback_port(), free_loopback_port());
        let config_dir = tempfile::tempdir().unwrap();
        let proxy_log = config_dir.path().join("stunnel.log");
        let mut conf = format!(
            "foreground = yes\npid =\noutput = {}\ndebug = notice\n\n[kafka]\naccept = 127.0.0.1:{tls}\n\
             connect = 127.0.0.1:{plain}\ncert = {}\nkey = {}\n",
            proxy_log.display(),
            pki.file("server.pem"),
            pki.file("server.key"),
        );
        if options.require_client_certificate {
            conf.push_str(&format!("verify = 2\nCAfile = {}\n", pki.file("ca.pem")));
        }
        let conf_path = config_dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let listener = format!("tcp://127.0.0.1:{plain}");
        let advertised = format!("tcp://127.0.0.1:{tls}");
        let mut args = vec![
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
        ];
        if options.sasl {
            args.push("--authentication");
        }
        let tansu = Command::new(tansu)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let proxy = Command::new(stunnel)
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunnel");
        let broker = SecureBroker {
            tansu,
            proxy,
            bootstrap: format!("127.0.0.1:{tls}"),
            proxy_log,
            _config_dir: config_dir,
        };
        wait_listening(&format!("127.0.0.1:{plain}"), "tansu");
        wait_listening(&broker.bootstrap, "stunnel");
        broker
    }

    /// The proxy's address: the only one clients are given, and the one tansu advertises.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// What stunnel logged (handshake failures, for diagnosis).
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(&self.proxy_log).unwrap_or_default()
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        for child in [&mut self.proxy, &mut self.tansu] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain rdkafka client configuration: `bootstrap.servers` and the given security properties.
pub fn client_config(bootstrap: &str, props: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        c.set(*k, *v);
    }
    c
}

/// Creates a topic (replication 1) through a client with `props`.
pub fn create_topic(
    bootstrap: &str,
    props: &[(&str, &str)],
    topic: &str,
    partitions: i32,
    compacted: bool,
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = client_config(bootstrap, props).create().expect("admin");
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    if compacted {
        t = t.set("cleanup.policy", "compact");
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = futures_block_on(admin.create_topics([&t], &opts));
    r.expect("create topics").into_iter().for_each(|r| {
        r.expect("topic created");
    });
}

/// Produces records (key, value; `None` value = tombstone) through a client with `props`, waiting for every
/// delivery.
pub fn produce(
    bootstrap: &str,
    props: &[(&str, &str)],
    topic: &str,
    records: &[(Vec<u8>, Option<Vec<u8>>)],
) {
    let producer: BaseProducer = client_config(bootstrap, props)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (k, v) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).key(k.as_slice());
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        let mut r = r;
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Whether a client with `props` can read the cluster's metadata within `timeout`.
pub fn can_connect(bootstrap: &str, props: &[(&str, &str)], timeout: Duration) -> bool {
    let consumer: BaseConsumer = client_config(bootstrap, props).create().expect("consumer");
    consumer.fetch_metadata(None, timeout).is_ok()
}
