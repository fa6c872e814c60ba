//! Pieces shared by the catalogue's list queries: who may see which
//! projects, and text matches from Harbor's `q` language, always as bound
//! parameters.

use sqlx::{Postgres, QueryBuilder};

/// Which projects a caller may see, as the list queries filter them.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// A system administrator sees everything.
    pub all: bool,
    /// Public projects are visible (to anyone, anonymous included).
    pub public: bool,
    /// A user sees the projects they are a member of.
    pub user_id: Option<i64>,
    /// Projects granted otherwise (a robot's project and permission namespaces).
    pub project_ids: Vec<i64>,
    pub project_names: Vec<String>,
}

impl Viewer {
    pub fn everything() -> Viewer {
        Viewer {
            all: true,
            ..Viewer::default()
        }
    }

    /// Appends a boolean SQL condition: the project aliased `p` is visible.
    pub fn push_condition(&self, qb: &mut QueryBuilder<'_, Postgres>, p: &str) {
        qb.push("(")
            .push_bind(self.all)
            .push(" OR (")
            .push_bind(self.public)
            .push(format!(
                " AND EXISTS (SELECT 1 FROM project_metadata pm WHERE pm.project_id = {p}.project_id AND pm.name = 'public' AND pm.value = 'true'))"
            ))
            .push(format!(
                " OR EXISTS (SELECT 1 FROM project_member pmb WHERE pmb.project_id = {p}.project_id AND pmb.entity_type = 'u' AND pmb.entity_id = "
            ))
            .push_bind(self.user_id)
            .push(format!(") OR {p}.project_id = ANY("))
            .push_bind(self.project_ids.clone())
            .push(format!(") OR {p}.name = ANY("))
            .push_bind(self.project_names.clone())
            .push("))");
    }
}

/// One text condition of Harbor's `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    Exact(String),
    /// Substring, case-insensitive.
    Fuzzy(String),
    AnyOf(Vec<String>),
}

impl TextMatch {
    /// Appends ` AND <column> …` for this match.
    pub fn push_and(&self, qb: &mut QueryBuilder<'_, Postgres>, column: &str) {
        match self {
            TextMatch::Exact(v) => {
                qb.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
            TextMatch::Fuzzy(v) => {
                qb.push(format!(" AND {column} ILIKE "))
                    .push_bind(contains_pattern(v));
            }
            TextMatch::AnyOf(vs) => {
                qb.push(format!(" AND {column} = ANY("))
                    .push_bind(vs.clone())
                    .push(")");
            }
        }
    }
}

/// A `LIKE` pattern that matches `s` anywhere, with `%`, `_` and `\` in `s` taken literally.
pub fn contains_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The bounds of the repository names under `project/`, for a range scan of
/// the name index (`/` + 1 is `0`).
pub fn project_prefix_bounds(project: &str) -> (String, String) {
    (format!("{project}/"), format!("{project}0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(
            project_prefix_bounds("lib"),
            ("lib/".to_owned(), "lib0".to_owned())
        );
    }
}
