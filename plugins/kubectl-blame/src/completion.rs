//! Shell completion, in the protocol kubectl (1.26 and later) speaks with plugins: to
//! complete `kubectl blame ARGS…` it runs the executable `kubectl_complete-blame ARGS…` (the
//! last argument is the word being completed, possibly empty) and reads one candidate per
//! line (`value` or `value<TAB>description`) and a last line `:N`, Cobra's
//! `ShellCompDirective` bits. `kubectl blame __complete ARGS…` answers the same, and the
//! scripts of `kubectl blame completion bash|zsh|fish` call it for `kubectl-blame` run alone.
//!
//! Flags and their fixed values come from the clap definition itself; kinds from the built-in
//! table; namespaces and object names from the query API, reached as the command itself
//! would reach it (`--server`, the kubeconfig, the env vars), within a short timeout. A
//! failure to reach it completes nothing rather than printing an error into the shell.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::cli::Cli;
use crate::kinds::{self, KindQuery};
use crate::query::{self, EventQuery};
use crate::transport::Connection;

/// Cobra's directives (`cobra.ShellCompDirective`).
pub const DIRECTIVE_DEFAULT: u32 = 0;
pub const DIRECTIVE_NO_FILE_COMP: u32 = 4;
/// A completion must not hang the shell.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub description: String,
}

impl Candidate {
    fn new(value: impl Into<String>, description: impl Into<String>) -> Candidate {
        Candidate {
            value: value.into(),
            description: description.into(),
        }
    }
}

/// What the last word needs, worked out from the words alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Flag names starting with the word.
    Flags,
    /// Values of a flag, each to be prefixed (`--output=` when completing `--output=ya`).
    Values { flag: String, prefix: String },
    /// Kinds (plural resource names).
    Kinds,
    /// Names of objects of a kind, each to be prefixed (`deploy/` for `deploy/we`).
    Names { kind: String, prefix: String },
    /// Nothing to offer (a third positional, a free-form value).
    Nothing,
}

/// A flag of the command line: its names and whether it takes a value.
struct Flag {
    long: String,
    short: Option<char>,
    takes_value: bool,
    help: String,
    values: Vec<Candidate>,
}

fn flags() -> Vec<Flag> {
    let command = Cli::command();
    command
        .get_arguments()
        .filter(|arg| !arg.is_positional())
        .filter_map(|arg| {
            let long = arg.get_long()?.to_owned();
            let takes_value = arg.get_action().takes_values();
            let values = arg
                .get_possible_values()
                .into_iter()
                .filter(|value| !value.is_hide_set())
                .map(|value| {
                    Candidate::new(
                        value.get_name(),
                        value.get_help().map(|h| h.to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            let help = arg
                .get_help()
                .map(|h| h.to_string())
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_owned();
            Some(Flag {
                long,
                short: arg.get_short(),
                takes_value,
                help,
                values,
            })
        })
        .chain([Flag {
            long: "help".into(),
            short: Some('h'),
            takes_value: false,
            help: "Print help".into(),
            values: Vec::new(),
        }])
        .collect()
}

fn find_flag<'a>(flags: &'a [Flag], word: &str) -> Option<&'a Flag> {
    if let Some(long) = word.strip_prefix("--") {
        flags.iter().find(|f| f.long == long)
    } else {
        let mut chars = word.strip_prefix('-')?.chars();
        let short = chars.next()?;
        chars.next().is_none().then_some(())?;
        flags.iter().find(|f| f.short == Some(short))
    }
}

/// The words before the last, split into flags (with their values) and positionals.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    flag_words: Vec<String>,
    positionals: Vec<String>,
    /// The last complete word is a flag still waiting for its value.
    pending: Option<String>,
}

fn parse(words: &[String], flags: &[Flag]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut index = 0;
    while index < words.len() {
        let word = &words[index];
        if word.starts_with('-') && word.len() > 1 {
            let name = word.split_once('=').map_or(word.as_str(), |(name, _)| name);
            let flag = find_flag(flags, name);
            parsed.flag_words.push(word.clone());
            if flag.is_some_and(|f| f.takes_value) && !word.contains('=') {
                match words.get(index + 1) {
                    Some(value) => {
                        parsed.flag_words.push(value.clone());
                        index += 1;
                    }
                    None => {
                        parsed.flag_words.pop();
                        parsed.pending = flag.map(|f| f.long.clone());
                    }
                }
            }
        } else {
            parsed.positionals.push(word.clone());
        }
        index += 1;
    }
    parsed
}

/// What to complete for `words` (the last one is the word under the cursor).
pub fn need(words: &[String]) -> Need {
    let flags = flags();
    let (current, before) = match words.split_last() {
        Some((current, before)) => (current.as_str(), before),
        None => ("", &[][..]),
    };
    let parsed = parse(before, &flags);
    if let Some(flag) = parsed.pending {
        return Need::Values {
            flag,
            prefix: String::new(),
        };
    }
    if let Some((name, _)) = current.split_once('=')
        && name.starts_with("--")
    {
        return match find_flag(&flags, name) {
            Some(flag) if flag.takes_value => Need::Values {
                flag: flag.long.clone(),
                prefix: format!("{name}="),
            },
            _ => Need::Nothing,
        };
    }
    if current.starts_with('-') {
        return Need::Flags;
    }
    match parsed.positionals.as_slice() {
        [] => match current.split_once('/') {
            Some((kind, _)) => Need::Names {
                kind: kind.to_owned(),
                prefix: format!("{kind}/"),
            },
            None => Need::Kinds,
        },
        [kind] if !kind.contains('/') => Need::Names {
            kind: kind.clone(),
            prefix: String::new(),
        },
        _ => Need::Nothing,
    }
}

/// The answer for `words`: candidates (already filtered by the word under the cursor) and
/// the directive.
pub async fn complete(words: &[String]) -> (Vec<Candidate>, u32) {
    let current = words.last().map(String::as_str).unwrap_or_default();
    let flags = flags();
    let (candidates, directive) = match need(words) {
        Need::Flags => {
            let mut candidates = Vec::new();
            for flag in &flags {
                candidates.push(Candidate::new(
                    format!("--{}", flag.long),
                    flag.help.clone(),
                ));
                if let Some(short) = flag.short {
                    candidates.push(Candidate::new(format!("-{short}"), flag.help.clone()));
                }
            }
            (candidates, DIRECTIVE_NO_FILE_COMP)
        }
        Need::Values { flag, prefix } => {
            let found = flags.iter().find(|f| f.long == flag);
            let values = match found {
                Some(flag) if !flag.values.is_empty() => flag.values.clone(),
                _ if flag == "namespace" => namespaces(words).await,
                // Files: leave them to the shell.
                _ if flag == "kubeconfig" || flag == "certificate-authority" => {
                    return (Vec::new(), DIRECTIVE_DEFAULT);
                }
                _ => Vec::new(),
            };
            let values = values
                .into_iter()
                .map(|c| Candidate::new(format!("{prefix}{}", c.value), c.description))
                .collect();
            (values, DIRECTIVE_NO_FILE_COMP)
        }
        Need::Kinds => (kind_candidates(), DIRECTIVE_NO_FILE_COMP),
        Need::Names { kind, prefix } => {
            let names = names(words, &kind)
                .await
                .into_iter()
                .map(|c| Candidate::new(format!("{prefix}{}", c.value), c.description))
                .collect();
            (names, DIRECTIVE_NO_FILE_COMP)
        }
        Need::Nothing => (Vec::new(), DIRECTIVE_NO_FILE_COMP),
    };
    let candidates = candidates
        .into_iter()
        .filter(|c| c.value.starts_with(current))
        .collect();
    (candidates, directive)
}

/// The lines kubectl (or the shell scripts) read.
pub fn render(candidates: &[Candidate], directive: u32) -> String {
    let mut out = String::new();
    for candidate in candidates {
        out.push_str(&candidate.value);
        if !candidate.description.is_empty() {
            out.push('\t');
            out.push_str(&candidate.description);
        }
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

fn kind_candidates() -> Vec<Candidate> {
    kinds::built_in()
        .into_iter()
        .map(|kind| {
            let mut description = kind.qualified();
            if !kind.short_names.is_empty() {
                description.push_str(&format!(" ({})", kind.short_names.join(", ")));
            }
            Candidate::new(kind.plural, description)
        })
        .collect()
}

/// The command line of the words before the cursor, for the connection and the namespace.
fn context(words: &[String]) -> Option<Cli> {
    let flags = flags();
    let before = words.split_last().map_or(&[][..], |(_, before)| before);
    let parsed = parse(before, &flags);
    let mut cli =
        Cli::try_parse_from(std::iter::once("kubectl-blame".to_owned()).chain(parsed.flag_words))
            .ok()?;
    if cli.connection.request_timeout.is_zero() || cli.connection.request_timeout > TIMEOUT {
        cli.connection.request_timeout = TIMEOUT;
    }
    Some(cli)
}

async fn namespaces(words: &[String]) -> Vec<Candidate> {
    let Some(cli) = context(words) else {
        return Vec::new();
    };
    let Ok(connection) = Connection::new(&cli.connection).await else {
        return Vec::new();
    };
    let Ok(list) = query::namespaces(&connection.query, None).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|summary| !summary.namespace.is_empty())
        .map(|summary| Candidate::new(summary.namespace, format!("{} changes", summary.events)))
        .collect()
}

/// Names recorded for a kind (in the namespace the command would use), newest change first
/// in the description.
async fn names(words: &[String], kind: &str) -> Vec<Candidate> {
    let Some(kind) = kinds::resolve(&kinds::built_in(), &KindQuery::parse(kind)).cloned() else {
        return Vec::new();
    };
    let Some(cli) = context(words) else {
        return Vec::new();
    };
    let Ok(connection) = Connection::new(&cli.connection).await else {
        return Vec::new();
    };
    let namespace = if !kind.namespaced {
        Some("_".to_owned())
    } else if cli.all_namespaces {
        None
    } else {
        Some(
            cli.namespace
                .clone()
                .unwrap_or_else(|| connection.default_namespace.clone()),
        )
    };
    let events = EventQuery {
        namespace,
        group: Some(if kind.group.is_empty() {
            "core".to_owned()
        } else {
            kind.group.clone()
        }),
        kind: Some(kind.kind.clone()),
        limit: query::MAX_PAGE,
        ..EventQuery::default()
    };
    let Ok(list) = query::events(&connection.query, &events).await else {
        return Vec::new();
    };
    // Newest first: the first event seen for a name is its latest change.
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for event in list.items {
        let name = event.resource.name.clone();
        latest
            .entry(name)
            .or_insert_with(|| format!("{} by {}", event.operation.as_str(), event.user.username));
    }
    latest
        .into_iter()
        .map(|(name, description)| Candidate::new(name, description))
        .collect()
}

/// `kubectl blame completion SHELL`: a script completing `kubectl-blame` run on its own
/// (through `kubectl`, version 1.26 and later use `kubectl_complete-blame` instead).
pub fn script(shell: &str) -> Option<&'static str> {
    match shell {
        "bash" => Some(BASH),
        "zsh" => Some(ZSH),
        "fish" => Some(FISH),
        _ => None,
    }
}

const BASH: &str = r#"# bash completion for kubectl-blame: source <(kubectl blame completion bash)
_kubectl_blame() {
    local cur="${COMP_WORDS[COMP_CWORD]}" out directive line
    local -a values=()
    out="$(kubectl-blame __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" || return
    directive="${out##*:}"
    while IFS= read -r line; do
        [[ "$line" == :* || -z "$line" ]] && continue
        values+=("${line%%$'\t'*}")
    done <<< "$out"
    COMPREPLY=()
    if (( ${#values[@]} > 0 )); then
        mapfile -t COMPREPLY < <(compgen -W "${values[*]}" -- "$cur")
    elif (( (directive & 4) == 0 )); then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -F _kubectl_blame kubectl-blame
"#;

const ZSH: &str = r#"#compdef kubectl-blame
# zsh completion for kubectl-blame: source <(kubectl blame completion zsh)
_kubectl_blame() {
    local -a lines described
    local line directive
    lines=("${(@f)$(kubectl-blame __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    directive="${lines[-1]#:}"
    for line in "${(@)lines[1,-2]}"; do
        [[ -z "$line" ]] && continue
        if [[ "$line" == *$'\t'* ]]; then
            described+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
        else
            described+=("${line//:/\\:}")
        fi
    done
    if (( ${#described} > 0 )); then
        _describe 'kubectl-blame' described
    elif (( (directive & 4) == 0 )); then
        _files
    fi
}
compdef _kubectl_blame kubectl-blame
"#;

const FISH: &str = r#"# fish completion for kubectl-blame: kubectl blame completion fish | source
function __kubectl_blame_complete
    set -l words (commandline -opc)[2..-1] (commandline -ct)
    kubectl-blame __complete $words 2>/dev/null | string match -v -r '^:'
end
complete -c kubectl-blame -f -a '(__kubectl_blame_complete)'
"#;

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    #[rstest]
    #[case("", Need::Kinds)]
    #[case("dep", Need::Kinds)]
    #[case("deploy ", Need::Names { kind: "deploy".into(), prefix: String::new() })]
    #[case("deploy/we", Need::Names { kind: "deploy".into(), prefix: "deploy/".into() })]
    #[case("-n shop deploy w", Need::Names { kind: "deploy".into(), prefix: String::new() })]
    #[case("deploy web ", Need::Nothing)]
    #[case("deploy/web ", Need::Nothing)]
    #[case("--", Need::Flags)]
    #[case("deploy --ver", Need::Flags)]
    #[case("-n ", Need::Values { flag: "namespace".into(), prefix: String::new() })]
    #[case("--namespace sh", Need::Values { flag: "namespace".into(), prefix: String::new() })]
    #[case("deploy web -o ", Need::Values { flag: "output".into(), prefix: String::new() })]
    #[case("--output=ya", Need::Values { flag: "output".into(), prefix: "--output=".into() })]
    #[case("--limit 5 po ", Need::Names { kind: "po".into(), prefix: String::new() })]
    #[case("--versions po ", Need::Names { kind: "po".into(), prefix: String::new() })]
    fn what_the_last_word_needs(#[case] line: &str, #[case] expected: Need) {
        assert_eq!(need(&words(line)), expected, "{line:?}");
    }

    #[tokio::test]
    async fn flags_and_fixed_values_come_from_the_clap_definition() {
        let (found, directive) = complete(&words("deploy web --bis")).await;
        assert_eq!(directive, DIRECTIVE_NO_FILE_COMP);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value, "--bisect");
        assert!(found[0].description.contains("first version"), "{found:?}");

        let (found, _) = complete(&words("deploy web -o ")).await;
        let values: Vec<&str> = found.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, ["table", "patch", "diff", "json", "yaml", "blame"]);

        let (found, _) = complete(&words("--operation=up")).await;
        assert_eq!(found[0].value, "--operation=update");

        let (found, _) = complete(&words("deploy")).await;
        assert_eq!(found[0].value, "deployments");
        assert_eq!(found[0].description, "Deployment.apps (deploy)");

        // Files are the shell's business.
        assert_eq!(
            complete(&words("--kubeconfig ")).await,
            (Vec::new(), DIRECTIVE_DEFAULT)
        );
    }

    #[test]
    fn the_answer_is_cobras_format() {
        let text = render(
            &[
                Candidate::new("web", "UPDATE by bob"),
                Candidate::new("api", ""),
            ],
            DIRECTIVE_NO_FILE_COMP,
        );
        assert_eq!(text, "web\tUPDATE by bob\napi\n:4\n");
    }

    #[test]
    fn scripts_exist_for_three_shells() {
        for shell in ["bash", "zsh", "fish"] {
            assert!(script(shell).unwrap().contains("kubectl-blame __complete"));
        }
        assert!(script("powershell").is_none());
    }
}
