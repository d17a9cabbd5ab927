//! TLS on the listeners, with certificates made at test time (rcgen): real
//! TLS clients (reqwest on rustls, tonic over tokio-rustls), client
//! certificates for gRPC and admin, and certificates replaced on disk and
//! taken without a restart.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rta_engine::serve::listener::{TlsConfig, TlsFiles};
use rta_engine::serve::node::ServeOptions;
use rta_engine::serve::pb;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// A CA and a certificate it signed, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn make_pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["ops.example".to_string()]).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "ops client");
    let client = client.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: server.pem(),
        key_pem: key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn write_files(dir: &Path, pki: &Pki) {
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
    std::fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
}

fn tls_config(dir: &Path, mtls: bool) -> TlsConfig {
    let text = format!(
        "cert = {:?}\nkey = {:?}\n{}",
        dir.join("tls.crt"),
        dir.join("tls.key"),
        if mtls {
            format!("client_ca = {:?}\n", dir.join("ca.crt"))
        } else {
            String::new()
        }
    );
    toml::from_str(&text).unwrap()
}

/// A node whose listeners speak TLS with a fresh test CA's certificate
/// (asking gRPC and admin clients for one when `mtls`); the directory holds
/// the files while the node runs.
async fn tls_node(mtls: bool) -> (tempfile::TempDir, Pki, TestNode) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    write_files(dir.path(), &pki);
    let tls = Arc::new(TlsFiles::load(tls_config(dir.path(), mtls)).unwrap());
    let node = start_tls(tls).await;
    (dir, pki, node)
}

async fn start_tls(tls: Arc<TlsFiles>) -> TestNode {
    start_serving(ServeOptions {
        tls: Some(tls),
        ..test_options()
    })
    .await
}

fn client_config(pki: &Pki, with_client_cert: bool, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if with_client_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn https_client(pki: &Pki, with_client_cert: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(pki, with_client_cert, &[b"http/1.1"]))
        .build()
        .unwrap()
}

fn https(addr: std::net::SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

/// A gRPC client whose channel runs over TLS to `addr`.
async fn grpc_tls(
    pki: &Pki,
    addr: std::net::SocketAddr,
    with_client_cert: bool,
) -> Result<
    pb::rta_service_client::RtaServiceClient<tonic::transport::Channel>,
    tonic::transport::Error,
> {
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(pki, with_client_cert, &[b"h2"])));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_uri| {
                let connector = connector.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let name = ServerName::try_from("localhost").unwrap();
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await?;
    Ok(pb::rta_service_client::RtaServiceClient::new(channel))
}

fn decide_request() -> pb::DecideRequest {
    request(
        "tls",
        vec![device(
            pb::DeviceIdType::ImeiMd5,
            imei_md5("860000000000001"),
        )],
    )
}

#[tokio::test]
async fn every_listener_speaks_tls_with_a_certificate_made_at_test_time() {
    let (_dir, pki, node) = tls_node(false).await;
    let client = https_client(&pki, false);

    let media = client
        .get(https(node.running.http_addr, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 200);
    let admin = client
        .get(https(node.running.admin_addr, "/strategies"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let mut grpc = grpc_tls(&pki, node.running.grpc_addr, false).await.unwrap();
    let answer = grpc.decide(decide_request()).await.unwrap().into_inner();
    assert_eq!(answer.request_id, "tls");

    // plain HTTP to a TLS port gets no answer
    let plain = reqwest::get(node.http_url("/healthz")).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
}

#[tokio::test]
async fn with_a_client_ca_grpc_and_admin_need_a_client_certificate_and_media_does_not() {
    let (_dir, pki, node) = tls_node(true).await;

    let anonymous = https_client(&pki, false);
    let refused = anonymous
        .get(https(node.running.admin_addr, "/strategies"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let certified = https_client(&pki, true);
    let admin = certified
        .get(https(node.running.admin_addr, "/strategies"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    // media platforms present no certificate
    let media = anonymous
        .get(https(node.running.http_addr, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 200);

    let no_cert = match grpc_tls(&pki, node.running.grpc_addr, false).await {
        Ok(mut c) => c
            .decide(decide_request())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(
        no_cert.is_err(),
        "a gRPC call without a client certificate went through"
    );
    let mut grpc = grpc_tls(&pki, node.running.grpc_addr, true).await.unwrap();
    assert!(grpc.decide(decide_request()).await.is_ok());
}

#[tokio::test]
async fn certificates_replaced_on_disk_serve_without_a_restart_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_pki("first CA");
    write_files(dir.path(), &first);
    let tls = Arc::new(TlsFiles::load(tls_config(dir.path(), false)).unwrap());
    let node = start_tls(tls.clone()).await;
    let url = https(node.running.http_addr, "/healthz");
    assert_eq!(
        https_client(&first, false)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!tls.reload_if_changed().unwrap(), "nothing changed yet");

    let second = make_pki("second CA");
    write_files(dir.path(), &second);
    assert!(tls.reload_if_changed().unwrap());
    // new connections see the new certificate: the old CA no longer verifies it
    assert_eq!(
        https_client(&second, false)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(https_client(&first, false).get(&url).send().await.is_err());

    // a key that does not parse is refused and the second certificate keeps serving
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    assert!(tls.reload_if_changed().is_err());
    assert_eq!(
        https_client(&second, false)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_missing_certificate_file_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = TlsFiles::load(tls_config(dir.path(), false)).unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");
}
