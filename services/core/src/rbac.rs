//! Who may do what in a project: Harbor's role matrix, written once as
//! [`role_allows`], plus what public projects grant everyone and what a
//! robot's permission list grants it.
//!
//! The matrix is Harbor's `rolePoliciesMap` (src/common/rbac/project/
//! rbac_role.go, v2.6 and later, where developers gained tag retention)
//! without the helm-chart resources, which Harbor removed with ChartMuseum
//! in v2.8 and Wharf never had. The unit test checks every role against every
//! (resource, action) pair of a table transcribed from that file.

use std::collections::BTreeMap;

use http::HeaderMap;
use wharf_catalog::projects::{self, Project};

use crate::auth::{Principal, RobotCtx};
use crate::error::{ApiError, Result};
use crate::App;

/// Harbor's project roles, with the ids its API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    ProjectAdmin,
    Maintainer,
    Developer,
    Guest,
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ProjectAdmin,
        Role::Maintainer,
        Role::Developer,
        Role::Guest,
        Role::LimitedGuest,
    ];

    pub fn from_id(id: i32) -> Option<Role> {
        Some(match id {
            1 => Role::ProjectAdmin,
            2 => Role::Developer,
            3 => Role::Guest,
            4 => Role::Maintainer,
            5 => Role::LimitedGuest,
            _ => return None,
        })
    }

    pub fn id(self) -> i32 {
        match self {
            Role::ProjectAdmin => 1,
            Role::Developer => 2,
            Role::Guest => 3,
            Role::Maintainer => 4,
            Role::LimitedGuest => 5,
        }
    }

    /// Harbor's `role_name`.
    pub fn name(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "projectAdmin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limitedGuest",
        }
    }
}

/// A project's sub-resources, named as Harbor names them in permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// The project itself (Harbor's `ResourceSelf`, the empty name).
    Project,
    Member,
    Metadata,
    Log,
    Label,
    Quota,
    Repository,
    TagRetention,
    ImmutableTag,
    Configuration,
    Robot,
    NotificationPolicy,
    Scan,
    Scanner,
    Artifact,
    ArtifactAddition,
    Tag,
    Accessory,
    ArtifactLabel,
    PreheatPolicy,
}

impl Resource {
    pub const ALL: [Resource; 20] = [
        Resource::Project,
        Resource::Member,
        Resource::Metadata,
        Resource::Log,
        Resource::Label,
        Resource::Quota,
        Resource::Repository,
        Resource::TagRetention,
        Resource::ImmutableTag,
        Resource::Configuration,
        Resource::Robot,
        Resource::NotificationPolicy,
        Resource::Scan,
        Resource::Scanner,
        Resource::Artifact,
        Resource::ArtifactAddition,
        Resource::Tag,
        Resource::Accessory,
        Resource::ArtifactLabel,
        Resource::PreheatPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Project => "",
            Resource::Member => "member",
            Resource::Metadata => "metadata",
            Resource::Log => "log",
            Resource::Label => "label",
            Resource::Quota => "quota",
            Resource::Repository => "repository",
            Resource::TagRetention => "tag-retention",
            Resource::ImmutableTag => "immutable-tag",
            Resource::Configuration => "configuration",
            Resource::Robot => "robot",
            Resource::NotificationPolicy => "notification-policy",
            Resource::Scan => "scan",
            Resource::Scanner => "scanner",
            Resource::Artifact => "artifact",
            Resource::ArtifactAddition => "artifact-addition",
            Resource::Tag => "tag",
            Resource::Accessory => "accessory",
            Resource::ArtifactLabel => "artifact-label",
            Resource::PreheatPolicy => "preheat-policy",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Create,
    Read,
    Update,
    Delete,
    List,
    Operate,
    Stop,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Pull,
        Action::Push,
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::List,
        Action::Operate,
        Action::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Operate => "operate",
            Action::Stop => "stop",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Harbor's project role matrix: whether `role` may do `action` on `resource`.
pub fn role_allows(role: Role, resource: Resource, action: Action) -> bool {
    use Action::*;
    use Resource as R;
    let admin = role == Role::ProjectAdmin;
    let maintainer = matches!(role, Role::ProjectAdmin | Role::Maintainer);
    let developer = matches!(
        role,
        Role::ProjectAdmin | Role::Maintainer | Role::Developer
    );
    let guest = role != Role::LimitedGuest;
    match (resource, action) {
        (R::Project, Read) => true,
        (R::Project, Update | Delete) => admin,
        (R::Member, Create | Update | Delete) => admin,
        (R::Member, Read | List) => guest,
        (R::Metadata, Create | Read | Update | Delete) => maintainer,
        (R::Log, List) => guest,
        (R::Label, Create | Update | Delete) => maintainer,
        (R::Label, Read | List) => guest,
        (R::Quota, Read) => true,
        (R::Repository, Create | Update | Push) => developer,
        (R::Repository, Read) => guest,
        (R::Repository, Delete) => maintainer,
        (R::Repository, List | Pull) => true,
        (R::TagRetention, Create | Read | Update | Delete | List | Operate) => developer,
        (R::ImmutableTag, Create | Update | Delete | List) => maintainer,
        (R::Configuration, Read) => true,
        (R::Configuration, Update) => admin,
        (R::Robot, Create | Update | Delete) => admin,
        (R::Robot, Read | List) => guest,
        (R::NotificationPolicy, Create | Read | Update | Delete) => admin,
        (R::NotificationPolicy, List) => maintainer,
        (R::Scan, Create | Stop) => maintainer,
        (R::Scan, Read) => true,
        (R::Scanner, Read) => true,
        (R::Scanner, Create) => admin,
        (R::Artifact, Create) => developer,
        (R::Artifact, Read | List) => true,
        (R::Artifact, Delete) => maintainer,
        (R::ArtifactAddition, Read) => true,
        (R::Tag, List) => true,
        (R::Tag, Create) => developer,
        (R::Tag, Delete) => maintainer,
        (R::Accessory, List) => true,
        (R::ArtifactLabel, Create | Delete) => developer,
        (R::PreheatPolicy, Create | Read | Update | Delete | List) => admin,
        _ => false,
    }
}

/// What a public project grants everyone, anonymous callers included
/// (Harbor's `publicProjectPolicies`).
pub fn public_allows(resource: Resource, action: Action) -> bool {
    use Action::*;
    use Resource as R;
    matches!(
        (resource, action),
        (R::Project, Read)
            | (R::Label, Read | List)
            | (R::Repository, List | Pull)
            | (R::Scan, Read)
            | (R::Scanner, Read)
            | (R::Tag, List)
            | (R::Artifact, Read | List)
            | (R::ArtifactAddition, Read)
    )
}

/// The (resource, action) pairs that mean something in a project: those any
/// role or a public project grants.
pub fn project_pairs() -> Vec<(Resource, Action)> {
    let mut out = Vec::new();
    for r in Resource::ALL {
        for a in Action::ALL {
            if public_allows(r, a) || Role::ALL.into_iter().any(|role| role_allows(role, r, a)) {
                out.push((r, a));
            }
        }
    }
    out
}

/// A robot permission that applies to one project, as `(resource, action)`
/// strings (`*` allowed in either).
type Grant = (String, String);

/// What a robot's permission list grants it in `project` (Harbor: kind
/// `project`, namespace the project name or `*`). A project-level robot only
/// ever acts in its own project, and its `push` implies `pull`, as in Harbor.
pub fn robot_grants(robot: &RobotCtx, project: &Project) -> Vec<Grant> {
    let project_level = robot.level == "project";
    if project_level && robot.project_id.is_some_and(|id| id != project.project_id) {
        return vec![];
    }
    let mut grants: Vec<Grant> = Vec::new();
    for p in &robot.permissions {
        if p.kind != "project" || (p.namespace != project.name && p.namespace != "*") {
            continue;
        }
        grants.push((p.resource.clone(), p.action.clone()));
        if project_level && p.action == "push" {
            grants.push((p.resource.clone(), "pull".into()));
        }
    }
    grants.sort();
    grants.dedup();
    grants
}

/// What one principal may do in one project.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub sysadmin: bool,
    pub public: bool,
    pub role: Option<Role>,
    pub robot: Vec<Grant>,
}

impl Access {
    pub fn can(&self, resource: Resource, action: Action) -> bool {
        self.sysadmin
            || (self.public && public_allows(resource, action))
            || self.role.is_some_and(|r| role_allows(r, resource, action))
            || self.robot.iter().any(|(r, a)| {
                (r == "*" || r == resource.as_str()) && (a == "*" || a == action.as_str())
            })
    }

    /// Whether the project exists for this principal at all; when it does
    /// not, the API answers 404 as if it did not exist.
    pub fn visible(&self) -> bool {
        self.sysadmin || self.public || self.role.is_some() || !self.robot.is_empty()
    }

    /// The registry actions on the project's repositories, for the token
    /// service: `pull`, `push`, `delete`, and `*` when all three are allowed
    /// (Harbor adds it for clients that ask for `*`).
    pub fn repository_actions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (a, s) in [
            (Action::Pull, "pull"),
            (Action::Push, "push"),
            (Action::Delete, "delete"),
        ] {
            if self.can(Resource::Repository, a) {
                out.push(s);
            }
        }
        if out.len() == 3 {
            out.push("*");
        }
        out
    }

    /// Everything this principal may do in the project.
    pub fn permissions(&self) -> Vec<(Resource, Action)> {
        project_pairs()
            .into_iter()
            .filter(|(r, a)| self.can(*r, *a))
            .collect()
    }

    pub fn require(&self, resource: Resource, action: Action) -> Result<()> {
        if self.can(resource, action) {
            return Ok(());
        }
        let what = match resource {
            Resource::Project => "the project".to_owned(),
            r => format!("{} of the project", r.as_str()),
        };
        Err(ApiError::Forbidden(format!(
            "you may not {} {what}",
            action.as_str()
        )))
    }
}

pub fn is_public(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get("public").map(String::as_str) == Some("true")
}

/// Works out what `who` may do in `project`.
pub async fn access(app: &App, who: &Principal, project: &Project, public: bool) -> Result<Access> {
    let mut access = Access {
        public,
        ..Access::default()
    };
    match who {
        Principal::Anonymous => {}
        Principal::User(u) => {
            access.sysadmin = u.sysadmin;
            access.role = projects::role_of(&app.db, project.project_id, u.id)
                .await?
                .and_then(Role::from_id);
        }
        Principal::Robot(r) => access.robot = robot_grants(r, project),
    }
    Ok(access)
}

/// A project as one request sees it.
pub struct ProjectCtx {
    pub project: Project,
    pub metadata: BTreeMap<String, String>,
    pub access: Access,
}

/// `{project_name_or_id}`: a name when `X-Is-Resource-Name: true` is sent or
/// when it is not a number, an id otherwise.
pub enum ProjectRef {
    Id(i64),
    Name(String),
}

impl ProjectRef {
    pub fn parse(raw: &str, headers: &HeaderMap) -> ProjectRef {
        let by_name = headers
            .get("x-is-resource-name")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        match raw.parse::<i64>() {
            Ok(id) if !by_name => ProjectRef::Id(id),
            _ => ProjectRef::Name(raw.to_owned()),
        }
    }
}

/// Loads a project the caller may see, or answers 404 (also when it exists
/// but is private to others, so that names do not leak).
pub async fn project(
    app: &App,
    who: &Principal,
    headers: &HeaderMap,
    raw: &str,
) -> Result<ProjectCtx> {
    let found = match ProjectRef::parse(raw, headers) {
        ProjectRef::Id(id) => projects::by_id(&app.db, id).await?,
        ProjectRef::Name(name) => projects::by_name(&app.db, &name).await?,
    };
    let not_found = || ApiError::NotFound(format!("project {raw} not found"));
    let project = found.ok_or_else(not_found)?;
    let metadata = projects::metadata_of(&app.db, project.project_id).await?;
    let access = access(app, who, &project, is_public(&metadata)).await?;
    if !access.visible() {
        return Err(not_found());
    }
    Ok(ProjectCtx {
        project,
        metadata,
        access,
    })
}

/// What the caller may do in project `project_id`, as Harbor's
/// `/users/current/permissions?scope=/project/{id}&relative=true` lists it:
/// (resource, action) with resources relative to the project (the project
/// itself is the empty resource). `None` when there is no such project or
/// the caller may not see it.
pub async fn project_permissions(
    app: &App,
    who: &Principal,
    project_id: i64,
) -> Result<Option<Vec<(String, String)>>> {
    let Some(project) = projects::by_id(&app.db, project_id).await? else {
        return Ok(None);
    };
    let metadata = projects::metadata_of(&app.db, project_id).await?;
    let access = access(app, who, &project, is_public(&metadata)).await?;
    if !access.visible() {
        return Ok(None);
    }
    Ok(Some(
        access
            .permissions()
            .into_iter()
            .map(|(r, a)| (r.as_str().to_owned(), a.as_str().to_owned()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Harbor's `rolePoliciesMap`, transcribed pair by pair (helm charts left out).
    const HARBOR: &[(&str, &[(&str, &str)])] = &[
        (
            "projectAdmin",
            &[
                ("", "read"),
                ("", "update"),
                ("", "delete"),
                ("member", "create"),
                ("member", "read"),
                ("member", "update"),
                ("member", "delete"),
                ("member", "list"),
                ("metadata", "create"),
                ("metadata", "read"),
                ("metadata", "update"),
                ("metadata", "delete"),
                ("log", "list"),
                ("label", "create"),
                ("label", "read"),
                ("label", "update"),
                ("label", "delete"),
                ("label", "list"),
                ("quota", "read"),
                ("repository", "create"),
                ("repository", "read"),
                ("repository", "update"),
                ("repository", "delete"),
                ("repository", "list"),
                ("repository", "pull"),
                ("repository", "push"),
                ("tag-retention", "create"),
                ("tag-retention", "read"),
                ("tag-retention", "update"),
                ("tag-retention", "delete"),
                ("tag-retention", "list"),
                ("tag-retention", "operate"),
                ("immutable-tag", "create"),
                ("immutable-tag", "update"),
                ("immutable-tag", "delete"),
                ("immutable-tag", "list"),
                ("configuration", "read"),
                ("configuration", "update"),
                ("robot", "create"),
                ("robot", "read"),
                ("robot", "update"),
                ("robot", "delete"),
                ("robot", "list"),
                ("notification-policy", "create"),
                ("notification-policy", "update"),
                ("notification-policy", "delete"),
                ("notification-policy", "list"),
                ("notification-policy", "read"),
                ("scan", "create"),
                ("scan", "read"),
                ("scan", "stop"),
                ("scanner", "read"),
                ("scanner", "create"),
                ("artifact", "create"),
                ("artifact", "read"),
                ("artifact", "delete"),
                ("artifact", "list"),
                ("artifact-addition", "read"),
                ("tag", "list"),
                ("tag", "create"),
                ("tag", "delete"),
                ("accessory", "list"),
                ("artifact-label", "create"),
                ("artifact-label", "delete"),
                ("preheat-policy", "create"),
                ("preheat-policy", "read"),
                ("preheat-policy", "update"),
                ("preheat-policy", "delete"),
                ("preheat-policy", "list"),
            ],
        ),
        (
            "maintainer",
            &[
                ("", "read"),
                ("member", "read"),
                ("member", "list"),
                ("metadata", "create"),
                ("metadata", "read"),
                ("metadata", "update"),
                ("metadata", "delete"),
                ("log", "list"),
                ("quota", "read"),
                ("label", "create"),
                ("label", "read"),
                ("label", "update"),
                ("label", "delete"),
                ("label", "list"),
                ("repository", "create"),
                ("repository", "read"),
                ("repository", "update"),
                ("repository", "delete"),
                ("repository", "list"),
                ("repository", "push"),
                ("repository", "pull"),
                ("tag-retention", "create"),
                ("tag-retention", "read"),
                ("tag-retention", "update"),
                ("tag-retention", "delete"),
                ("tag-retention", "list"),
                ("tag-retention", "operate"),
                ("accessory", "list"),
                ("immutable-tag", "create"),
                ("immutable-tag", "update"),
                ("immutable-tag", "delete"),
                ("immutable-tag", "list"),
                ("configuration", "read"),
                ("robot", "read"),
                ("robot", "list"),
                ("notification-policy", "list"),
                ("scan", "create"),
                ("scan", "read"),
                ("scan", "stop"),
                ("scanner", "read"),
                ("artifact", "create"),
                ("artifact", "read"),
                ("artifact", "delete"),
                ("artifact", "list"),
                ("artifact-addition", "read"),
                ("tag", "list"),
                ("tag", "create"),
                ("tag", "delete"),
                ("artifact-label", "create"),
                ("artifact-label", "delete"),
            ],
        ),
        (
            "developer",
            &[
                ("", "read"),
                ("member", "read"),
                ("member", "list"),
                ("log", "list"),
                ("label", "read"),
                ("label", "list"),
                ("quota", "read"),
                ("repository", "create"),
                ("repository", "read"),
                ("repository", "update"),
                ("repository", "list"),
                ("repository", "push"),
                ("repository", "pull"),
                ("tag-retention", "create"),
                ("tag-retention", "read"),
                ("tag-retention", "update"),
                ("tag-retention", "delete"),
                ("tag-retention", "list"),
                ("tag-retention", "operate"),
                ("configuration", "read"),
                ("robot", "read"),
                ("robot", "list"),
                ("scan", "read"),
                ("scanner", "read"),
                ("artifact", "create"),
                ("artifact", "read"),
                ("artifact", "list"),
                ("artifact-addition", "read"),
                ("tag", "list"),
                ("tag", "create"),
                ("accessory", "list"),
                ("artifact-label", "create"),
                ("artifact-label", "delete"),
            ],
        ),
        (
            "guest",
            &[
                ("", "read"),
                ("member", "read"),
                ("member", "list"),
                ("log", "list"),
                ("label", "read"),
                ("label", "list"),
                ("quota", "read"),
                ("repository", "read"),
                ("repository", "list"),
                ("repository", "pull"),
                ("configuration", "read"),
                ("robot", "read"),
                ("robot", "list"),
                ("scan", "read"),
                ("scanner", "read"),
                ("tag", "list"),
                ("accessory", "list"),
                ("artifact", "read"),
                ("artifact", "list"),
                ("artifact-addition", "read"),
            ],
        ),
        (
            "limitedGuest",
            &[
                ("", "read"),
                ("quota", "read"),
                ("repository", "list"),
                ("repository", "pull"),
                ("configuration", "read"),
                ("scan", "read"),
                ("scanner", "read"),
                ("tag", "list"),
                ("accessory", "list"),
                ("artifact", "read"),
                ("artifact", "list"),
                ("artifact-addition", "read"),
            ],
        ),
    ];

    #[test]
    fn every_role_against_every_pair_matches_harbor() {
        let mut checked = 0;
        for (name, pairs) in HARBOR {
            let role = Role::ALL
                .into_iter()
                .find(|r| r.name() == *name)
                .expect("a known role");
            for &(res, act) in *pairs {
                assert!(Resource::parse(res).is_some(), "resource {res:?}");
                assert!(Action::parse(act).is_some(), "action {act:?}");
            }
            for r in Resource::ALL {
                for a in Action::ALL {
                    let want = pairs.contains(&(r.as_str(), a.as_str()));
                    assert_eq!(
                        role_allows(role, r, a),
                        want,
                        "{name} {:?} {}",
                        r.as_str(),
                        a.as_str()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * Resource::ALL.len() * Action::ALL.len());
    }

    #[test]
    fn role_ids_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::from_id(r.id()), Some(r));
        }
        assert_eq!(Role::from_id(0), None);
        assert_eq!(Role::from_id(6), None);
        assert_eq!(Role::from_id(4).unwrap().name(), "maintainer");
    }

    #[test]
    fn registry_actions_per_role() {
        let of = |role: Option<Role>, public: bool| {
            Access {
                role,
                public,
                ..Access::default()
            }
            .repository_actions()
        };
        assert_eq!(
            of(Some(Role::ProjectAdmin), false),
            ["pull", "push", "delete", "*"]
        );
        assert_eq!(
            of(Some(Role::Maintainer), false),
            ["pull", "push", "delete", "*"]
        );
        assert_eq!(of(Some(Role::Developer), false), ["pull", "push"]);
        assert_eq!(of(Some(Role::Guest), false), ["pull"]);
        assert_eq!(of(Some(Role::LimitedGuest), false), ["pull"]);
        assert_eq!(of(None, true), ["pull"]);
        assert!(of(None, false).is_empty());
        let admin = Access {
            sysadmin: true,
            ..Access::default()
        };
        assert_eq!(admin.repository_actions(), ["pull", "push", "delete", "*"]);
    }

    fn robot(level: &str, project_id: Option<i64>, perms: &[(&str, &str, &str)]) -> RobotCtx {
        RobotCtx {
            id: 1,
            name: "robot$x".into(),
            level: level.into(),
            project_id,
            permissions: perms
                .iter()
                .map(|(ns, res, act)| wharf_catalog::robots::Permission {
                    kind: "project".into(),
                    namespace: (*ns).into(),
                    resource: (*res).into(),
                    action: (*act).into(),
                })
                .collect(),
        }
    }

    fn project(id: i64, name: &str) -> Project {
        Project {
            project_id: id,
            name: name.into(),
            owner_id: 1,
            owner_name: "admin".into(),
            registry_id: 0,
            creation_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
        }
    }

    #[test]
    fn robots_get_what_their_list_says() {
        let p = project(7, "team");
        let r = robot("project", Some(7), &[("team", "repository", "push")]);
        let a = Access {
            robot: robot_grants(&r, &p),
            ..Access::default()
        };
        assert_eq!(a.repository_actions(), ["pull", "push"]);
        assert!(a.visible());
        // A project robot never acts in another project, whatever its list says.
        let r = robot("project", Some(8), &[("team", "repository", "push")]);
        assert!(robot_grants(&r, &p).is_empty());
        // System robots: namespace `*` covers every project; push does not imply pull.
        let r = robot(
            "system",
            None,
            &[("*", "repository", "push"), ("other", "repository", "pull")],
        );
        let a = Access {
            robot: robot_grants(&r, &p),
            ..Access::default()
        };
        assert_eq!(a.repository_actions(), ["push"]);
        let r = robot("system", None, &[("team", "*", "*")]);
        let a = Access {
            robot: robot_grants(&r, &p),
            ..Access::default()
        };
        assert_eq!(a.repository_actions(), ["pull", "push", "delete", "*"]);
    }

    #[test]
    fn public_projects_grant_pull_and_reads_only() {
        let a = Access {
            public: true,
            ..Access::default()
        };
        assert!(a.visible());
        assert!(a.can(Resource::Repository, Action::Pull));
        assert!(a.can(Resource::Artifact, Action::List));
        assert!(!a.can(Resource::Repository, Action::Push));
        assert!(!a.can(Resource::Member, Action::List));
        assert!(!a.can(Resource::Quota, Action::Read));
        assert!(!Access::default().visible());
    }
}
