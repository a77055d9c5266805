//! From a parsed command line to output: checks the combination of arguments, resolves the
//! kind, picks the namespace as kubectl would, asks the query API and prints the answer in the
//! chosen format. Answers go to stdout; notes (empty lists, trimmed history) to stderr, so
//! `-o json` stays parseable.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use chrono::Utc;
use logistis_api::EventList;

use crate::cli::{Cli, OutputFormat, Target};
use crate::color::{self, Painter};
use crate::kinds::{self, KindInfo, KindQuery, Sources, UnknownKind};
use crate::query::{self, EventQuery, ObjectPath};
use crate::render::{self, Renderer, blame, change, table};
use crate::transport::Connection;
use crate::{discovery, time};

/// The arguments do not make sense together (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The object or event has no recorded history (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

fn usage<T>(message: impl Into<String>) -> Result<T> {
    Err(Usage(message.into()).into())
}

/// Which question about one object was asked.
enum Question {
    Changes,
    Versions,
    Diff,
    Bisect,
    At(u64),
    FieldHistory(String),
    Blame,
}

pub async fn run(cli: Cli) -> Result<()> {
    let target = Target::parse(&cli.target)?;
    let question = question(&cli, &target)?;
    let since = cli
        .filter
        .since
        .as_deref()
        .map(time::check_bound)
        .transpose()?;
    let until = cli
        .filter
        .until
        .as_deref()
        .map(time::check_bound)
        .transpose()?;

    let terminal = std::io::stdout().is_terminal();
    let no_color = std::env::var("NO_COLOR").ok();
    let renderer = Renderer {
        painter: Painter {
            enabled: color::enabled(cli.color, terminal, no_color.as_deref()),
        },
        time_format: cli.time,
        now: Utc::now(),
        terminal,
    };
    let connection = Connection::new(&cli.connection).await?;

    let mut events = EventQuery {
        cluster: cli.filter.cluster.clone().filter(|c| !c.is_empty()),
        user: cli.filter.user.clone(),
        operation: cli.filter.operation.map(|op| op.as_str().to_owned()),
        status: (!cli.filter.status.is_empty()).then(|| {
            cli.filter
                .status
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }),
        since,
        until,
        limit: cli.filter.limit,
        ..EventQuery::default()
    };
    let filtered = events.user.is_some()
        || events.operation.is_some()
        || events.status.is_some()
        || events.since.is_some()
        || events.until.is_some();

    let (kind, name) = match &target {
        Target::Cluster => {
            if cli.namespace.is_none() && !cli.all_namespaces && !filtered {
                return overview(
                    &connection,
                    events.cluster.as_deref(),
                    cli.output,
                    &renderer,
                )
                .await;
            }
            // Filters without a namespace ask about the whole cluster: "what did alice do".
            // Someone who may read changes only in some namespaces gets their context's
            // namespace instead of a refusal, and is told so.
            events.namespace = cli.namespace.clone();
            let list = match query::events(&connection.query, &events).await {
                Err(crate::transport::Error::Forbidden { permission })
                    if cli.namespace.is_none() && !cli.all_namespaces =>
                {
                    let namespace = connection.default_namespace.clone();
                    eprintln!(
                        "{permission}: showing namespace {namespace} (the context's) instead; -n NS for another"
                    );
                    events.namespace = Some(namespace);
                    query::events(&connection.query, &events).await?
                }
                other => other?,
            };
            return show_events(&connection, list, &events, cli.output, &renderer).await;
        }
        Target::Kind(kind) => (kind, None),
        Target::Object { kind, name } => (kind, Some(name.clone())),
    };

    let kind = resolve_kind(kind, &connection, cli.connection.server.is_some()).await?;
    let namespace = if !kind.namespaced {
        Some(String::new())
    } else if cli.all_namespaces {
        None
    } else {
        Some(
            cli.namespace
                .clone()
                .unwrap_or_else(|| connection.default_namespace.clone()),
        )
    };
    events.namespace = namespace.as_ref().map(|ns| {
        if ns.is_empty() {
            "_".to_owned()
        } else {
            ns.clone()
        }
    });
    events.group = Some(if kind.group.is_empty() {
        "core".to_owned()
    } else {
        kind.group.clone()
    });
    events.kind = Some(kind.kind.clone());

    let Some(name) = name else {
        let list = query::events(&connection.query, &events).await?;
        return show_events(&connection, list, &events, cli.output, &renderer).await;
    };
    let object = ObjectPath {
        group: kind.group.clone(),
        kind: kind.kind.clone(),
        namespace: namespace.unwrap_or_default(),
        name: name.clone(),
    };
    events.name = Some(name);
    ask_object(&cli, &connection, &object, &events, question, &renderer).await
}

/// Checks what was asked against what was named.
fn question(cli: &Cli, target: &Target) -> Result<Question> {
    let history = &cli.history;
    let asked = if history.versions {
        Some(("--versions", Question::Versions))
    } else if history.diff.is_some() {
        Some(("--diff", Question::Diff))
    } else if history.bisect.is_some() {
        Some(("--bisect", Question::Bisect))
    } else if let Some(n) = history.at {
        Some(("--at", Question::At(n)))
    } else if let Some(path) = &cli.path {
        Some(("--path", Question::FieldHistory(path.clone())))
    } else if cli.output == Some(OutputFormat::Blame) {
        Some(("-o blame", Question::Blame))
    } else {
        None
    };
    match (target, asked) {
        (Target::Object { .. }, _) if cli.all_namespaces => {
            usage("an object cannot be named across all namespaces: use -n NAMESPACE instead of -A")
        }
        (Target::Object { .. }, Some((_, question))) => Ok(question),
        (Target::Object { .. }, None) => Ok(Question::Changes),
        (_, Some((flag, _))) => usage(format!("{flag} is about one object: give KIND and NAME")),
        (Target::Cluster, None)
            if matches!(cli.output, Some(OutputFormat::Patch | OutputFormat::Diff))
                && cli.namespace.is_none()
                && !cli.all_namespaces =>
        {
            usage("-o patch and -o diff show changes: add -n NAMESPACE, -A or KIND")
        }
        (_, None) => Ok(Question::Changes),
    }
}

/// Built-in names first (they mean the same in every cluster and cost nothing), then API
/// discovery, then a `Kind.group` taken as written. With `--server` (`direct`) discovery is
/// not tried: the kubeconfig's cluster need not be the one Logistis records, and asking it
/// would wait on a cluster that may not even be reachable.
pub(crate) async fn resolve_kind(
    input: &str,
    connection: &Connection,
    direct: bool,
) -> Result<KindInfo, UnknownKind> {
    let query = KindQuery::parse(input);
    if let Some(kind) = kinds::resolve(&kinds::built_in(), &query) {
        return Ok(kind.clone());
    }
    let sources = match &connection.kube {
        _ if direct => Sources::ServerGiven,
        Some(client) => match discovery::discover(client).await {
            Ok(found) => {
                if let Some(kind) = kinds::resolve(&found, &query) {
                    return Ok(kind.clone());
                }
                Sources::Discovered
            }
            Err(error) => Sources::Unreached {
                discovery_error: Some(format!("{:#}", anyhow::Error::from(error))),
            },
        },
        None => Sources::Unreached {
            discovery_error: connection.kube_error.clone(),
        },
    };
    let kind = kinds::pass_through(&query).ok_or(UnknownKind {
        input: input.to_owned(),
        sources,
    })?;
    let why = if direct {
        "is not in the built-in table"
    } else {
        "is not served by the cluster"
    };
    note(&format!(
        "{} {why}; asking for its recorded history as written.",
        kind.qualified()
    ));
    Ok(kind)
}

async fn overview(
    connection: &Connection,
    cluster: Option<&str>,
    output: Option<OutputFormat>,
    renderer: &Renderer,
) -> Result<()> {
    let mut list = query::namespaces(&connection.query, cluster).await?;
    if let Some(cluster) = cluster {
        // An older server ignores the parameter: filter here too.
        list.items.retain(|row| row.cluster == cluster);
    }
    match output.unwrap_or(OutputFormat::Table) {
        OutputFormat::Json => emit(&render::json(&list)?),
        OutputFormat::Yaml => emit(&render::yaml(&list)?),
        OutputFormat::Table if list.items.is_empty() => {
            note("No changes recorded yet.");
            Ok(())
        }
        OutputFormat::Table => emit(&table::overview(&list, renderer)),
        other => usage(format!("-o {other:?} does not apply to the overview").to_lowercase()),
    }
}

async fn show_events(
    connection: &Connection,
    list: EventList,
    query: &EventQuery,
    output: Option<OutputFormat>,
    renderer: &Renderer,
) -> Result<()> {
    let filtered = query.user.is_some()
        || query.operation.is_some()
        || query.status.is_some()
        || query.since.is_some()
        || query.until.is_some();
    if list.items.is_empty() {
        if let (Some(name), false) = (&query.name, filtered) {
            let kind = query.kind.as_deref().unwrap_or_default();
            return Err(NotFound(format!(
                "no changes recorded for {kind} {name:?}{}",
                place(query.namespace.as_deref())
            ))
            .into());
        }
        if matches!(output, None | Some(OutputFormat::Table)) {
            note(&format!(
                "No changes found{}.",
                place(query.namespace.as_deref())
            ));
            return Ok(());
        }
    }
    match output.unwrap_or(OutputFormat::Table) {
        OutputFormat::Table => {
            emit(&table::events(
                &list.items,
                query.namespace.is_none(),
                renderer,
            ))?;
        }
        OutputFormat::Patch => emit(&change::patches(&list.items, renderer)?)?,
        OutputFormat::Diff => {
            for summary in &list.items {
                // Lists carry patches only; the diff needs the objects around them.
                let event =
                    query::event(&connection.query, &summary.resource.namespace, summary.id)
                        .await
                        .with_context(|| format!("could not read event {}", summary.id))?;
                emit(&change::event_diff(&event, renderer)?)?;
            }
        }
        OutputFormat::Json => emit(&render::json(&list)?)?,
        OutputFormat::Yaml => emit(&render::yaml(&list)?)?,
        OutputFormat::Blame => return usage("-o blame is about one object: give KIND and NAME"),
    }
    if list.continue_token.is_some() && matches!(output, None | Some(OutputFormat::Table)) {
        note(&format!(
            "Showing the newest {}; there are more (raise --limit, 0 for all).",
            list.items.len()
        ));
    }
    Ok(())
}

fn place(namespace: Option<&str>) -> String {
    match namespace {
        None => String::new(),
        Some("_") => " (cluster-scoped)".to_owned(),
        Some(ns) => format!(" in namespace {ns}"),
    }
}

async fn ask_object(
    cli: &Cli,
    connection: &Connection,
    object: &ObjectPath,
    events: &EventQuery,
    question: Question,
    renderer: &Renderer,
) -> Result<()> {
    let client = &connection.query;
    let output = cli.output;
    let only = |allowed: &[OutputFormat], flag: &str| -> Result<()> {
        match output {
            Some(format) if !allowed.contains(&format) => usage(format!(
                "{flag} prints {}",
                allowed
                    .iter()
                    .map(|f| format!("-o {f:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => Ok(()),
        }
    };
    use OutputFormat::{Diff, Json, Patch, Table, Yaml};
    match question {
        Question::Changes => {
            let list = query::events(client, events).await?;
            show_events(connection, list, events, output, renderer).await
        }
        Question::Versions => {
            only(&[Table, Json, Yaml], "--versions")?;
            let list = query::versions(client, object).await?;
            if let Some(text) = structured(output, &list)? {
                return emit(&text);
            }
            if list.trimmed_events > 0 {
                note(&format!(
                    "Retention removed {} older events: the history starts at version {}.",
                    list.trimmed_events, list.first_version
                ));
            }
            emit(&table::versions(&list, renderer))
        }
        Question::Diff => {
            only(&[Table, Diff, Patch, Json, Yaml], "--diff")?;
            let range = cli.history.diff.unwrap_or(crate::cli::VersionRange {
                from: None,
                to: None,
            });
            let diff =
                query::diff(client, object, range.from, range.to, cli.path.as_deref()).await?;
            if let Some(text) = structured(output, &diff)? {
                return emit(&text);
            }
            if output == Some(Patch) {
                return emit(&render::json(&diff.patch)?);
            }
            if diff.unified.is_empty() {
                note(&format!(
                    "No difference between version {} and version {}.",
                    diff.from.version, diff.to.version
                ));
                return Ok(());
            }
            note(&format!(
                "version {} ({} by {}, {}) .. version {} ({} by {}, {})",
                diff.from.version,
                diff.from.operation,
                diff.from.user.username,
                renderer.time(diff.from.time),
                diff.to.version,
                diff.to.operation,
                diff.to.user.username,
                renderer.time(diff.to.time),
            ));
            emit(&change::colorize(&diff.unified, renderer.painter))
        }
        Question::Bisect => {
            only(&[Table, Json, Yaml], "--bisect")?;
            let spec = cli
                .history
                .bisect
                .clone()
                .context("--bisect without a value")?;
            let answer = query::bisect(client, object, &spec.path, &spec.value).await?;
            if let Some(text) = structured(output, &answer)? {
                return emit(&text);
            }
            emit(&table::bisect(&answer, &spec.path, renderer))
        }
        Question::At(number) => {
            only(&[Table, Json, Yaml], "--at")?;
            let detail = query::version(client, object, number).await?;
            let summary = &detail.summary;
            note(&format!(
                "version {} of {}: {} by {}, {}",
                summary.version,
                display(object),
                summary.operation,
                summary.user.username,
                renderer.time(summary.time)
            ));
            // The manifest itself, ready for `kubectl apply -f -` or a diff tool.
            match output {
                Some(Json) => emit(&render::json(&detail.object)?),
                _ => emit(&render::yaml(&detail.object)?),
            }
        }
        Question::FieldHistory(field) => {
            only(&[Table, Json, Yaml], "--path")?;
            let history = query::field_history(client, object, &field).await?;
            if let Some(text) = structured(output, &history)? {
                return emit(&text);
            }
            if history.items.is_empty() {
                note(&format!("{field} was never set on {}.", display(object)));
                return Ok(());
            }
            emit(&table::field_history(&history, renderer))
        }
        Question::Blame => {
            let answer = query::blame(client, object).await?;
            for line in blame::notes(&answer) {
                note(&line);
            }
            emit(&blame::blame(&answer, renderer))
        }
    }
}

fn display(object: &ObjectPath) -> String {
    let mut text = object.kind.clone();
    if !object.group.is_empty() {
        text.push('.');
        text.push_str(&object.group);
    }
    text.push('/');
    text.push_str(&object.name);
    if !object.namespace.is_empty() {
        text.push_str(" in ");
        text.push_str(&object.namespace);
    }
    text
}

/// The answer as JSON or YAML when one of those was asked for.
fn structured<T: serde::Serialize>(
    output: Option<OutputFormat>,
    value: &T,
) -> Result<Option<String>> {
    Ok(match output {
        Some(OutputFormat::Json) => Some(render::json(value)?),
        Some(OutputFormat::Yaml) => Some(render::yaml(value)?),
        _ => None,
    })
}

/// Writes to stdout. A closed pipe (`| head`) is not an error: the reader has what it wanted.
fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("could not write to stdout"),
    }
}

fn note(text: &str) {
    eprintln!("{text}");
}
