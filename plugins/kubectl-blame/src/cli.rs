//! The command line: clap derive types with help text and env vars, and the small value types
//! (`KIND/NAME`, `A..B`, `PATH=VALUE`, output and colour choices) parsed from it. Nothing here
//! talks to the network; `command` turns a parsed [`Cli`] into requests.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// The default number of events shown for a list (per object, per kind or per namespace).
pub const DEFAULT_LIMIT: usize = 20;
/// How long one request may take before we give up (`0s` waits forever).
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";

/// Who changed what, when: the change history Logistis recorded for a cluster.
///
/// Without arguments: one row per namespace with its latest change. `-n NS`: the latest
/// changes there. `KIND [NAME]` or `KIND/NAME`: the changes of that kind or object (kind,
/// plural, singular and short names, any case; `kind.group` for custom resources).
///
/// Exit status: 0 success, 1 no such object or event, 2 usage error (bad flag, unknown kind,
/// rejected query), 3 the Logistis server could not be reached, refused access or failed.
#[derive(Debug, Parser)]
#[command(name = "kubectl-blame", bin_name = "kubectl blame", version)]
// The last of a repeated flag wins, as in kubectl: aliases and wrappers can add defaults.
#[command(args_override_self = true)]
#[command(after_help = "Examples:\n  \
    kubectl blame                          # every namespace: latest change and count\n  \
    kubectl blame -n shop                  # latest changes in namespace shop\n  \
    kubectl blame deploy web -o diff       # what each change to deployment web did\n  \
    kubectl blame deploy/web -o blame      # who set each line of its manifest\n  \
    kubectl blame deploy web --versions    # its versions\n  \
    kubectl blame deploy web --diff 2..4   # diff between versions 2 and 4\n  \
    kubectl blame deploy web --path spec.replicas         # history of one field\n  \
    kubectl blame deploy web --bisect spec.replicas=0     # who first set it to 0\n\n\
    Locks (see `kubectl blame lock --help`):\n  \
    kubectl blame lock shop --except-groups sre --for 2h --reason 'release 4.2'\n  \
    kubectl blame locks -A\n  \
    kubectl blame unlock NAME -n shop")]
pub struct Cli {
    /// KIND, KIND NAME or KIND/NAME.
    #[arg(value_name = "KIND[/NAME]", num_args = 0..=2)]
    pub target: Vec<String>,

    /// Namespace to look in (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Look in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub history: HistoryArgs,

    /// A field (`spec.replicas`, `spec.template.spec.containers[0].image` or a JSON pointer):
    /// alone, the history of that field; with --diff, restrict the diff to it.
    #[arg(long, value_name = "FIELD", conflicts_with_all = ["versions", "bisect", "at"])]
    pub path: Option<String>,

    /// Output format. Default: a table (a unified diff for --diff, YAML for --at).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,

    /// Show times relative to now (`35m`) or in full (RFC 3339, UTC).
    #[arg(long, value_enum, default_value_t = TimeFormat::Relative, env = "LOGISTIS_BLAME_TIME")]
    pub time: TimeFormat,

    /// Colour diffs and blame: `auto` colours only on a terminal and honours NO_COLOR.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, env = "LOGISTIS_BLAME_COLOR")]
    pub color: ColorChoice,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Filters of event lists.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only changes at or after this time: a duration ago (`2h`, `3d`) or RFC 3339.
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,

    /// Only changes before this time: a duration ago (`30m`) or RFC 3339.
    #[arg(long, value_name = "DURATION|TIME")]
    pub until: Option<String>,

    /// Only changes made by this user (the username the API server authenticated).
    #[arg(long)]
    pub user: Option<String>,

    /// Only changes in this cluster (the `--cluster` name of the Logistis that recorded
    /// them), when several clusters share one Logistis database.
    #[arg(long, value_name = "NAME", env = "LOGISTIS_BLAME_CLUSTER")]
    pub cluster: Option<String>,

    /// Only this operation.
    #[arg(long, value_enum)]
    pub operation: Option<OperationArg>,

    /// Only changes with this confirmation status (several separated by commas):
    /// confirmed, pending, phantom (recorded, never happened), observed (seen by the
    /// watch, no review)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub status: Vec<StatusArg>,

    /// At most this many changes (0: all).
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: usize,
}

/// Questions about the history of one object (they need KIND and NAME).
#[derive(Debug, Args)]
#[group(id = "history_question", multiple = false)]
pub struct HistoryArgs {
    /// List the stored versions of the object.
    #[arg(long)]
    pub versions: bool,

    /// Diff two versions: `A..B`, `A..` (to the newest), `..B`; alone: the newest change.
    #[arg(long, value_name = "A..B", num_args = 0..=1, default_missing_value = "..")]
    pub diff: Option<VersionRange>,

    /// The first version at which a field took a value, e.g. `spec.replicas=0`.
    #[arg(long, value_name = "PATH=VALUE")]
    pub bisect: Option<BisectSpec>,

    /// Print the object as it was at version N.
    #[arg(long, value_name = "N")]
    pub at: Option<u64>,
}

/// How to reach the Logistis query API.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,

    /// Talk to the plain JSON API of a Logistis server at this URL (local use, e.g.
    /// `logistis serve --self-signed`) instead of the aggregated API `logistis.io/v1alpha1`
    /// through the Kubernetes API server, where the cluster's RBAC applies.
    #[arg(long, env = "LOGISTIS_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// With --server: a PEM file of the CA that signed the server's certificate.
    #[arg(
        long,
        env = "LOGISTIS_CERTIFICATE_AUTHORITY",
        value_name = "FILE",
        requires = "server"
    )]
    pub certificate_authority: Option<PathBuf>,

    /// With --server: do not check the server's certificate (insecure).
    #[arg(long, env = "LOGISTIS_INSECURE_SKIP_TLS_VERIFY", requires = "server")]
    pub insecure_skip_tls_verify: bool,

    /// Give up on a request after this long (`0s`: never).
    #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_REQUEST_TIMEOUT)]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Columns; for a list: KEY, OPERATION, USER, TIME and the patch as `op path value`.
    Table,
    /// The RFC 6902 patch of each change.
    Patch,
    /// A unified YAML diff of each change.
    Diff,
    Json,
    Yaml,
    /// The newest manifest of one object with the version, user and time on each line.
    Blame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeFormat {
    Relative,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// A confirmation status, for `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Pending,
    Confirmed,
    Phantom,
    Observed,
}

impl StatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusArg::Pending => "pending",
            StatusArg::Confirmed => "confirmed",
            StatusArg::Phantom => "phantom",
            StatusArg::Observed => "observed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationArg {
    Create,
    Update,
    Delete,
    Connect,
}

impl OperationArg {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationArg::Create => "CREATE",
            OperationArg::Update => "UPDATE",
            OperationArg::Delete => "DELETE",
            OperationArg::Connect => "CONNECT",
        }
    }
}

/// What the positional arguments name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No KIND: the overview, or the changes of a namespace.
    Cluster,
    Kind(String),
    Object {
        kind: String,
        name: String,
    },
}

/// The positional arguments do not name a kind or an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not KIND/NAME: both parts must be non-empty")]
    EmptyPart(String),
    #[error(
        "there is no need to give the kind as a separate argument when using KIND/NAME: \
         use {0:?} alone"
    )]
    KindTwice(String),
}

impl Target {
    /// `[]`, `[KIND]`, `[KIND/NAME]` or `[KIND, NAME]` (clap limits it to two).
    pub fn parse(args: &[String]) -> Result<Target, TargetError> {
        let split = |text: &str| -> Result<Option<(String, String)>, TargetError> {
            match text.split_once('/') {
                None => Ok(None),
                Some((kind, name)) if kind.is_empty() || name.is_empty() || name.contains('/') => {
                    Err(TargetError::EmptyPart(text.to_owned()))
                }
                Some((kind, name)) => Ok(Some((kind.to_owned(), name.to_owned()))),
            }
        };
        match args {
            [] => Ok(Target::Cluster),
            [one] => Ok(match split(one)? {
                Some((kind, name)) => Target::Object { kind, name },
                None => Target::Kind(one.clone()),
            }),
            [kind, name, ..] => {
                if split(kind)?.is_some() {
                    return Err(TargetError::KindTwice(kind.clone()));
                }
                Ok(Target::Object {
                    kind: kind.clone(),
                    name: name.clone(),
                })
            }
        }
    }
}

/// `--diff`: a range of version numbers; an open end is the server's default (the version
/// before the newest, the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

impl FromStr for VersionRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((from, to)) = text.split_once("..") else {
            return Err(format!(
                "expected A..B, A.. or ..B (version numbers), got {text:?}"
            ));
        };
        let number = |part: &str| -> Result<Option<u64>, String> {
            let part = part.trim().trim_start_matches(['v', 'V']);
            if part.is_empty() {
                return Ok(None);
            }
            part.parse()
                .map(Some)
                .map_err(|_| format!("{part:?} is not a version number"))
        };
        Ok(VersionRange {
            from: number(from)?,
            to: number(to)?,
        })
    }
}

/// `--bisect PATH=VALUE`. The value goes to the server as typed: it reads JSON when it can
/// (`3`, `true`, `"x"`) and a plain string otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BisectSpec {
    pub path: String,
    pub value: String,
}

impl FromStr for BisectSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((path, value)) if !path.is_empty() => Ok(BisectSpec {
                path: path.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!("expected PATH=VALUE, got {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use rstest::rstest;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-blame").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[rstest]
    #[case(&[], Target::Cluster)]
    #[case(&["deploy"], Target::Kind("deploy".into()))]
    #[case(&["deploy/web"], Target::Object { kind: "deploy".into(), name: "web".into() })]
    #[case(&["Deployment", "web"], Target::Object { kind: "Deployment".into(), name: "web".into() })]
    fn targets(#[case] args: &[&str], #[case] expected: Target) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        assert_eq!(Target::parse(&args).unwrap(), expected);
    }

    #[rstest]
    #[case(&["deploy/"])]
    #[case(&["/web"])]
    #[case(&["deploy/web/x"])]
    #[case(&["deploy/web", "web"])]
    fn bad_targets(#[case] args: &[&str]) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        assert!(Target::parse(&args).is_err());
    }

    #[test]
    fn three_positionals_are_rejected_by_clap() {
        assert!(parse(&["deploy", "web", "extra"]).is_err());
    }

    #[rstest]
    #[case("2..4", Some(2), Some(4))]
    #[case("v2..v4", Some(2), Some(4))]
    #[case("3..", Some(3), None)]
    #[case("..5", None, Some(5))]
    #[case("..", None, None)]
    fn version_ranges(#[case] text: &str, #[case] from: Option<u64>, #[case] to: Option<u64>) {
        assert_eq!(
            text.parse::<VersionRange>().unwrap(),
            VersionRange { from, to }
        );
    }

    #[rstest]
    #[case("3")]
    #[case("a..b")]
    fn bad_version_ranges(#[case] text: &str) {
        assert!(text.parse::<VersionRange>().is_err());
    }

    #[test]
    fn bare_diff_flag_means_the_newest_change() {
        let cli = parse(&["deploy", "web", "--diff"]).unwrap();
        assert_eq!(
            cli.history.diff,
            Some(VersionRange {
                from: None,
                to: None
            })
        );
        let cli = parse(&["deploy", "web", "--diff", "1..3", "--path", "spec.replicas"]).unwrap();
        assert_eq!(
            cli.history.diff,
            Some(VersionRange {
                from: Some(1),
                to: Some(3)
            })
        );
        assert_eq!(cli.path.as_deref(), Some("spec.replicas"));
    }

    #[test]
    fn bisect_keeps_everything_after_the_first_equals_sign() {
        let spec: BisectSpec = "metadata.annotations.a=b=c".parse().unwrap();
        assert_eq!(spec.path, "metadata.annotations.a");
        assert_eq!(spec.value, "b=c");
        assert!("=3".parse::<BisectSpec>().is_err());
        assert!("spec.replicas".parse::<BisectSpec>().is_err());
    }

    #[test]
    fn history_questions_exclude_each_other() {
        assert!(parse(&["deploy", "web", "--versions", "--diff", "1..2"]).is_err());
        assert!(parse(&["deploy", "web", "--bisect", "a=b", "--path", "a"]).is_err());
    }

    #[test]
    fn kubectl_style_flags_parse() {
        let cli = parse(&[
            "po",
            "-n",
            "shop",
            "--since",
            "2h",
            "--user",
            "alice",
            "--operation",
            "update",
            "--limit",
            "5",
            "-o",
            "yaml",
            "--time",
            "full",
            "--color",
            "never",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.filter.since.as_deref(), Some("2h"));
        assert_eq!(cli.filter.user.as_deref(), Some("alice"));
        assert_eq!(cli.filter.operation, Some(OperationArg::Update));
        assert_eq!(cli.filter.limit, 5);
        assert_eq!(cli.output, Some(OutputFormat::Yaml));
        assert_eq!(cli.time, TimeFormat::Full);
        assert_eq!(cli.color, ColorChoice::Never);
        assert!(parse(&["-A", "-n", "shop"]).is_err());
    }

    #[test]
    fn tls_flags_need_a_server() {
        assert!(parse(&["--insecure-skip-tls-verify"]).is_err());
        let cli = parse(&[
            "--server",
            "https://127.0.0.1:8443",
            "--insecure-skip-tls-verify",
        ])
        .unwrap();
        assert!(cli.connection.insecure_skip_tls_verify);
        assert_eq!(cli.connection.request_timeout, Duration::from_secs(30));
    }
}
