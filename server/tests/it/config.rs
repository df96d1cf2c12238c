//! Server configuration: defaults, errors naming the key.

use parc_server::config::ServerConfig;

#[test]
fn the_embedded_default_is_valid() {
    let cfg = ServerConfig::defaults();
    assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.mqtt.listen.to_string(), "127.0.0.1:1883");
}

#[test]
fn a_bad_address_names_its_key() {
    let err = ServerConfig::parse("[http]\nlisten = \"localhost\"\n").unwrap_err();
    assert!(err.to_string().contains("http.listen"), "{err}");
}

#[test]
fn an_unknown_section_is_an_error() {
    let err = ServerConfig::parse("[htp]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("htp"), "{err}");
}

#[test]
fn a_missing_config_file_is_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["--config", "/nonexistent/server.toml", "validate-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/server.toml"));
}

#[test]
fn the_shipped_mosquitto_acl_is_the_generated_one() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/mosquitto/parc.acl"
    ))
    .unwrap();
    assert_eq!(
        shipped,
        parc_server::cli::mosquitto_acl("parc-server"),
        "regenerate with: cargo run -p parc-server -- print-mosquitto-acl > packaging/mosquitto/parc.acl"
    );
}

#[test]
fn config_errors_name_the_key() {
    for (toml, key) in [
        ("[mqtt]\nurl = \"http://x\"", "mqtt.url"),
        ("[database]\nurl = \"mysql://x\"", "database.url"),
        ("[mqtt]\nshared_group = \"a/b\"", "mqtt.shared_group"),
        (
            "[ingest]\nbatch_max_messages = 0",
            "ingest.batch_max_messages",
        ),
        ("[retention]\nraw_days = 0", "retention.hourly_days"),
    ] {
        let err = parc_server::config::ServerConfig::parse(toml).unwrap_err();
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
}

fn run_with_env(envs: &[(&str, String)]) -> (bool, String) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .arg("run")
        .env("PARC_SERVER_STORAGE__DATA_DIR", data.path())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_taken_port_fails_with_the_key_to_change() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = run_with_env(&[
        ("PARC_SERVER_HTTP__LISTEN", "127.0.0.1:0".into()),
        ("PARC_SERVER_MQTT__LISTEN", addr.clone()),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&addr) && err.contains("PARC_SERVER_MQTT__LISTEN"),
        "{err}"
    );
    let (ok, err) = run_with_env(&[("PARC_SERVER_HTTP__LISTEN", addr.clone())]);
    assert!(!ok);
    assert!(
        err.contains(&addr) && err.contains("PARC_SERVER_HTTP__LISTEN"),
        "{err}"
    );
}

#[test]
fn the_shipped_server_config_is_valid_and_has_every_default_section() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/deb/parc-server/server.toml"
    );
    let shipped = parc_server::config::ServerConfig::load(Some(std::path::Path::new(path)))
        .expect("the packaged /etc/parc/server.toml is valid");
    assert_eq!(shipped, parc_server::config::ServerConfig::defaults());
}
