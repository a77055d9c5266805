//! `logistis demo`: posts a scripted history to a running server's webhook, as the API server
//! would, so that `kubectl blame` and the query API have something to show without a cluster.
//!
//! The history ([`story`]) is several people and service accounts working on two namespaces:
//! a Deployment created, scaled, re-imaged, scaled to zero through the `scale` subresource
//! and back, a ConfigMap edited, a Secret rotated, an exec into a pod, a status write that is
//! noise, a delete. The README's examples are captured from exactly this (see the e2e test
//! `readme`), so what a newcomer reads is what a fresh clone prints.

pub mod story;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where `logistis serve --self-signed` listens and keeps its CA by default.
pub const DEFAULT_WEBHOOK: &str = "https://127.0.0.1:8443/validate";
pub const DEFAULT_CA: &str = "logistis-data/tls/ca.crt";

/// `logistis demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The webhook of the running server
    #[arg(long, value_name = "URL", env = "LOGISTIS_DEMO_WEBHOOK", default_value = DEFAULT_WEBHOOK)]
    webhook: String,
    /// The CA that signed the server's certificate (PEM); `logistis serve --self-signed`
    /// prints its path
    #[arg(
        long,
        value_name = "FILE",
        env = "LOGISTIS_CERTIFICATE_AUTHORITY",
        default_value = DEFAULT_CA
    )]
    certificate_authority: PathBuf,
    /// Do not check the server's certificate (insecure)
    #[arg(long, env = "LOGISTIS_INSECURE_SKIP_TLS_VERIFY")]
    insecure_skip_tls_verify: bool,
    /// Print the reviews (one JSON document per line) instead of posting them
    #[arg(long)]
    print: bool,
}

/// Runs the demo; the steps are printed as they are posted.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let steps = story::story();
    if args.print {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for step in &steps {
            let line = serde_json::to_string(&step.review)?;
            match writeln!(out, "{line}") {
                Ok(()) => {}
                // `logistis demo --print | head`: the reader has what it wanted.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(error) => return Err(error).context("cannot write to stdout"),
            }
        }
        return Ok(());
    }
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if args.insecure_skip_tls_verify {
        client = client.danger_accept_invalid_certs(true);
    } else {
        let path = &args.certificate_authority;
        let pem = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the CA certificate {} (the path `logistis serve --self-signed` \
                 printed; or give --certificate-authority)",
                path.display()
            )
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        client = client.add_root_certificate(ca);
    }
    let client = client.build().context("cannot set up the HTTPS client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        for (index, step) in steps.iter().enumerate() {
            post(&client, &args.webhook, &step.review)
                .await
                .with_context(|| format!("step {} ({})", index + 1, step.what))?;
            println!("{:>2}  {}", index + 1, step.what);
        }
        println!("Posted {} reviews to {}.", steps.len(), args.webhook);
        Ok(())
    })
}

/// Posts one review and checks that the answer is an AdmissionReview for it.
async fn post(client: &reqwest::Client, url: &str, review: &Value) -> anyhow::Result<()> {
    let uid = &review["request"]["uid"];
    let response = client
        .post(url)
        .json(review)
        .send()
        .await
        .map_err(|error| {
            let hint = if error.is_connect() {
                ": is `logistis serve` running there?"
            } else {
                ""
            };
            anyhow::Error::new(error).context(format!("cannot post to {url}{hint}"))
        })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("the answer from {url} (HTTP {status}) is not JSON"))?;
    if !status.is_success() {
        bail!("{url} answered HTTP {status}: {body}");
    }
    if &body["response"]["uid"] != uid || body["response"]["allowed"] != Value::Bool(true) {
        bail!("{url} did not answer the review: {body}");
    }
    Ok(())
}
