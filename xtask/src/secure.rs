//! The secured test broker (`cargo xtask kafka start --secure`): TLS and SASL/SCRAM listeners with
//! ACLs, beside the plaintext listener the rest of the suite uses.
//!
//! At start: a CA, a broker certificate (for 127.0.0.1 and localhost) and a client certificate
//! (`CN=weir-job`, for mutual TLS) are made with `openssl`; the broker gets an `SSL` listener that
//! requires a client certificate and a `SASL_SSL` listener with SCRAM-SHA-256/512 and OAUTHBEARER
//! (unsecured tokens: a test broker), and `StandardAuthorizer`. Once it serves, `SecureSetup.java`
//! creates the SCRAM users and the ACLs through the broker's admin API (the plaintext listener,
//! whose anonymous principal is the super user: only the secure listeners are under ACLs).
//!
//! The ACLs, by resource-name prefix (a test names its topics and job after them):
//!
//! | principal | resource | operations |
//! |---|---|---|
//! | `weir-job` (SCRAM, OAUTHBEARER), `CN=weir-job` (TLS) | topics `secure-in-*` | READ, DESCRIBE |
//! | the same | topics `secure-out-*` | WRITE, DESCRIBE |
//! | the same | topics, groups, transactional ids `secure-job-*` | ALL |
//! | `weir-nocreate` (SCRAM) | as `weir-job`, but topics `secure-job-*`: READ, WRITE, DESCRIBE | no CREATE |
//!
//! Nothing else is granted. The addresses, file paths and passwords are written to
//! `.weir-kafka/secure/client.properties` for the tests.

use crate::kafka::free_port;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the tests need to reach the secure listeners.
pub struct Secure {
    pub dir: PathBuf,
    pub ssl_port: u16,
    pub sasl_port: u16,
    pub job_password: String,
    pub nocreate_password: String,
}

const JOB_USER: &str = "weir-job";
const NOCREATE_USER: &str = "weir-nocreate";

fn random_hex(bytes: usize) -> Result<String, String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| e.to_string())?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("could not run openssl: {e}; install it (apt-get install openssl)"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A key and a certificate signed by the CA in `dir` (`ca.pem`, `ca.key`), as `<name>.key`,
/// `<name>.pem`; `san` is the subjectAltName extension (empty: none).
fn signed_cert(dir: &Path, name: &str, subject: &str, san: &str) -> Result<(), String> {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    )?;
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        if san.is_empty() {
            "basicConstraints=CA:FALSE\n".to_string()
        } else {
            format!("basicConstraints=CA:FALSE\nsubjectAltName={san}\n")
        },
    )
    .map_err(|e| e.to_string())?;
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
            "30",
            "-extfile",
            &ext,
        ],
    )
}

/// Makes the certificates and passwords, and picks the two ports.
pub fn prepare(run_dir: &Path) -> Result<Secure, String> {
    let dir = run_dir.join("secure");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=weir test CA",
        ],
    )?;
    signed_cert(
        &dir,
        "broker",
        "/CN=localhost",
        "IP:127.0.0.1,DNS:localhost",
    )?;
    signed_cert(&dir, "client", &format!("/CN={JOB_USER}"), "")?;
    // Kafka's PEM key store: the private key (PKCS#8, unencrypted) and the certificate chain.
    let keystore = [
        std::fs::read_to_string(dir.join("broker.key")).map_err(|e| e.to_string())?,
        std::fs::read_to_string(dir.join("broker.pem")).map_err(|e| e.to_string())?,
        std::fs::read_to_string(dir.join("ca.pem")).map_err(|e| e.to_string())?,
    ]
    .concat();
    std::fs::write(dir.join("broker-keystore.pem"), keystore).map_err(|e| e.to_string())?;
    Ok(Secure {
        dir,
        ssl_port: free_port()?,
        sasl_port: free_port()?,
        job_password: random_hex(12)?,
        nocreate_password: random_hex(12)?,
    })
}

impl Secure {
    /// `listeners` and `advertised.listeners` entries beside PLAINTEXT and CONTROLLER.
    pub fn listeners(&self) -> String {
        format!(
            "SSL://127.0.0.1:{},SASL_SSL://127.0.0.1:{}",
            self.ssl_port, self.sasl_port
        )
    }

    /// The broker's security settings (the listeners themselves are added by the caller).
    pub fn server_properties(&self) -> String {
        let d = self.dir.display();
        let mut p = String::new();
        let _ = writeln!(p, "ssl.keystore.type=PEM");
        let _ = writeln!(p, "ssl.keystore.location={d}/broker-keystore.pem");
        let _ = writeln!(p, "ssl.truststore.type=PEM");
        let _ = writeln!(p, "ssl.truststore.location={d}/ca.pem");
        let _ = writeln!(p, "listener.name.ssl.ssl.client.auth=required");
        let _ = writeln!(
            p,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,OAUTHBEARER"
        );
        for mech in ["scram-sha-512", "scram-sha-256"] {
            let _ = writeln!(p, "listener.name.sasl_ssl.{mech}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;");
        }
        let _ = writeln!(p, "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;");
        let _ = writeln!(
            p,
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        );
        // The plaintext listener (the rest of the suite, the admin set-up) and the controller.
        let _ = writeln!(p, "super.users=User:ANONYMOUS");
        p
    }

    fn acls(&self) -> Vec<String> {
        let mut acls = Vec::new();
        let job = [format!("User:{JOB_USER}"), format!("User:CN={JOB_USER}")];
        let grant = |acls: &mut Vec<String>, who: &str, kind: &str, prefix: &str, ops: &[&str]| {
            for op in ops {
                acls.push(format!("{who}|{kind}|{prefix}|{op}"));
            }
        };
        for who in &job {
            grant(&mut acls, who, "TOPIC", "secure-in-", &["READ", "DESCRIBE"]);
            grant(
                &mut acls,
                who,
                "TOPIC",
                "secure-out-",
                &["WRITE", "DESCRIBE"],
            );
            for kind in ["TOPIC", "GROUP", "TRANSACTIONAL_ID"] {
                grant(&mut acls, who, kind, "secure-job-", &["ALL"]);
            }
        }
        let nocreate = format!("User:{NOCREATE_USER}");
        grant(
            &mut acls,
            &nocreate,
            "TOPIC",
            "secure-in-",
            &["READ", "DESCRIBE"],
        );
        grant(
            &mut acls,
            &nocreate,
            "TOPIC",
            "secure-out-",
            &["WRITE", "DESCRIBE"],
        );
        grant(
            &mut acls,
            &nocreate,
            "TOPIC",
            "secure-job-",
            &["READ", "WRITE", "DESCRIBE"],
        );
        for kind in ["GROUP", "TRANSACTIONAL_ID"] {
            grant(&mut acls, &nocreate, kind, "secure-job-", &["ALL"]);
        }
        acls
    }

    /// Creates the users and ACLs through the admin API of the plaintext listener, then writes
    /// what the tests need.
    pub fn set_up(&self, libs: &Path, plaintext: &str) -> Result<(), String> {
        let source = crate::workspace_root()
            .join("xtask")
            .join("kafka")
            .join("SecureSetup.java");
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg(&source)
            .arg(plaintext)
            .arg(format!("--scram={JOB_USER}"))
            .env("WEIR_SCRAM_PASSWORD_0", &self.job_password)
            .arg(format!("--scram={NOCREATE_USER}"))
            .env("WEIR_SCRAM_PASSWORD_1", &self.nocreate_password);
        for acl in self.acls() {
            cmd.arg(format!("--acl={acl}"));
        }
        let out = cmd
            .output()
            .map_err(|e| format!("could not run java: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "creating the SCRAM users and ACLs failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let d = self.dir.display();
        let info = format!(
            "# The secure listeners of the test broker (see xtask/src/secure.rs).\n\
             ssl_bootstrap=127.0.0.1:{}\n\
             sasl_bootstrap=127.0.0.1:{}\n\
             ca={d}/ca.pem\n\
             client_cert={d}/client.pem\n\
             client_key={d}/client.key\n\
             job_user={JOB_USER}\n\
             job_password={}\n\
             nocreate_user={NOCREATE_USER}\n\
             nocreate_password={}\n",
            self.ssl_port, self.sasl_port, self.job_password, self.nocreate_password
        );
        std::fs::write(self.dir.join("client.properties"), info).map_err(|e| e.to_string())
    }
}
