//! The controllers' subscriptions on a replica that may not lead yet.
//!
//! Every replica runs the watches, because the gateway on every replica reads them; only the
//! leader reconciles. A subscription nobody reads stops its watch once the fan-out buffer is
//! full, so a standby cannot simply leave the controllers' subscriptions alone until it
//! leads. Each one is read by a small task instead: until this replica leads it drops what
//! it reads (nothing reconciles here), and at the switch it hands over every object the
//! store holds (the ones it dropped are in there, at their latest state) and then the
//! subscription itself. Objects announced twice across that switch are harmless: a controller
//! reconciles an object, not an event.

use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::{mpsc, oneshot, watch};

use super::Subscription;

/// Whether this replica leads: `true` from the start when there is no election.
pub type Leading = watch::Receiver<bool>;

/// Objects of the store handed over ahead of the controller at the switch.
const HANDOVER: usize = 64;

/// `events` for a controller: dropped until `leading` turns true, then the store's objects
/// and everything after. From the switch on the controller reads the subscription itself,
/// so the task costs nothing on a leader's path.
pub fn until_leading<K>(
    mut events: Subscription<K>,
    store: Store<K>,
    mut leading: Leading,
) -> Subscription<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel::<Arc<K>>(HANDOVER);
    let (hand_over, rest) = oneshot::channel::<Subscription<K>>();
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
        // The controller reads what follows straight from the subscription, once it has
        // read the store's objects (the sender's drop ends them).
        drop(tx);
        let _ = hand_over.send(events);
    });
    let handed_over = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|object| (object, rx))
    });
    let after = futures::stream::once(rest).flat_map(|events| match events {
        Ok(events) => events,
        Err(_) => Box::pin(futures::stream::empty()),
    });
    Box::pin(handed_over.chain(after))
}
