//! `hearth config` and start-up checks, through the real binary: the
//! effective configuration is printed with secrets masked, and a bad key
//! stops `hearth` before it serves, naming the key.

use std::process::Command;

fn hearth() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    // The test's own environment must not configure the binary.
    for (name, _) in std::env::vars() {
        if name.starts_with("HEARTH_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "error");
    command
}

#[test]
fn hearth_config_prints_the_effective_config_with_secrets_masked() -> anyhow::Result<()> {
    // Given a file, a secret in the environment and a flag
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, "[http]\ngraphiql = false\n[bus]\ncapacity = 128\n")?;
    let secret = "a-token-secret-that-is-long-enough-0123456789";
    // When `hearth config` runs
    let output = hearth()
        .args(["config", "--listen", "0.0.0.0:9999", "--config"])
        .arg(&file)
        .env("HEARTH_AUTH__TOKEN_SECRET", secret)
        .env("HEARTH_WS__MAX_SUBSCRIPTIONS", "7")
        .output()?;
    // Then it prints every source merged, as TOML, and never the secret
    let printed = String::from_utf8(output.stdout)?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let toml: toml::Value = toml::from_str(&printed)?;
    assert_eq!(toml["listen"].as_str(), Some("0.0.0.0:9999"));
    assert_eq!(toml["http"]["graphiql"].as_bool(), Some(false));
    assert_eq!(toml["bus"]["capacity"].as_integer(), Some(128));
    assert_eq!(toml["ws"]["max_subscriptions"].as_integer(), Some(7));
    assert_eq!(toml["auth"]["token_secret"].as_str(), Some("***"));
    assert!(!printed.contains(secret), "{printed}");
    Ok(())
}

#[test]
fn a_bad_key_stops_hearth_at_start_naming_the_key() -> anyhow::Result<()> {
    // Given an adapter that does not exist for the document store
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, "[stores.documents]\nadapter = \"mongodb\"\n")?;
    // When hearth is started with it
    let output = hearth()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&file)
        .output()?;
    // Then it fails before serving, and says which key is wrong
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stores.documents.adapter"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was opened");
    Ok(())
}

#[test]
fn hearth_migrate_applies_once_and_serve_without_migrating_refuses_a_schema_behind(
) -> anyhow::Result<()> {
    // Given an empty data directory and a config that does not migrate on start
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // When `serve` starts on it
    let refused = hearth()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("HEARTH_STORES__RELATIONAL__MIGRATE_ON_START", "false")
        .output()?;
    // Then it refuses, saying what to run
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("hearth migrate"), "{stderr}");

    // When `hearth migrate` runs twice
    let first = hearth()
        .args(["migrate", "--data-dir"])
        .arg(&data)
        .output()?;
    let second = hearth()
        .args(["migrate", "--data-dir"])
        .arg(&data)
        .output()?;
    // Then the first applies every migration, naming each, and the second nothing
    let first_out = String::from_utf8(first.stdout)?;
    let second_out = String::from_utf8(second.stdout)?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(second.status.success());
    let applied: Vec<&str> = first_out
        .lines()
        .filter(|l| l.starts_with("applied "))
        .collect();
    // (The first migration is recorded as `migration`, its file stem, in
    // existing databases: that name cannot change.)
    assert!(applied.len() >= 3, "{first_out}");
    assert_eq!(applied[1], "applied m20250601_000002_audit_coalescing");
    assert_eq!(
        second_out.trim(),
        "relational store: up to date, nothing applied"
    );
    Ok(())
}
