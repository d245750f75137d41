//! End-to-end: tenants created through GraphQL by a platform operator, a
//! grant given and taken on the command line (`hearth operator`), never a
//! tenant role: a tenant Admin is refused like anyone else.

use hearth_tests::{error_code, DemoServer};
use serde_json::json;

const CREATE: &str = "mutation($s: String!, $n: String!, $e: String!) { \
    createTenant(slug: $s, name: $n, adminEmail: $e) { \
    tenant { id slug name } adminId adminEmail oneTimePassword } }";

#[tokio::test]
async fn only_a_platform_operator_creates_tenants() {
    // Given the demo, its acme admin, and a read-only member of acme
    let server = DemoServer::start().await.unwrap();
    let config = hearth::app::Config {
        data_dir: server.data_dir.path().to_path_buf(),
        ..hearth::app::Config::default()
    };
    let admin = server.login("admin@acme.test").await.unwrap();
    let operator = server.login("readonly@acme.test").await.unwrap();
    let initech = json!({ "s": "initech", "n": "Initech", "e": "boss@initech.test" });

    // When a tenant Admin or an ungranted member asks, Then both are forbidden
    for client in [&admin, &operator] {
        let res = client.gql(CREATE, initech.clone()).await.unwrap();
        assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
    }
    // And so is nobody at all
    let res = server.client().gql(CREATE, initech.clone()).await.unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // When the read-only member is made a platform operator on the command line
    assert!(
        hearth::app::set_operator(&config, "readonly@acme.test", true)
            .await
            .unwrap()
    );
    assert!(
        !hearth::app::set_operator(&config, "readonly@acme.test", true)
            .await
            .unwrap(),
        "granting twice changes nothing"
    );
    assert!(hearth::app::set_operator(&config, "nobody@acme.test", true)
        .await
        .is_err());
    // Then they create a tenant, and see its Admin's one-time password once
    let data = operator.data(CREATE, initech.clone()).await.unwrap();
    let created = &data["createTenant"];
    assert_eq!(created["tenant"]["slug"], "initech");
    assert_eq!(created["tenant"]["name"], "Initech");
    assert_eq!(created["adminEmail"], "boss@initech.test");
    let password = created["oneTimePassword"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 20);
    // And their own role in acme is still read-only
    let me = operator.data("{ me { role } }", json!({})).await.unwrap();
    assert_eq!(me["me"]["role"], "READ_ONLY");

    // When the new Admin logs in with the one-time password
    let mut boss = server.client();
    let res = boss
        .gql(
            "mutation($p: String!) { login(email: \"boss@initech.test\", password: $p, tenantId: \"initech\") { token role tenant { slug } } }",
            json!({ "p": password }),
        )
        .await
        .unwrap();
    // Then they are Admin of initech alone, with the creation in its audit log
    assert_eq!(res["data"]["login"]["role"], "ADMIN", "{res}");
    boss.token = res["data"]["login"]["token"].as_str().map(str::to_owned);
    let users = boss
        .data(
            "{ users(first: 10) { totalCount edges { node { email } } } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(users["users"]["totalCount"], 1, "{users}");
    let log = boss
        .data(
            "{ auditLog(first: 10) { edges { node { action actorId detail } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let entry = &log["auditLog"]["edges"][0]["node"];
    assert_eq!(entry["action"], "create_tenant", "{log}");
    assert!(entry["detail"]
        .as_str()
        .unwrap()
        .contains("readonly@acme.test"));
    // And acme's audit log says nothing of it
    let acme_log = admin
        .data(
            "{ auditLog(first: 100) { edges { node { action } } } }",
            json!({}),
        )
        .await
        .unwrap();
    assert!(
        !acme_log.to_string().contains("create_tenant"),
        "{acme_log}"
    );

    // When the slug or the email is taken, or the slug malformed, Then nothing is created
    let cases = [
        (
            json!({ "s": "initech", "n": "Again", "e": "x@initech.test" }),
            "CONFLICT",
        ),
        (
            json!({ "s": "umbrella", "n": "Umbrella", "e": "admin@acme.test" }),
            "CONFLICT",
        ),
        (
            json!({ "s": "Not A Slug!", "n": "Bad", "e": "y@bad.test" }),
            "BAD_USER_INPUT",
        ),
    ];
    for (vars, code) in cases {
        let res = operator.gql(CREATE, vars).await.unwrap();
        assert_eq!(error_code(&res).as_deref(), Some(code), "{res}");
    }
    let res = boss
        .gql(
            "mutation { login(email: \"admin@acme.test\", password: \"hearth-demo\", tenantId: \"umbrella\") { token } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // When the grant is revoked, Then the next request is forbidden again
    assert!(
        hearth::app::set_operator(&config, "readonly@acme.test", false)
            .await
            .unwrap()
    );
    let res = operator
        .gql(
            CREATE,
            json!({ "s": "hooli", "n": "Hooli", "e": "gavin@hooli.test" }),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
}
