//! One task per item under a semaphore: how every command that acts on many hosts bounds its
//! parallelism (bootstrap, plan's refresh, apply, destroy). [`map`] does the same for CPU-bound work (age key wrapping over many files) and for
//! waiting on many fsyncs at once, on a few scoped threads.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

/// A task that panicked (a bug in cairn), with what it said: reported like a failure of its
/// item, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    pub message: String,
}

impl Panicked {
    fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Self { message }
    }
}

/// Runs `work` on every item, at most `limit` at a time, and returns the results in the
/// items' order. A task that panics does not stop the others; its slot holds [`Panicked`].
pub async fn bounded<T, R, F, Fut>(items: Vec<T>, limit: usize, work: F) -> Vec<Result<R, Panicked>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let work = Arc::new(work);
    let mut tasks = tokio::task::JoinSet::new();
    let mut index_of = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let semaphore = semaphore.clone();
        let work = work.clone();
        let handle = tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            (index, work(item).await)
        });
        index_of.insert(handle.id(), index);
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, r)) => results.push((index, Ok(r))),
            Err(e) => {
                let index = index_of.get(&e.id()).copied().unwrap_or(usize::MAX);
                let panicked = match e.try_into_panic() {
                    Ok(payload) => Panicked::from_payload(payload.as_ref()),
                    // Nothing aborts these tasks; a runtime shutting down cancels them.
                    Err(e) => Panicked { message: e.to_string() },
                };
                tracing::error!("a task panicked: {}", panicked.message);
                results.push((index, Err(panicked)));
            }
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// `fut`, with a panic inside it turned into [`Panicked`] (the future is not polled again).
pub async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, Panicked> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(Panicked::from_payload(payload.as_ref()))),
        }
    })
    .await
}

/// As many workers as the machine has cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over `items` on up to `workers` threads (contiguous chunks); results in input order.
/// One worker, or one item, runs on the calling thread.
pub fn map<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn keeps_order_and_never_exceeds_the_limit() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let out = bounded((0..20).collect(), 3, move |i: u32| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20).map(|i| Ok(i * 2)).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_in_its_slot_and_the_others_finish() {
        let out = bounded(vec![1u32, 2, 3, 4], 2, |i| async move {
            tokio::task::yield_now().await;
            if i == 2 {
                panic!("host {i} fell over");
            }
            if i == 3 {
                std::panic::panic_any(7u8);
            }
            i * 10
        })
        .await;
        assert_eq!(
            out,
            [
                Ok(10),
                Err(Panicked { message: "host 2 fell over".into() }),
                Err(Panicked { message: "a panic without a message".into() }),
                Ok(40)
            ]
        );
    }

    #[tokio::test]
    async fn catch_panic_turns_a_panic_into_a_value() {
        assert_eq!(catch_panic(async { 5 }).await, Ok(5));
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            v[3]
        })
        .await
        .unwrap_err();
        assert!(caught.message.contains("index out of bounds"), "{}", caught.message);
    }

    #[test]
    fn keeps_input_order_whatever_the_worker_count() {
        let items: Vec<u32> = (0..103).collect();
        for workers in [0, 1, 2, 7, 200] {
            assert_eq!(
                map(&items, workers, |i| i * 2),
                items.iter().map(|i| i * 2).collect::<Vec<_>>()
            );
        }
        assert!(map(&[] as &[u32], 4, |i| *i).is_empty());
    }
}
