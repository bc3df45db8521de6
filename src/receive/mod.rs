//! Receive: the DICOM listener the ultrasound machine sends its exams to.
//!
//! The accept loop, the association cap and shutdown are async (smol); each
//! association runs its blocking protocol code on smol's blocking pool. On shutdown
//! the loop stops accepting, gives running associations a grace period to finish,
//! then cuts their connections: an instance not yet committed is simply not
//! acknowledged, and its partial spool file removes itself.

pub mod association;
pub mod dimse;
pub mod negotiation;
pub mod pdu;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::Async;

use association::Shared;

/// How long running associations may take to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Refusals answered at once (an A-ASSOCIATE-RJ, so the technician sees why); past
/// this many, a refused connection is closed without an answer, so a flood from a
/// refused address can never tie up the threads real associations need.
const MAX_REFUSING: usize = 4;

/// A bound listener, ready to serve.
pub struct Listener {
    socket: Async<TcpListener>,
    shared: Arc<Shared>,
}

impl Listener {
    pub fn bind(shared: Shared) -> io::Result<Listener> {
        let address = SocketAddr::new(shared.listener.bind, shared.listener.port.0);
        let socket = Async::<TcpListener>::bind(address).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {address}: {e} (is another DICOM service using the port? set [listener] port)"
                ),
            )
        })?;
        Ok(Listener {
            socket,
            shared: Arc::new(shared),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// Serves until `stop` completes, then shuts down as described above.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let active = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(HashMap::<u64, TcpStream>::new()));
        let next_key = AtomicU64::new(0);
        let mut tasks: Vec<smol::Task<()>> = Vec::new();
        let stop = std::pin::pin!(stop);
        let mut stop = stop;
        loop {
            let accepted = smol::future::or(async { Some(self.socket.accept().await) }, async {
                (&mut stop).await;
                None
            })
            .await;
            let (stream, peer) = match accepted {
                None => break,
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    log::error!("accepting a connection failed: {e}");
                    smol::Timer::after(Duration::from_millis(200)).await;
                    continue;
                }
            };
            tasks.retain(|t| !t.is_finished());
            let Ok(stream) = into_blocking(stream) else {
                continue;
            };
            let settings = &self.shared.listener;
            let refusal = if !settings.allowed_addresses.is_empty()
                && !settings
                    .allowed_addresses
                    .iter()
                    .any(|net| net.contains(&peer.ip()))
            {
                Some((
                    "address not in [listener] allowed_addresses".to_owned(),
                    negotiation::address_refused(),
                ))
            } else if active.load(Ordering::SeqCst) >= settings.max_associations.0 as usize {
                let reason = format!(
                    "{} associations already open (max_associations)",
                    settings.max_associations.0
                );
                Some((reason, negotiation::busy()))
            } else {
                None
            };
            if let Some((reason, rj)) = refusal {
                let reason = format!("{peer}: {reason}");
                self.shared
                    .board
                    .record(crate::events::Event::AssociationRefused {
                        reason: reason.clone(),
                    });
                if refusing.load(Ordering::SeqCst) >= MAX_REFUSING {
                    log::debug!("association rejected without an answer: {reason}");
                    drop(stream);
                    continue;
                }
                log::warn!("association rejected: {reason}");
                refusing.fetch_add(1, Ordering::SeqCst);
                let (tls, refusing) = (self.shared.tls.clone(), refusing.clone());
                tasks.push(smol::spawn(smol::unblock(move || {
                    association::refuse(stream, rj, tls.as_ref());
                    refusing.fetch_sub(1, Ordering::SeqCst);
                })));
                continue;
            }
            let key = next_key.fetch_add(1, Ordering::Relaxed);
            if let Ok(clone) = stream.try_clone() {
                open.lock().expect("open lock").insert(key, clone);
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (shared, active, open) = (self.shared.clone(), active.clone(), open.clone());
            tasks.push(smol::spawn(smol::unblock(move || {
                // A bug met by one peer's input ends that association, not the agent:
                // its partial spool files remove themselves as the stack unwinds.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    association::serve(stream, peer, &shared)
                }));
                if served.is_err() {
                    log::error!(
                        "association from {peer} ended by an internal error; the agent goes on"
                    );
                }
                if let Ok(mut open) = open.lock() {
                    open.remove(&key);
                }
                active.fetch_sub(1, Ordering::SeqCst);
            })));
        }

        let running = active.load(Ordering::SeqCst);
        if running > 0 {
            log::info!(
                "waiting up to {}s for {running} association(s) to finish",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        let all = async {
            for task in tasks {
                task.await;
            }
        };
        let all = std::pin::pin!(all);
        let mut all = all;
        let finished = smol::future::or(
            async {
                (&mut all).await;
                true
            },
            async {
                smol::Timer::after(SHUTDOWN_GRACE).await;
                false
            },
        )
        .await;
        if !finished {
            let open = std::mem::take(&mut *open.lock().expect("open lock"));
            log::warn!(
                "cutting {} association(s) still open after the grace period",
                open.len()
            );
            for stream in open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            all.await;
        }
    }
}

/// Takes an accepted socket out of the async reactor for the blocking protocol code.
fn into_blocking(stream: Async<TcpStream>) -> io::Result<TcpStream> {
    let stream = stream.into_inner()?;
    stream.set_nonblocking(false)?;
    // Without it, small responses wait for Nagle's timer: ~40 ms per C-STORE.
    stream.set_nodelay(true)?;
    Ok(stream)
}
