//! Browser sessions: `/c/login` sets the `sid` cookie and hands out the CSRF
//! token, cookie calls that change state need it, `/c/log_out` ends it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;
use crate::users::{create_user, message, send, PW};

async fn login(site: &Site, principal: &str, password: &str) -> reqwest::Response {
    site.http
        .post(format!("{}/c/login", site.core))
        .form(&[("principal", principal), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// (sid, csrf) from a successful login.
fn session_of(r: &reqwest::Response) -> (String, String) {
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"HttpOnly"), "{cookie}");
    assert!(attrs.contains(&"Path=/"), "{cookie}");
    assert!(attrs.contains(&"SameSite=Lax"), "{cookie}");
    let sid = attrs[0]
        .strip_prefix("sid=")
        .expect("sid cookie")
        .to_owned();
    assert!(sid.len() >= 32, "{sid}");
    let csrf = r.headers()["x-harbor-csrf-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csrf.len() >= 32);
    (sid, csrf)
}

#[tokio::test]
async fn login_csrf_and_logout() {
    let site = Site::start().await;
    let dave = create_user(&site, "dave").await;

    // Wrong credentials, unknown users, missing fields.
    let r = login(&site, "dave", "Wrong1234").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(login(&site, "nobody", PW).await.status(), 401);
    let r = site
        .http
        .post(format!("{}/c/login", site.core))
        .form(&[("principal", "dave")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = site
        .http
        .post(format!("{}/c/login", site.core))
        .json(&json!({"principal": "dave", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the login is a form, not JSON");

    let r = login(&site, "dave", PW).await;
    assert_eq!(r.status(), 200);
    let (sid, csrf) = session_of(&r);

    // The session lives in Redis under the prefix, with the timeout.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}session:{sid}", site.redis.0);
    let raw: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(stored["user_id"], dave);
    assert_eq!(stored["csrf"], csrf.as_str());
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 1800, "{ttl}");

    let cookie = format!("sid={sid}");
    let with_cookie = |m: Method, path: &str| {
        site.http
            .request(m, site.api(path))
            .header("cookie", cookie.as_str())
    };

    // Cookie calls are authenticated and tell the client its CSRF token.
    let r = with_cookie(Method::GET, "/users/current")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-harbor-csrf-token"], csrf.as_str());
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["username"],
        "dave"
    );

    // State changes need the token.
    let path = format!("/users/{dave}");
    let (s, b) = send(with_cookie(Method::PUT, &path).json(&json!({"comment": "no token"}))).await;
    assert_eq!(s, 403, "{b}");
    assert!(message(&b).contains("CSRF"), "{b}");
    let (s, _) = send(
        with_cookie(Method::PUT, &path)
            .header("x-harbor-csrf-token", "forged")
            .json(&json!({"comment": "bad token"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        with_cookie(Method::PUT, &path)
            .header("x-harbor-csrf-token", csrf.as_str())
            .json(&json!({"comment": "with token"})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, u) = send(site.admin(Method::GET, &path)).await;
    assert_eq!(u["comment"], "with token");

    // Basic credentials take precedence and get no CSRF token.
    let r = site
        .admin(Method::GET, "/users/current")
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["username"],
        "admin"
    );
    let r = site
        .admin(Method::GET, "/users/current")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-harbor-csrf-token").is_none());

    // Logging out ends the session and clears the cookie.
    let r = site
        .http
        .get(format!("{}/c/log_out", site.core))
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(r.headers().get("x-harbor-csrf-token").is_none());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    let r = with_cookie(Method::GET, "/users/current")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("x-harbor-csrf-token").is_none());
    // Logging out again is harmless.
    let r = site
        .http
        .get(format!("{}/c/log_out", site.core))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn login_by_email_and_new_session_each_time() {
    let site = Site::start().await;
    create_user(&site, "erin").await;
    let r = login(&site, "ERIN@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (first, _) = session_of(&r);
    // Signing in again with the old cookie replaces the session.
    let r = site
        .http
        .post(format!("{}/c/login", site.core))
        .header("cookie", format!("sid={first}"))
        .form(&[("principal", "erin"), ("password", PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (second, _) = session_of(&r);
    assert_ne!(first, second);
    let r = site
        .http
        .get(site.api("/users/current"))
        .header("cookie", format!("sid={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old session is gone");
    let r = site
        .http
        .get(site.api("/users/current"))
        .header("cookie", format!("sid={second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
