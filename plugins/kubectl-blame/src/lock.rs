//! `kubectl blame lock`, `kubectl blame locks` and `kubectl blame unlock`: freezes managed
//! through the aggregated API's `locks.logistis.io`, so RBAC decides who may lock what and
//! the lock records who set it.
//!
//! - `lock NS`: the whole namespace NS. `lock KIND [-n NS]`: every object of the kind there.
//!   `lock KIND/NAME` or `lock KIND NAME`: one object. A cluster-scoped kind
//!   (`lock clusterrole/admin`, `lock nodes`) makes a cluster-scope lock.
//! - `locks [-n NS | -A]`: a table of the locks; `unlock NAME [-n NS]`: delete one.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{Method, Request, StatusCode, header};
use kube::client::Body;
use logistis_api::lock::{
    DEFAULT_EXEMPT, ENFORCEMENT_NOTE, LOCK_API_VERSION, Lock, LockList, LockMetadata, LockSpec,
    LockTarget,
};

use crate::cli::{ConnectionArgs, Target};
use crate::command::{Usage, resolve_kind};
use crate::time;
use crate::transport::{Connection, encode};

/// The subcommands that are not a KIND.
pub const SUBCOMMANDS: [&str; 3] = ["lock", "locks", "unlock"];

/// Where locks are served, below the API server's root.
const API_PREFIX: &str = "/apis/logistis.io/v1alpha1";

/// Locks: freeze a namespace, a kind or one object for some users.
#[derive(Debug, Parser)]
#[command(name = "kubectl-blame", bin_name = "kubectl blame", version)]
#[command(args_override_self = true)]
pub struct LockCli {
    #[command(subcommand)]
    pub command: LockCommand,
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Freeze a namespace (NS), a kind in a namespace (KIND -n NS) or one object (KIND/NAME).
    #[command(after_help = "Examples:\n  \
        kubectl blame lock shop --except-groups sre --for 2h --reason 'release 4.2'\n  \
        kubectl blame lock deploy/web -n shop --until 18:00 --reason 'incident 1234'\n  \
        kubectl blame lock pods -n shop --operations CONNECT --reason 'no exec during the audit'\n  \
        kubectl blame lock clusterrole/admin --reason 'RBAC review'\n\n\
        Not enforced while Logistis is down (failurePolicy: Ignore), unless the namespace \
        opted in to the hard-freeze webhook.")]
    Lock(Box<LockArgs>),
    /// List locks (`-A`: in every namespace, and the cluster-scope ones).
    Locks(ListArgs),
    /// Delete a lock.
    Unlock(UnlockArgs),
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// NS, KIND, KIND/NAME or KIND NAME.
    #[arg(value_name = "NS | KIND[/NAME]", num_args = 1..=2, required = true)]
    pub target: Vec<String>,

    /// The namespace of KIND or KIND/NAME (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Lock only these users (comma-separated; default: everyone).
    #[arg(long, value_delimiter = ',', value_name = "USER,…")]
    pub users: Vec<String>,

    /// Lock only the members of these groups (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub groups: Vec<String>,

    /// Never lock these users.
    #[arg(long, value_delimiter = ',', value_name = "USER,…")]
    pub except_users: Vec<String>,

    /// Never lock the members of these groups.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub except_groups: Vec<String>,

    /// Operations to deny: CREATE, UPDATE, DELETE, CONNECT (exec, attach, port-forward) or *
    /// [default: CREATE,UPDATE,DELETE].
    #[arg(long, value_delimiter = ',', value_name = "OP,…")]
    pub operations: Vec<String>,

    /// Stop applying after this long (`2h`, `90m`).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "until")]
    pub duration: Option<Duration>,

    /// Stop applying at this time: RFC 3339, or HH:MM (UTC, the next such time).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Why: shown to everyone whose change is denied.
    #[arg(long, required = true)]
    pub reason: String,

    /// The lock's name [default: generated from the target].
    #[arg(long)]
    pub name: Option<String>,

    /// Print the created lock as JSON or YAML instead of a summary.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<LockOutput>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Namespace to list (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Every namespace, and the cluster-scope locks.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    #[arg(short = 'o', long, value_enum)]
    pub output: Option<LockOutput>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The lock's name (as `kubectl blame locks` shows it).
    pub name: String,

    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, conflicts_with = "cluster")]
    pub namespace: Option<String>,

    /// The lock is a cluster-scope lock.
    #[arg(long)]
    pub cluster: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockOutput {
    Json,
    Yaml,
}

/// The server refused a lock call; the message is its `Status` message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

pub async fn run(cli: LockCli) -> Result<()> {
    match cli.command {
        LockCommand::Lock(args) => lock(*args).await,
        LockCommand::Locks(args) => list(args).await,
        LockCommand::Unlock(args) => unlock(args).await,
    }
}

/// The namespace and target a `lock` command names.
async fn target(args: &LockArgs, connection: &Connection) -> Result<(String, LockTarget)> {
    let parsed = Target::parse(&args.target)?;
    let (kind, name) = match parsed {
        // One word without -n is a namespace: `kubectl blame lock shop`.
        Target::Kind(namespace) if args.namespace.is_none() => {
            return Ok((namespace, LockTarget::default()));
        }
        Target::Kind(kind) => (kind, String::new()),
        Target::Object { kind, name } => (kind, name),
        Target::Cluster => return Err(Usage("name what to lock".into()).into()),
    };
    let kind = resolve_kind(&kind, connection, args.connection.server.is_some()).await?;
    let namespace = if kind.namespaced {
        args.namespace
            .clone()
            .unwrap_or_else(|| connection.default_namespace.clone())
    } else if args.namespace.is_some() {
        return Err(Usage(format!(
            "{} is cluster-scoped: it has no namespace (leave out -n)",
            kind.qualified()
        ))
        .into());
    } else {
        String::new()
    };
    Ok((
        namespace,
        LockTarget {
            group: Some(kind.group.clone()),
            kind: kind.kind.clone(),
            name,
        },
    ))
}

/// `--until`: RFC 3339, or `HH:MM` as the next such time in UTC.
pub fn parse_until(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Usage> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(clock) = chrono::NaiveTime::parse_from_str(text, "%H:%M") {
        let today = now.date_naive().and_time(clock).and_utc();
        return Ok(if today > now {
            today
        } else {
            today + chrono::Duration::days(1)
        });
    }
    Err(Usage(format!(
        "--until {text:?}: expected RFC 3339 (2026-12-01T18:00:00Z) or HH:MM (UTC)"
    )))
}

/// A lock name from the target: `lock-shop-`, `lock-deployment-web-` (the server appends five
/// random characters).
fn generate_name(namespace: &str, target: &LockTarget) -> String {
    let base = if target.kind.is_empty() {
        namespace.to_owned()
    } else if target.name.is_empty() {
        target.kind.clone()
    } else {
        format!("{}-{}", target.kind, target.name)
    };
    let clean: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("lock-{}-", clean.trim_matches('-'))
}

async fn lock(args: LockArgs) -> Result<()> {
    let connection = Connection::new(&args.connection).await?;
    let (namespace, target) = target(&args, &connection).await?;
    let now = Utc::now();
    let expires_at = match (&args.duration, &args.until) {
        (Some(duration), _) => Some(now + chrono::Duration::from_std(*duration)?),
        (None, Some(until)) => Some(parse_until(until, now)?),
        (None, None) => None,
    };
    let body = Lock {
        api_version: LOCK_API_VERSION.to_owned(),
        kind: "Lock".to_owned(),
        metadata: LockMetadata {
            generate_name: if args.name.is_none() {
                generate_name(&namespace, &target)
            } else {
                String::new()
            },
            name: args.name.clone().unwrap_or_default(),
            ..LockMetadata::default()
        },
        spec: LockSpec {
            target,
            users: args.users.clone(),
            groups: args.groups.clone(),
            except_users: args.except_users.clone(),
            except_groups: args.except_groups.clone(),
            operations: args.operations.clone(),
            reason: args.reason.clone(),
            expires_at,
        },
        status: None,
    };
    let created: Lock = call(
        &connection,
        Method::POST,
        &collection(Some(&namespace)),
        Some(serde_json::to_vec(&body)?),
    )
    .await?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Some(format) => print(&mut out, &created, format)?,
        None => writeln!(out, "{}", summary(&created))?,
    }
    Ok(())
}

/// What `kubectl blame lock` prints: the lock in words, the defaults never locked out, and
/// what enforcement depends on.
pub fn summary(lock: &Lock) -> String {
    let spec = &lock.spec;
    let what = if spec.target.kind.is_empty() {
        format!("namespace {}", lock.metadata.namespace)
    } else if lock.metadata.namespace.is_empty() {
        format!("{} (cluster scope)", spec.target)
    } else {
        format!("{} in namespace {}", spec.target, lock.metadata.namespace)
    };
    let status = lock.status.clone().unwrap_or_default();
    let until = spec.expires_at.map_or_else(
        || "until it is deleted".to_owned(),
        |at| {
            format!(
                "until {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        },
    );
    let mut text = format!(
        "lock {} created: {what} is frozen for {} ({}), {until}.\n",
        lock.key(),
        spec.applies_to(),
        status.operations.join(", "),
    );
    text.push_str(&format!(
        "  exempt: {}\n",
        spec.exempt().unwrap_or_else(|| "nobody listed".to_owned())
    ));
    text.push_str(&format!(
        "  never locked out unless named: {}\n",
        DEFAULT_EXEMPT.join(", ")
    ));
    text.push_str(&format!("  set by: {}\n", status.set_by.username));
    text.push_str(&format!("  note: {ENFORCEMENT_NOTE}.\n"));
    let mut unlock = format!("kubectl blame unlock {}", lock.metadata.name);
    if lock.metadata.namespace.is_empty() {
        unlock.push_str(" --cluster");
    } else {
        unlock.push_str(&format!(" -n {}", lock.metadata.namespace));
    }
    text.push_str(&format!("  to lift it: {unlock}"));
    text
}

async fn list(args: ListArgs) -> Result<()> {
    let connection = Connection::new(&args.connection).await?;
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .clone()
                .unwrap_or_else(|| connection.default_namespace.clone()),
        )
    };
    let list: LockList = call(
        &connection,
        Method::GET,
        &collection(namespace.as_deref()),
        None,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    if let Some(format) = args.output {
        return print(&mut out, &list, format);
    }
    if list.items.is_empty() {
        eprintln!(
            "No locks{}.",
            namespace.map_or_else(String::new, |ns| format!(" in namespace {ns}"))
        );
        return Ok(());
    }
    writeln!(
        out,
        "{}",
        render_table(&list.items, args.all_namespaces, Utc::now())
    )?;
    Ok(())
}

/// The lock table: namespace (with `-A`), name, target, whom, exempt, until, status, set by,
/// age and reason.
pub fn render_table(locks: &[Lock], with_namespace: bool, now: DateTime<Utc>) -> String {
    let mut header = Vec::new();
    if with_namespace {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "TARGET",
        "APPLIES TO",
        "EXEMPT",
        "UNTIL",
        "STATUS",
        "SET BY",
        "AGE",
        "REASON",
    ]);
    let rows = locks.iter().map(|lock| {
        let status = lock.status.clone().unwrap_or_default();
        let mut row = Vec::new();
        if with_namespace {
            row.push(if lock.metadata.namespace.is_empty() {
                "<cluster>".to_owned()
            } else {
                lock.metadata.namespace.clone()
            });
        }
        row.extend([
            lock.metadata.name.clone(),
            lock.spec.target.to_string(),
            lock.spec.applies_to(),
            lock.spec.exempt().unwrap_or_else(|| "<none>".to_owned()),
            lock.spec.expires_at.map_or_else(
                || "<deleted>".to_owned(),
                |at| {
                    if at > now {
                        format!("in {}", time::age(at - now))
                    } else {
                        format!("{} ago", time::age(now - at))
                    }
                },
            ),
            status.phase,
            status.set_by.username,
            lock.metadata
                .creation_timestamp
                .map_or_else(|| "<unknown>".to_owned(), |at| time::age(now - at)),
            lock.spec.reason.clone(),
        ]);
        row
    });
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header);
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table.trim_fmt()
}

async fn unlock(args: UnlockArgs) -> Result<()> {
    let connection = Connection::new(&args.connection).await?;
    let namespace = if args.cluster {
        String::new()
    } else {
        args.namespace
            .clone()
            .unwrap_or_else(|| connection.default_namespace.clone())
    };
    let path = format!("{}/{}", collection(Some(&namespace)), encode(&args.name));
    let deleted: Lock = call(&connection, Method::DELETE, &path, None).await?;
    println!("lock {} deleted", deleted.key());
    Ok(())
}

/// `…/namespaces/{ns}/locks`, `…/locks` for the cluster scope (`Some("")`) and for every
/// namespace (`None`).
fn collection(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{API_PREFIX}/namespaces/{}/locks", encode(ns)),
        _ => format!("{API_PREFIX}/locks"),
    }
}

fn print<T: serde::Serialize>(
    out: &mut impl std::io::Write,
    value: &T,
    format: LockOutput,
) -> Result<()> {
    match format {
        LockOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        LockOutput::Yaml => write!(out, "{}", serde_yaml::to_string(value)?)?,
    }
    Ok(())
}

/// One call to the aggregated API: through the API server with the kubeconfig (so RBAC
/// applies), or directly with `--server`.
async fn call<T: serde::de::DeserializeOwned>(
    connection: &Connection,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<T> {
    let client = connection.api_client();
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::ACCEPT, "application/json");
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .with_context(|| format!("invalid request path {path:?}"))?;
    let response = client
        .send(request)
        .await
        .with_context(|| format!("could not reach the Logistis API for {method} {path}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .context("could not read the answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(300)
                    .collect()
            });
        return Err(Refused { status, message }.into());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer for {method} {path}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn until_takes_rfc3339_or_the_next_clock_time() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert_eq!(
            parse_until("18:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap()
        );
        assert_eq!(
            parse_until("09:30", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 2, 9, 30, 0).unwrap()
        );
        assert_eq!(
            parse_until("2026-12-03T10:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap()
        );
        assert!(parse_until("tomorrow", now).is_err());
    }

    #[test]
    fn generated_names_say_what_is_locked() {
        let object = LockTarget {
            group: Some("apps".into()),
            kind: "Deployment".into(),
            name: "web.v2".into(),
        };
        assert_eq!(generate_name("shop", &object), "lock-deployment-web-v2-");
        assert_eq!(generate_name("shop", &LockTarget::default()), "lock-shop-");
    }

    #[test]
    fn paths_name_the_namespace_or_the_cluster() {
        assert_eq!(
            collection(Some("shop")),
            "/apis/logistis.io/v1alpha1/namespaces/shop/locks"
        );
        assert_eq!(collection(Some("")), "/apis/logistis.io/v1alpha1/locks");
        assert_eq!(collection(None), "/apis/logistis.io/v1alpha1/locks");
    }

    #[test]
    fn the_summary_names_the_defaults_and_the_enforcement_caveat() {
        let lock: Lock = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lock-shop-x2b4c", "namespace": "shop"},
            "spec": {"reason": "release", "exceptGroups": ["sre"]},
            "status": {"setBy": {"username": "carol"}, "operations": ["CREATE", "UPDATE", "DELETE"]}
        }))
        .unwrap();
        let text = summary(&lock);
        assert!(
            text.starts_with(
                "lock shop/lock-shop-x2b4c created: namespace shop is frozen for everyone"
            ),
            "{text}"
        );
        assert!(text.contains("exempt: group sre"));
        assert!(text.contains("system:kube-scheduler"));
        assert!(text.contains("failurePolicy is Ignore"));
        assert!(text.contains("kubectl blame unlock lock-shop-x2b4c -n shop"));
    }
}
