//! The controllers' subscriptions on a replica that may not lead yet.
//!
//! Every replica runs the watches, because the gateway on every replica reads them; only the
//! leader reconciles. A subscription nobody reads stops its watch once the fan-out buffer is
//! full, so a standby cannot simply leave the controllers' subscriptions alone until it
//! leads. Each one is read by a small task instead: until this replica leads it drops what
//! it reads (nothing reconciles here), and from then on it first hands over every object the
//! store holds (the ones it dropped are in there, at their latest state) and then passes the
//! subscription on. Objects announced twice across that switch are harmless: a controller
//! reconciles an object, not an event.

use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::{mpsc, watch};

use super::Subscription;

/// Whether this replica leads: `true` from the start when there is no election.
pub type Leading = watch::Receiver<bool>;

/// Objects handed over ahead of the controller: the subscription's own buffer is the one
/// that absorbs bursts, so a reader that stops still stalls the watch, visibly.
const HANDOVER: usize = 64;

/// `events` for a controller: dropped until `leading` turns true, then the store's objects
/// and everything after.
pub fn until_leading<K>(
    mut events: Subscription<K>,
    store: Store<K>,
    mut leading: Leading,
) -> Subscription<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel::<Arc<K>>(HANDOVER);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // Leadership first: once it is here, nothing more may be dropped.
                biased;
                led = leading.wait_for(|leads| *leads) => {
                    if led.is_err() {
                        // The election ended without this replica leading: the process is
                        // on its way out, and nothing must reconcile here.
                        return;
                    }
                    break;
                }
                event = events.next() => {
                    if event.is_none() {
                        return;
                    }
                }
            }
        }
        for object in store.state() {
            if tx.send(object).await.is_err() {
                return;
            }
        }
        while let Some(object) = events.next().await {
            if tx.send(object).await.is_err() {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|object| (object, rx))
    }))
}
