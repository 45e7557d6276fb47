//! `dfstream generate serve`: a line server for socket mode (instead of `nc -lk`). Every client
//! gets its own stream of generated lines at `--rate` lines a second (0: as fast as it reads).

use std::future::Future;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{LineMaker, Shape};
use crate::error::{Error, Result};

/// Serves until `shutdown` resolves. `ready` gets the bound address (for port 0).
pub async fn serve(
    listener: TcpListener,
    shape: Shape,
    rate: u64,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut client = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = accepted.map_err(|e| Error::io("accepting a client", e))?;
                log::info!("client {peer} connected");
                let mut shape = shape.clone();
                // Different clients get different (but reproducible) streams.
                shape.seed = shape.seed.wrapping_add(client);
                client += 1;
                tokio::spawn(async move {
                    if let Err(e) = feed(stream, shape, rate).await {
                        log::info!("client {peer} gone: {e}");
                    }
                });
            }
            _ = &mut shutdown => return Ok(()),
        }
    }
}

async fn feed(mut stream: TcpStream, shape: Shape, rate: u64) -> std::io::Result<()> {
    let mut maker = LineMaker::new(shape);
    let mut ticker = (rate > 0).then(|| {
        // Send in ticks of up to 100 lines so that high rates need few wake-ups.
        let per_tick = rate.div_ceil(100).max(1);
        let interval = Duration::from_secs_f64(per_tick as f64 / rate as f64);
        (tokio::time::interval(interval), per_tick)
    });
    let mut text = String::new();
    loop {
        text.clear();
        let lines = match &mut ticker {
            Some((interval, per_tick)) => {
                interval.tick().await;
                *per_tick
            }
            None => 1000,
        };
        let now = crate::time::now_micros();
        for _ in 0..lines {
            maker.line(now, &mut text);
        }
        stream.write_all(text.as_bytes()).await?;
    }
}
