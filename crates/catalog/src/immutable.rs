//! Tag immutability rules (Harbor's `immutabletagrules`): their storage and
//! the matching the write path applies.

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgExecutor};

use crate::doublestar::{InvalidPattern, Pattern};
use crate::Result;

/// Harbor allows at most this many immutability rules per project.
pub const MAX_RULES_PER_PROJECT: i64 = 15;

/// One selector as Harbor writes it: `{"kind":"doublestar","decoration":"matches","pattern":"v*"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    pub kind: String,
    pub decoration: String,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extras: String,
}

/// The part of a rule that decides what it protects, kept as the `rule` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleBody {
    #[serde(default = "default_action")]
    pub action: String,
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub tag_selectors: Vec<Selector>,
    pub scope_selectors: std::collections::BTreeMap<String, Vec<Selector>>,
}

fn default_action() -> String {
    "immutable".into()
}

fn default_template() -> String {
    "immutable_template".into()
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: i64,
    pub project_id: i64,
    pub disabled: bool,
    pub priority: i32,
    pub rule: RuleBody,
}

#[derive(FromRow)]
struct RuleRow {
    id: i64,
    project_id: i64,
    disabled: bool,
    priority: i32,
    rule: String,
}

impl RuleRow {
    /// A stored body that no longer parses protects nothing, rather than
    /// failing every push to the project; it is logged.
    fn into_rule(self) -> Option<Rule> {
        match serde_json::from_str(&self.rule) {
            Ok(rule) => Some(Rule {
                id: self.id,
                project_id: self.project_id,
                disabled: self.disabled,
                priority: self.priority,
                rule,
            }),
            Err(e) => {
                tracing::error!(rule.id = self.id, error = %e, "unreadable immutability rule");
                None
            }
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("rule parts serialise")
}

fn selector_matches(s: &Selector, value: &str) -> bool {
    let hit = crate::doublestar::matches(&s.pattern, value);
    match s.decoration.as_str() {
        "excludes" | "repoExcludes" => !hit,
        _ => hit,
    }
}

impl RuleBody {
    /// Checks the selectors: kinds, decorations and patterns, with a message
    /// that names the part at fault.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.action != "immutable" {
            return Err(format!(
                "action must be \"immutable\", not {:?}",
                self.action
            ));
        }
        if self.tag_selectors.is_empty() {
            return Err("tag_selectors must hold one selector".into());
        }
        let check = |s: &Selector, what: &str, decorations: &[&str]| {
            if s.kind != "doublestar" {
                return Err(format!(
                    "{what}: kind must be \"doublestar\", not {:?}",
                    s.kind
                ));
            }
            if !decorations.contains(&s.decoration.as_str()) {
                return Err(format!(
                    "{what}: decoration must be one of {}, not {:?}",
                    decorations.join(", "),
                    s.decoration
                ));
            }
            Pattern::parse(&s.pattern)
                .map(|_| ())
                .map_err(|InvalidPattern(m)| format!("{what}: pattern {:?}: {m}", s.pattern))
        };
        for s in &self.tag_selectors {
            check(s, "tag_selectors", &["matches", "excludes"])?;
        }
        let repos = self
            .scope_selectors
            .get("repository")
            .filter(|v| !v.is_empty())
            .ok_or("scope_selectors must hold a \"repository\" selector")?;
        if let Some(other) = self.scope_selectors.keys().find(|k| *k != "repository") {
            return Err(format!(
                "scope_selectors: only \"repository\" is supported, not {other:?}"
            ));
        }
        for s in repos {
            check(
                s,
                "scope_selectors.repository",
                &["repoMatches", "repoExcludes", "matches", "excludes"],
            )?;
        }
        Ok(())
    }

    /// Whether the rule protects `tag` in `repository`, the repository name
    /// without its project (as Harbor matches it: `app` for `proj/app`).
    pub fn protects(&self, repository: &str, tag: &str) -> bool {
        let repos = self
            .scope_selectors
            .get("repository")
            .map(Vec::as_slice)
            .unwrap_or_default();
        !repos.is_empty()
            && repos.iter().all(|s| selector_matches(s, repository))
            && !self.tag_selectors.is_empty()
            && self.tag_selectors.iter().all(|s| selector_matches(s, tag))
    }

    /// The rule in words, for messages: `tags matching "v*" in repositories matching "**"`.
    pub fn describe(&self) -> String {
        let words = |ss: &[Selector]| {
            ss.iter()
                .map(|s| {
                    let verb = match s.decoration.as_str() {
                        "excludes" | "repoExcludes" => "not matching",
                        _ => "matching",
                    };
                    format!("{verb} {:?}", s.pattern)
                })
                .collect::<Vec<_>>()
                .join(" and ")
        };
        let repos = self
            .scope_selectors
            .get("repository")
            .map(Vec::as_slice)
            .unwrap_or_default();
        format!(
            "tags {} in repositories {}",
            words(&self.tag_selectors),
            words(repos)
        )
    }
}

const COLUMNS: &str = "id, project_id, disabled, priority, rule::text AS rule";

pub async fn list(
    db: impl PgExecutor<'_>,
    project_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<Rule>> {
    let rows: Vec<RuleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM immutable_rule WHERE project_id = $1 ORDER BY priority, id LIMIT $2 OFFSET $3"
    ))
    .bind(project_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().filter_map(RuleRow::into_rule).collect())
}

pub async fn count(db: impl PgExecutor<'_>, project_id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM immutable_rule WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(db)
            .await?,
    )
}

pub async fn get(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<Option<Rule>> {
    let row: Option<RuleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM immutable_rule WHERE project_id = $1 AND id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(RuleRow::into_rule))
}

/// The enabled rules of a project, in the order they apply.
pub async fn enabled(db: impl PgExecutor<'_>, project_id: i64) -> Result<Vec<Rule>> {
    let rows: Vec<RuleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM immutable_rule WHERE project_id = $1 AND NOT disabled ORDER BY priority, id"
    ))
    .bind(project_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().filter_map(RuleRow::into_rule).collect())
}

/// Locks the project's rule set against concurrent edits (for the rule
/// limit and duplicate checks), by locking the project row.
pub async fn lock_project(tx: &mut sqlx::PgConnection, project_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT project_id FROM project WHERE project_id = $1 FOR NO KEY UPDATE",
    )
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?
    .is_some())
}

/// Another rule of the project with the same selectors, if any.
pub async fn duplicate_of(
    db: impl PgExecutor<'_>,
    project_id: i64,
    body: &RuleBody,
    except: Option<i64>,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM immutable_rule WHERE project_id = $1 AND id <> coalesce($4, 0)
            AND rule -> 'tag_selectors' = $2::jsonb AND rule -> 'scope_selectors' = $3::jsonb ORDER BY id LIMIT 1",
    )
    .bind(project_id)
    .bind(to_json(&body.tag_selectors))
    .bind(to_json(&body.scope_selectors))
    .bind(except)
    .fetch_optional(db)
    .await?)
}

pub async fn create(
    db: impl PgExecutor<'_>,
    project_id: i64,
    disabled: bool,
    priority: i32,
    body: &RuleBody,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO immutable_rule (project_id, disabled, priority, rule) VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
    )
    .bind(project_id)
    .bind(disabled)
    .bind(priority)
    .bind(to_json(body))
    .fetch_one(db)
    .await?)
}

pub async fn update(
    db: impl PgExecutor<'_>,
    project_id: i64,
    id: i64,
    disabled: bool,
    priority: i32,
    body: &RuleBody,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE immutable_rule SET disabled = $3, priority = $4, rule = $5::jsonb WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(id)
    .bind(disabled)
    .bind(priority)
    .bind(to_json(body))
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn delete(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM immutable_rule WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(db)
            .await?
            .rows_affected()
            == 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tag: &str, tag_dec: &str, repo: &str, repo_dec: &str) -> RuleBody {
        serde_json::from_value(serde_json::json!({
            "tag_selectors": [{"kind": "doublestar", "decoration": tag_dec, "pattern": tag}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo_dec, "pattern": repo}]},
        }))
        .unwrap()
    }

    #[test]
    fn protects() {
        let r = rule("v*", "matches", "**", "repoMatches");
        assert!(r.validate().is_ok());
        assert!(r.protects("app", "v1"));
        assert!(r.protects("team/app", "v1.2"));
        assert!(!r.protects("app", "latest"));
        let r = rule("latest", "excludes", "app", "repoMatches");
        assert!(r.protects("app", "v1"));
        assert!(!r.protects("app", "latest"));
        assert!(!r.protects("other", "v1"));
        let r = rule("**", "matches", "tmp/**", "repoExcludes");
        assert!(r.protects("app", "x"));
        assert!(!r.protects("tmp/app", "x"));
        assert_eq!(
            r.describe(),
            "tags matching \"**\" in repositories not matching \"tmp/**\""
        );
    }

    #[test]
    fn validation_names_the_fault() {
        let mut r = rule("v*", "matches", "**", "repoMatches");
        r.tag_selectors[0].kind = "regex".into();
        assert!(r.validate().unwrap_err().contains("kind"));
        let r = rule("{v*", "matches", "**", "repoMatches");
        assert!(r.validate().unwrap_err().contains("pattern"));
        let r = rule("v*", "sometimes", "**", "repoMatches");
        assert!(r.validate().unwrap_err().contains("decoration"));
        let mut r = rule("v*", "matches", "**", "repoMatches");
        r.scope_selectors.clear();
        assert!(r.validate().unwrap_err().contains("repository"));
    }
}
