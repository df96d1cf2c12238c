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
