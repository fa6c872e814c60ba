//! Liveness and system information.

use crate::support::*;

#[tokio::test]
async fn ping_and_systeminfo() {
    let site = Site::start().await;
    let r = site.http.get(site.api("/ping")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Pong");
    let anon: serde_json::Value = site
        .http
        .get(site.api("/systeminfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(anon.get("registry_url").is_none());
    let admin: serde_json::Value = site
        .admin(reqwest::Method::GET, "/systeminfo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["external_url"], site.core);
    let r = site
        .as_user(reqwest::Method::GET, "/systeminfo", "admin", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["errors"][0]["code"],
        "UNAUTHORIZED"
    );
}
