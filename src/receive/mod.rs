//! Receive: the DICOM listener the ultrasound machine sends its exams to.
//!
//! The accept loop, the association cap and shutdown are async (smol); each
//! association runs its blocking protocol code on smol's blocking pool. On shutdown
//! the loop stops accepting, gives running associations a grace period to finish,
//! then cuts their connections: an instance not yet committed is simply not
//! acknowledged, and its partial spool file removes itself.

pub mod association;
pub mod calling;
pub mod commitment;
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
use dicom_ul::pdu::AssociationRJ;

/// How long running associations may take to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Refusals answered at once (an A-ASSOCIATE-RJ, so the technician sees why); past
/// this many, a refused connection is closed without an answer, so a flood from a
/// refused address can never tie up the threads real associations need.
const MAX_REFUSING: usize = 4;
/// How long a connection over the cap waits for a slot, in steps.
const SETTLE_STEP: Duration = Duration::from_millis(10);
const SETTLE_STEPS: u32 = 10;

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
        let mut connections = Connections::default();
        let mut stop = std::pin::pin!(stop);
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
            connections.tasks.retain(|t| !t.is_finished());
            let Ok(stream) = into_blocking(stream) else {
                continue;
            };
            connections
                .settle(self.shared.listener.max_associations.0 as usize)
                .await;
            match self.refusal(peer, &connections) {
                Some((reason, rj)) => self.refuse(stream, peer, reason, rj, &mut connections),
                None => self.serve(stream, peer, &mut connections),
            }
        }
        connections.shut_down().await;
    }

    /// Why a connection from `peer` is refused before negotiation, if it is.
    fn refusal(
        &self,
        peer: SocketAddr,
        connections: &Connections,
    ) -> Option<(String, AssociationRJ)> {
        let settings = &self.shared.listener;
        if !settings.allowed_addresses.is_empty()
            && !settings
                .allowed_addresses
                .iter()
                .any(|net| net.contains(&peer.ip()))
        {
            return Some((
                "address not in [listener] allowed_addresses".to_owned(),
                negotiation::address_refused(),
            ));
        }
        let max = settings.max_associations.0 as usize;
        (connections.active.load(Ordering::SeqCst) >= max).then(|| {
            (
                format!("{max} associations already open (max_associations)"),
                negotiation::busy(),
            )
        })
    }

    /// Refuses a connection: with an A-ASSOCIATE-RJ while few refusals are under
    /// way, else by closing it at once.
    fn refuse(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        reason: String,
        rj: AssociationRJ,
        connections: &mut Connections,
    ) {
        let reason = format!("{peer}: {reason}");
        self.shared
            .board
            .record(crate::status::counters::Event::AssociationRefused {
                reason: reason.clone(),
            });
        if connections.refusing.load(Ordering::SeqCst) >= MAX_REFUSING {
            log::debug!("association rejected without an answer: {reason}");
            return;
        }
        log::warn!("association rejected: {reason}");
        connections.refusing.fetch_add(1, Ordering::SeqCst);
        let (tls, refusing) = (self.shared.tls.clone(), connections.refusing.clone());
        connections.tasks.push(smol::spawn(smol::unblock(move || {
            association::refuse(stream, rj, tls.as_ref());
            refusing.fetch_sub(1, Ordering::SeqCst);
        })));
    }

    /// Runs an association on the blocking pool, kept in the open set so that
    /// shutdown can cut it.
    fn serve(&self, stream: TcpStream, peer: SocketAddr, connections: &mut Connections) {
        let key = connections.next_key.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            connections
                .open
                .lock()
                .expect("open lock")
                .insert(key, clone);
        }
        connections.active.fetch_add(1, Ordering::SeqCst);
        let (shared, active, open) = (
            self.shared.clone(),
            connections.active.clone(),
            connections.open.clone(),
        );
        connections.tasks.push(smol::spawn(smol::unblock(move || {
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
}

/// The connections the listener has handed to the blocking pool.
#[derive(Default)]
struct Connections {
    /// Associations being served (the cap counts these).
    active: Arc<AtomicUsize>,
    /// Refusals being answered.
    refusing: Arc<AtomicUsize>,
    /// A second handle on each association's socket, to cut it at shutdown.
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    next_key: AtomicU64,
    tasks: Vec<smol::Task<()>>,
}

impl Connections {
    /// At the cap, waits a moment for a slot: an association that has just
    /// released may still be finishing on its thread, and a modality sending its
    /// exams in quick successive associations must not be told the box is busy.
    async fn settle(&self, max: usize) {
        for _ in 0..SETTLE_STEPS {
            if self.active.load(Ordering::SeqCst) < max {
                return;
            }
            smol::Timer::after(SETTLE_STEP).await;
        }
    }

    /// Gives running associations the grace period, then cuts what is still open.
    async fn shut_down(self) {
        let running = self.active.load(Ordering::SeqCst);
        if running > 0 {
            log::info!(
                "waiting up to {}s for {running} association(s) to finish",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        let tasks = self.tasks;
        let mut all = std::pin::pin!(async {
            for task in tasks {
                task.await;
            }
        });
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
            let open = std::mem::take(&mut *self.open.lock().expect("open lock"));
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
