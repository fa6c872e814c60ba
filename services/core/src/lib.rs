//! `wharf-core`: the Harbor-compatible REST API under `/api/v2.0`, identity,
//! projects and roles, and the Docker token service at `/service/token`.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
mod handlers;
pub mod meta;
pub mod outbox;
pub mod paging;
pub mod password;
pub mod rbac;
pub mod registry;
mod routes;

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;

pub struct App {
    pub config: Config,
    pub db: PgPool,
    pub redis: redis::aio::ConnectionManager,
    /// Where jobs go (the same Redis, core's key prefix).
    pub queue: wharf_jobs::Queue,
    pub signer: wharf_token::Signer,
    pub credentials: auth::CredentialCache,
    pub http: reqwest::Client,
}

pub type AppState = Arc<App>;

impl App {
    pub async fn new(config: Config) -> anyhow::Result<AppState> {
        let db =
            wharf_catalog::connect(&config.database.url.0, config.database.max_connections).await?;
        let client = redis::Client::open(config.redis.url.0.as_str()).context("redis.url")?;
        let redis = redis::aio::ConnectionManager::new(client.clone())
            .await
            .context("connecting to Redis")?;
        let queue = wharf_jobs::Queue::new(client, redis.clone(), &config.redis.prefix);
        let key = std::fs::read(&config.token.private_key).with_context(|| {
            format!(
                "reading token.private_key {}",
                config.token.private_key.display()
            )
        })?;
        let signer =
            wharf_token::Signer::new(&key, &config.token.issuer, config.token.lifetime_secs)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Arc::new(App {
            config,
            db,
            redis,
            queue,
            signer,
            credentials: auth::CredentialCache::default(),
            http,
        }))
    }
}

/// Creates `admin` with the configured initial password when there is no
/// admin yet; a later start never resets it.
pub async fn bootstrap_admin(app: &App) -> anyhow::Result<()> {
    if wharf_catalog::users::by_name(&app.db, "admin")
        .await?
        .is_some()
    {
        return Ok(());
    }
    let hash = password::hash(&app.config.admin_initial_password.0)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = wharf_catalog::users::create(
        &app.db,
        &wharf_catalog::users::NewUser {
            username: "admin",
            email: "admin@example.com",
            realname: "system admin",
            comment: "admin user",
            password_hash: &hash,
            sysadmin: true,
        },
    )
    .await?;
    if created.is_some() {
        tracing::info!("created the admin user with the configured initial password");
    }
    Ok(())
}

/// Harbor's first-start tenancy: the public `library` project owned by
/// `admin`, created once (deleting it later sticks), and project enforcement
/// in the registry's write path (a push needs an existing project).
pub async fn bootstrap_projects(app: &App) -> anyhow::Result<()> {
    wharf_catalog::policy::enforce_projects(&app.db).await?;
    let Some(admin) = wharf_catalog::users::by_name(&app.db, "admin").await? else {
        return Ok(());
    };
    let mut tx = app.db.begin().await?;
    if !wharf_catalog::projects::first_start(&mut tx, "bootstrap_library").await? {
        return Ok(());
    }
    let metadata = std::collections::BTreeMap::from([("public".to_owned(), "true".to_owned())]);
    let created = wharf_catalog::projects::create(
        &mut tx,
        &wharf_catalog::projects::NewProject {
            name: "library",
            owner_id: admin.user_id,
            metadata: &metadata,
            storage_limit: wharf_catalog::quotas::UNLIMITED,
        },
    )
    .await?;
    tx.commit().await?;
    if created.is_some() {
        tracing::info!("created the public project library");
    }
    Ok(())
}

/// Serves until `shutdown` resolves. Tests call this with a listener on port 0.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::new(config).await?;
    bootstrap_admin(&app).await?;
    bootstrap_projects(&app).await?;
    tokio::spawn(outbox::run(app.clone()));
    axum::serve(listener, routes::router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
