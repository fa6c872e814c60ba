//! `/service/token`: what each role, outsiders, anonymous callers, system
//! administrators and robots are granted, and the protocol's edges.

use reqwest::Method;
use serde_json::json;

use crate::support::*;
use crate::tenants::*;

const ROLES: [(&str, i32); 5] = [
    ("padmin", PROJECT_ADMIN),
    ("maint", MAINTAINER),
    ("dev", DEVELOPER),
    ("guest", GUEST),
    ("limited", LIMITED_GUEST),
];

/// The registry actions Harbor's matrix gives each role (`*` when all three).
fn expected(role: i32) -> Vec<&'static str> {
    match role {
        PROJECT_ADMIN | MAINTAINER => vec!["pull", "push", "delete", "*"],
        DEVELOPER => vec!["pull", "push"],
        _ => vec!["pull"],
    }
}

#[tokio::test]
async fn grants_follow_the_role_matrix_for_every_role() {
    let site = Site::start().await;
    project(&site, "priv", false).await;
    project(&site, "pub", true).await;
    for (u, role) in ROLES {
        user(&site, u).await;
        member(&site, "priv", u, role).await;
        member(&site, "pub", u, role).await;
    }
    user(&site, "outsider").await;

    for (u, role) in ROLES {
        let creds = Some((u, PASSWORD));
        for p in ["priv", "pub", "priv/nested/deeper"] {
            let scope = format!("repository:{p}/app:pull,push,delete,*");
            assert_eq!(
                granted(&site, creds, &scope).await,
                expected(role),
                "{u} in {p}"
            );
        }
        // One action at a time: granted exactly when the role allows it.
        for action in ["pull", "push", "delete"] {
            let got = granted(&site, creds, &format!("repository:priv/app:{action}")).await;
            let want: Vec<String> = expected(role)
                .into_iter()
                .filter(|a| *a == action)
                .map(str::to_owned)
                .collect();
            assert_eq!(got, want, "{u} {action}");
        }
        // `*` alone is answered with what is allowed, never more.
        let star = granted(&site, creds, "repository:priv/app:*").await;
        let want: Vec<&str> = if expected(role).contains(&"*") {
            vec!["*"]
        } else {
            expected(role)
        };
        assert_eq!(star, want, "{u} *");
        assert!(granted(&site, creds, "registry:catalog:*").await.is_empty());
    }

    let outsider = Some(("outsider", PASSWORD));
    let all = "pull,push,delete,*";
    assert!(
        granted(&site, outsider, &format!("repository:priv/app:{all}"))
            .await
            .is_empty()
    );
    assert_eq!(
        granted(&site, outsider, &format!("repository:pub/app:{all}")).await,
        ["pull"]
    );
    assert!(granted(&site, None, &format!("repository:priv/app:{all}"))
        .await
        .is_empty());
    assert_eq!(
        granted(&site, None, &format!("repository:pub/app:{all}")).await,
        ["pull"]
    );
    // A name without a project, or a project that does not exist: nothing
    // for anyone but a system administrator (whose push the registry then
    // refuses with a message naming the project).
    assert!(
        granted(&site, Some(("dev", PASSWORD)), "repository:app:pull")
            .await
            .is_empty()
    );
    assert!(granted(&site, outsider, "repository:nope/app:pull,push")
        .await
        .is_empty());
    let admin = Some(("admin", ADMIN_PASSWORD));
    assert_eq!(
        granted(&site, admin, "repository:nope/app:pull,push").await,
        ["pull", "push"]
    );
    assert_eq!(
        granted(&site, admin, &format!("repository:priv/app:{all}")).await,
        ["pull", "push", "delete", "*"]
    );
    assert_eq!(granted(&site, admin, "registry:catalog:*").await, ["*"]);
    assert!(granted(&site, admin, "registry:other:*").await.is_empty());
    assert!(granted(&site, admin, "plugin:x:pull").await.is_empty());
}

#[tokio::test]
async fn protocol_edges() {
    let site = Site::start().await;
    project(&site, "priv", false).await;
    project(&site, "pub", true).await;
    user(&site, "dev").await;
    member(&site, "priv", "dev", DEVELOPER).await;
    let dev = Some(("dev", PASSWORD));

    // Several scopes: repeated, and space-separated in one parameter.
    let (status, access) = token(
        &site,
        dev,
        &[
            "repository:priv/app:pull,push repository:pub/x:push,pull",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        access,
        [
            (
                "repository".to_owned(),
                "priv/app".to_owned(),
                vec!["pull".to_owned(), "push".to_owned()]
            ),
            (
                "repository".to_owned(),
                "pub/x".to_owned(),
                vec!["pull".to_owned()]
            ),
            ("registry".to_owned(), "catalog".to_owned(), vec![]),
        ]
    );
    // `docker login`: no scope, real credentials → an empty token.
    let (status, access) = token(&site, dev, &[]).await;
    assert_eq!((status, access.len()), (200, 0));
    // Anonymous without a scope, or wrong credentials: 401.
    assert_eq!(token(&site, None, &[]).await.0, 401);
    assert_eq!(
        token(&site, Some(("dev", "wrong")), &["repository:pub/x:pull"])
            .await
            .0,
        401
    );
    assert_eq!(
        token(&site, Some(("ghost", PASSWORD)), &["repository:pub/x:pull"])
            .await
            .0,
        401
    );
    // Malformed scope, wrong service.
    assert_eq!(token(&site, dev, &["repository"]).await.0, 400);
    let r = site
        .http
        .get(format!(
            "{}/service/token?service=other&scope=repository:pub/x:pull",
            site.core
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The subject is the user; anonymous tokens have none.
    let r = site
        .http
        .get(format!(
            "{}/service/token?service=harbor-registry&scope=repository:pub/x:pull",
            site.core
        ))
        .basic_auth("dev", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let pem = std::fs::read(site.dir.path().join("token.crt")).unwrap();
    let v = wharf_token::Verifier::new(&pem, "harbor-token-issuer", "harbor-registry").unwrap();
    let claims = v.verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, "dev");
    assert!(claims.exp - claims.iat >= 60);
}

#[tokio::test]
async fn robots_are_granted_their_permission_list() {
    let site = Site::start().await;
    project(&site, "priv", false).await;
    project(&site, "other", false).await;
    project(&site, "pub", true).await;
    let (status, robot) = get_json(site.admin(Method::POST, "/robots").json(&json!({
        "name": "ci", "level": "project", "duration": -1,
        "permissions": [{"kind": "project", "namespace": "priv",
                         "access": [{"resource": "repository", "action": "push"}]}],
    })))
    .await;
    assert_eq!(status, 201, "{robot}");
    let name = robot["name"].as_str().unwrap().to_owned();
    let secret = robot["secret"].as_str().unwrap().to_owned();
    let creds = Some((name.as_str(), secret.as_str()));
    // Push implies pull for a project robot, as in Harbor; no delete.
    assert_eq!(
        granted(&site, creds, "repository:priv/app:pull,push,delete").await,
        ["pull", "push"]
    );
    assert!(granted(&site, creds, "repository:other/app:pull,push")
        .await
        .is_empty());
    assert_eq!(
        granted(&site, creds, "repository:pub/app:pull,push").await,
        ["pull"]
    );
    assert!(granted(&site, creds, "registry:catalog:*").await.is_empty());
    assert_eq!(
        token(
            &site,
            Some((name.as_str(), "wrong")),
            &["repository:priv/app:pull"]
        )
        .await
        .0,
        401
    );

    // The robot pushes and pulls with skopeo through the token flow.
    let dir = tempfile::tempdir().unwrap();
    image(dir.path(), "v1", 1, 2048);
    let c = format!("{name}:{secret}");
    let (ok, out) = push(&site, dir.path(), "v1", "priv/app:v1", Some(&c)).await;
    assert!(ok, "{out}");
    let (ok, out) = pull(&site, "priv/app:v1", Some(&c)).await;
    assert!(ok, "{out}");
    let (ok, _) = push(&site, dir.path(), "v1", "other/app:v1", Some(&c)).await;
    assert!(!ok);
}
