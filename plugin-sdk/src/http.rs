//! Outgoing HTTP for sinks, through `wasi:http/outgoing-handler`. The host grants it only
//! for the hosts in the sink's `allowed-hosts`; any other request fails with an error that
//! says it was denied.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// The answer's status and body (at most the first 64 KiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POST `body` to `url` (`http://` or `https://`) with `headers` and wait for the answer.
pub fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<Response, String> {
    let target = Url::parse(url)?;
    let fields = Fields::new();
    // An explicit length: without it the body goes out chunked, which some receivers
    // (and most tiny test servers) do not take.
    fields
        .append("content-length", body.len().to_string().as_bytes())
        .map_err(|error| format!("content-length: {error:?}"))?;
    for (name, value) in headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
    {
        fields
            .append(name, value.as_bytes())
            .map_err(|error| format!("header {name:?}: {error:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&Method::Post)
        .map_err(|()| "method refused")?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| "scheme refused")?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| "authority refused")?;
    request
        .set_path_with_query(Some(&target.path))
        .map_err(|()| "path refused")?;

    let outgoing = request.body().map_err(|()| "request body unavailable")?;
    let future =
        outgoing_handler::handle(request, None).map_err(|error| format!("{url}: {error:?}"))?;
    let written = write_body(outgoing, body);
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        // A refused or failed request closes the body stream too: report the real cause.
        Some(Ok(Err(error))) => return Err(format!("{url}: {error:?}")),
        Some(Err(())) | None => return Err(format!("{url}: no response")),
    };
    written.map_err(|error| format!("{url}: {error}"))?;
    let status = response.status();
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while body.len() < 64 * 1024 {
            match stream.blocking_read(16 * 1024) {
                Ok(chunk) if !chunk.is_empty() => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    }
    Ok(Response { status, body })
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    {
        let stream = outgoing
            .write()
            .map_err(|()| "request body stream unavailable")?;
        // The stream accepts at most 4 KiB per blocking write.
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|error| format!("writing the body: {error:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|error| format!("finishing the body: {error:?}"))
}

/// Just enough of a URL for a request: scheme, authority, path and query.
#[derive(Debug)]
struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("{url:?}: unsupported scheme {other:?}")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Url {
            scheme,
            authority: authority.to_owned(),
            path,
        })
    }
}
