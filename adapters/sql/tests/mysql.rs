//! The directory contract against MySQL/MariaDB, when `HEARTH_TEST_MYSQL_URL`
//! names a server (e.g. `eval "$(bash .ci/mariadb.sh)"`). Each run creates a
//! uniquely named database next to the one in the URL and drops it afterwards,
//! so runs never see each other's rows; the user needs CREATE and DROP there.

use std::io::Write;

use hearth_domain::contract::directory::directory_contract;
use hearth_sql::SqlDirectory;
use sea_orm::{ConnectionTrait, Database};

const VAR: &str = "HEARTH_TEST_MYSQL_URL";

/// `mysql://u:p@h:3306/db?x` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

#[tokio::test]
async fn mysql_passes_the_directory_contract() {
    let Ok(url) = std::env::var(VAR) else {
        // In CI the server is part of the run: a missing one is a failure,
        // never a silent pass.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {VAR} is not set: .ci/run must start MariaDB (.ci/mariadb.sh)"
        );
        // Straight to stderr: libtest captures `println!` of passing tests,
        // and a skipped integration test must be visible in CI logs.
        let _ = writeln!(
            std::io::stderr(),
            "mysql_passes_the_directory_contract did NOT run: {VAR} is not set (see .ci/mariadb.sh)"
        );
        return;
    };
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(url.as_str())
        .await
        .expect("connect to HEARTH_TEST_MYSQL_URL");
    admin
        .execute_unprepared(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .expect("create a fresh test database (the user needs CREATE on hearth_test%)");

    // A case-insensitive database default on purpose: the migrations must
    // not depend on how the server was set up.
    let store = SqlDirectory::connect(&with_database(&url, &name))
        .await
        .expect("MySQL connects and migrates");
    let outcome = tokio::spawn(async move { directory_contract(&store).await }).await;

    admin
        .execute_unprepared(&format!("DROP DATABASE `{name}`"))
        .await
        .expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
    let _ = writeln!(
        std::io::stderr(),
        "mysql_passes_the_directory_contract ran against database {name}"
    );
}

#[test]
fn database_is_replaced_in_urls() {
    assert_eq!(
        with_database("mysql://u:p@h:3306/hearth", "x"),
        "mysql://u:p@h:3306/x"
    );
    assert_eq!(
        with_database("mysql://u:p@h/hearth?ssl-mode=disabled", "x"),
        "mysql://u:p@h/x?ssl-mode=disabled"
    );
    assert_eq!(
        with_database("mysql://u:p@h:3306", "x"),
        "mysql://u:p@h:3306/x"
    );
}

#[tokio::test]
async fn mysql_passes_the_alarms_contract() {
    let Ok(url) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {VAR} is not set: .ci/run must start MariaDB (.ci/mariadb.sh)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "mysql_passes_the_alarms_contract did NOT run: {VAR} is not set (see .ci/mariadb.sh)"
        );
        return;
    };
    let name = format!("hearth_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(url.as_str())
        .await
        .expect("connect to HEARTH_TEST_MYSQL_URL");
    admin
        .execute_unprepared(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .expect("create a fresh test database (the user needs CREATE on hearth_test%)");
    let store = SqlDirectory::connect(&with_database(&url, &name))
        .await
        .expect("MySQL connects and migrates");
    let outcome =
        tokio::spawn(async move { hearth_domain::contract::alarms::alarms_contract(&store).await })
            .await;
    admin
        .execute_unprepared(&format!("DROP DATABASE `{name}`"))
        .await
        .expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
    let _ = writeln!(
        std::io::stderr(),
        "mysql_passes_the_alarms_contract ran against database {name}"
    );
}
