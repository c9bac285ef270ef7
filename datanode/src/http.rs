//! The http port: a status document, JSON, for operators and scripts. `GET /` or
//! `GET /jmx` returns it; anything else is 404. One request per connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::context::DataNodeContext;
use crate::limits::HTTP_REQUEST_SIZE_MAX;

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, ctx: Arc<DataNodeContext>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, &ctx).await {
                debug!(%peer, error = %e, "http request failed");
            }
        });
    }
}

async fn serve_one(mut stream: TcpStream, ctx: &DataNodeContext) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > HTTP_REQUEST_SIZE_MAX {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
        }
    }
    let request_line =
        String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default()).to_string();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/" | "/jmx" | "/status") => {
            respond(&mut stream, "200 OK", "application/json", &status_json(ctx)).await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found; try /jmx\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "only GET\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The status document.
pub fn status_json(ctx: &DataNodeContext) -> String {
    let metrics = &ctx.metrics;
    let engine = metrics.engine.get();
    let volumes: Vec<String> = ctx
        .store
        .volumes()
        .iter()
        .map(|v| {
            let usage = v.usage();
            format!(
                "{{\"path\":{},\"storageId\":{},\"capacity\":{},\"dfsUsed\":{},\"remaining\":{}}}",
                json_string(&v.root.display().to_string()),
                json_string(&v.storage_id),
                usage.capacity,
                usage.dfs_used,
                usage.remaining
            )
        })
        .collect();
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    format!(
        concat!(
            "{{\"name\":\"Hadoop:service=DataNode,name=DataNodeInfo\",\"datanodeUuid\":{},\"xferAddress\":{},",
            "\"blockPoolId\":{},\"engine\":{},\"engineFallbackReason\":{},\"replicas\":{},\"xceivers\":{},",
            "\"transfers\":{},\"bytesRead\":{},\"bytesWritten\":{},\"blocksRead\":{},\"blocksWritten\":{},",
            "\"blocksReplicated\":{},\"opsFailed\":{},\"checksumErrors\":{},\"volumes\":[{}]}}\n"
        ),
        json_string(ctx.store.datanode_uuid()),
        json_string(ctx.xfer_addr.get().map_or("", String::as_str)),
        json_string(ctx.store.block_pool_id().unwrap_or("")),
        json_string(engine.map_or("", |e| e.name)),
        engine.and_then(|e| e.fallback_reason.as_deref()).map_or("null".to_string(), json_string),
        ctx.store.replica_count(),
        metrics.xceivers(),
        metrics.transfers(),
        counter(&metrics.bytes_read),
        counter(&metrics.bytes_written),
        counter(&metrics.blocks_read),
        counter(&metrics.blocks_written),
        counter(&metrics.blocks_replicated),
        counter(&metrics.ops_failed),
        counter(&metrics.checksum_errors),
        volumes.join(","),
    )
}

fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
