//! `logistis store backup` and `logistis store restore`.
//!
//! fjall lets one process own a store directory, so a running server is backed up through
//! the server itself: `backup` downloads `GET /api/v1/backup` (a consistent snapshot, taken
//! while the server keeps recording; the server needs `--allow-backup`), checks it end to
//! end, adds the Secret hashing key from the data dir when it runs beside the server, and
//! writes a backup file (or stdout), or a ready data directory. `restore` turns a backup file
//! into a data directory, offline, for a server to start on.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::hash_key;
use crate::store::backup::{self, BackupReader, BackupWriter, Record, Summary};

pub const DEFAULT_QUERY_URL: &str = "https://127.0.0.1:8081";
pub const DEFAULT_DATA_DIR: &str = "./logistis-data";

/// `logistis store ...`
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Copy a consistent snapshot of a running server's store to FILE, `-` (stdout) or a new
    /// data directory (`DIR/`)
    Backup(BackupArgs),
    /// Create a data directory from a backup file, for a server to start on
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// The running server's query API (it must run with --allow-backup)
    #[arg(long, env = "LOGISTIS_SERVER", value_name = "URL", default_value = DEFAULT_QUERY_URL)]
    server: String,
    /// The CA that signed the server's certificate (PEM)
    #[arg(
        long,
        env = "LOGISTIS_CERTIFICATE_AUTHORITY",
        value_name = "FILE",
        default_value = "logistis-data/tls/ca.crt"
    )]
    certificate_authority: PathBuf,
    /// Do not check the server's certificate (e.g. to 127.0.0.1 inside the pod)
    #[arg(long, env = "LOGISTIS_INSECURE_SKIP_TLS_VERIFY")]
    insecure_skip_tls_verify: bool,
    /// The server's data dir, for its Secret hashing key (included when readable)
    #[arg(long, env = "LOGISTIS_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Where to: a file, `-` for stdout, or a directory (ending in `/`, or existing) that
    /// becomes a data dir
    #[arg(value_name = "FILE|DIR/|-")]
    target: String,
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The data directory to create (its `store/` must not exist or be empty)
    #[arg(long, env = "LOGISTIS_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The backup file, or `-` for stdin
    #[arg(value_name = "FILE|-")]
    backup: String,
}

pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Backup(args) => run_backup(args),
        StoreCommand::Restore(args) => run_restore(args),
    }
}

fn describe(summary: &Summary) -> String {
    let key = if summary
        .files
        .iter()
        .any(|(name, _)| name == hash_key::FILE_NAME)
    {
        "with the Secret hashing key"
    } else {
        "without the Secret hashing key"
    };
    format!(
        "{} keyspaces, {} entries, {key}",
        summary.keyspaces, summary.entries
    )
}

fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let target = args.target.as_str();
    let to_dir = target.ends_with('/') || Path::new(target).is_dir();
    // The download lands beside its destination first: it is checked before it is used.
    let scratch_dir = if target == "-" {
        std::env::temp_dir()
    } else if to_dir {
        let dir = Path::new(target);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {target}"))?;
        dir.to_owned()
    } else {
        Path::new(target)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    };
    let download = tempfile_in(&scratch_dir, ".logistis-backup-download")?;
    let result = (|| {
        fetch(&args, &download)?;
        let key = std::fs::read(args.data_dir.join(hash_key::FILE_NAME)).ok();
        if target == "-" {
            let stdout = std::io::stdout().lock();
            let summary = rewrite(&download, key.as_deref(), BufWriter::new(stdout))?;
            eprintln!("backup: {} → stdout", describe(&summary));
        } else if to_dir {
            let dir = Path::new(target);
            let staged = tempfile_in(dir, ".logistis-backup")?;
            let file = File::create(&staged)?;
            rewrite(&download, key.as_deref(), BufWriter::new(file))?;
            let summary = restore_file(&staged, dir);
            let _ = std::fs::remove_file(&staged);
            eprintln!("backup: {} → the data dir {target}", describe(&summary?));
        } else {
            let partial = PathBuf::from(format!("{target}.partial"));
            let file = File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let summary = rewrite(&download, key.as_deref(), BufWriter::new(file))?;
            std::fs::rename(&partial, target)
                .with_context(|| format!("cannot move the backup to {target}"))?;
            eprintln!("backup: {} → {target}", describe(&summary));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&download);
    result
}

fn tempfile_in(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{prefix}-{}", std::process::id()));
    File::create(&path).with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(path)
}

/// Downloads the server's stream into `path`.
fn fetch(args: &BackupArgs, path: &Path) -> anyhow::Result<()> {
    let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if args.insecure_skip_tls_verify {
        client = client.danger_accept_invalid_certs(true);
    } else if args.server.starts_with("https://") {
        let ca = &args.certificate_authority;
        let pem = std::fs::read(ca).with_context(|| {
            format!(
                "cannot read the CA certificate {} (give --certificate-authority, or \
                 --insecure-skip-tls-verify for 127.0.0.1 inside the pod)",
                ca.display()
            )
        })?;
        client = client.add_root_certificate(
            reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?,
        );
    }
    let client = client.build().context("cannot set up the HTTPS client")?;
    let url = format!("{}/api/v1/backup", args.server.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<logistis_api::ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            bail!("{url} answered HTTP {status}: {message}");
        }
        let mut file = BufWriter::new(File::create(path)?);
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("the backup stream from {url} broke off"))?
        {
            file.write_all(&chunk)?;
        }
        file.flush()?;
        Ok(())
    })
}

/// Copies the downloaded stream (checking it end to end) and adds the key.
fn rewrite<W: Write>(download: &Path, key: Option<&[u8]>, out: W) -> anyhow::Result<Summary> {
    let input = BufReader::new(File::open(download)?);
    let mut reader = BackupReader::new(input).context("the server's answer")?;
    let mut writer = BackupWriter::new(out)?;
    let mut summary = Summary::default();
    while let Some(record) = reader.next_record().context("the server's backup stream")? {
        match record {
            Record::Keyspace(name) => {
                summary.keyspaces += 1;
                writer.keyspace(&name)?;
            }
            Record::Entry(key, value) => {
                summary.entries += 1;
                writer.entry(&key, &value)?;
            }
            Record::File(name, bytes) => writer.file(&name, &bytes)?,
        }
    }
    if let Some(key) = key {
        writer.file(hash_key::FILE_NAME, key)?;
        summary
            .files
            .push((hash_key::FILE_NAME.to_owned(), key.len()));
    }
    writer.finish()?;
    Ok(summary)
}

fn restore_file(path: &Path, data_dir: &Path) -> anyhow::Result<Summary> {
    let input = BufReader::new(File::open(path)?);
    restore_into_data_dir(input, data_dir)
}

fn restore_into_data_dir(input: impl std::io::Read, data_dir: &Path) -> anyhow::Result<Summary> {
    let key = data_dir.join(hash_key::FILE_NAME);
    if key.exists() {
        bail!(
            "{} already exists: restore into a new data directory (a server started there \
             already has its own key)",
            key.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let summary = backup::restore(input, &data_dir.join("store"), data_dir)?;
    if summary
        .files
        .iter()
        .all(|(name, _)| name != hash_key::FILE_NAME)
    {
        eprintln!(
            "note: the backup has no Secret hashing key: the server will create a new one, so \
             the first change of each Secret after the restore shows every value as changed"
        );
    }
    Ok(summary)
}

fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let summary = if args.backup == "-" {
        restore_into_data_dir(BufReader::new(std::io::stdin().lock()), &args.data_dir)?
    } else {
        let file =
            File::open(&args.backup).with_context(|| format!("cannot open {}", args.backup))?;
        restore_into_data_dir(BufReader::new(file), &args.data_dir)?
    };
    eprintln!(
        "restore: {} → {}; start the server with --data-dir {}",
        describe(&summary),
        args.data_dir.display(),
        args.data_dir.display()
    );
    Ok(())
}
