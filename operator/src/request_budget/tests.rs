use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// Starts one waiter per class in `classes`, each after the previous queued, and returns the
/// order they were served in (by index) once all are.
async fn served(budget: &Budget, classes: &[Class]) -> Vec<usize> {
    let order: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, class) in classes.iter().copied().enumerate() {
        let budget = budget.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            budget.take(class).await;
            if let Ok(mut order) = order.lock() {
                order.push(i);
            }
        }));
        // Lets the task reach its queue before the next one starts.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        assert!(task.await.is_ok());
    }
    order.lock().map(|o| o.clone()).unwrap_or_default()
}

#[test]
fn status_subresources_are_the_status_class() {
    let run = "/apis/synqx.io/v1alpha1/namespaces/etl/pipelineruns/orders-1";
    assert_eq!(Class::of(&format!("{run}/status")), Class::Status);
    assert_eq!(Class::of(&format!("{run}/status/")), Class::Status);
    assert_eq!(Class::of(run), Class::First);
    assert_eq!(
        Class::of("/apis/batch/v1/namespaces/etl/jobs"),
        Class::First
    );
    // A resource merely named "status" is not the subresource's write.
    assert_eq!(
        Class::of("/api/v1/namespaces/etl/configmaps/statuses"),
        Class::First
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_class_first_then_in_arrival_order() {
    let budget = Budget::new(10, 1);
    budget.take(Class::First).await;
    use Class::{First, Status};
    let order = served(&budget, &[Status, First, Status, First, First]).await;
    assert_eq!(order, [1, 3, 4, 0, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gave_up_leaves_its_token_to_the_next() {
    let budget = Budget::new(1, 1);
    let start = Instant::now();
    budget.take(Class::First).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(100), budget.take(Class::First)).await;
    assert!(gave_up.is_err(), "no token for a second");
    budget.take(Class::First).await;
    let waited = Instant::now() - start;
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "the next token, at one second, went to the waiter still there: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_burst_refills_at_the_rate_and_no_further() {
    let budget = Budget::new(4, 2);
    let start = Instant::now();
    for _ in 0..2 {
        budget.take(Class::Status).await;
    }
    assert_eq!(Instant::now(), start, "the burst goes at once");
    // Ten seconds idle earn forty tokens, but the bucket holds two.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = Instant::now();
    for _ in 0..3 {
        budget.take(Class::Status).await;
    }
    let third = Instant::now() - idle;
    assert!(
        third >= Duration::from_millis(250) && third < Duration::from_millis(260),
        "two at once, the third a quarter second later: {third:?}"
    );
}
