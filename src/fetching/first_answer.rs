//! One answer from several sources: ask one, and the next when it fails or stays silent for a
//! while, until one answers or every request has failed. The player gets a track's manifest
//! this way (see `fetch::fetch_block_from_any`); it is apart from the network code so that it
//! can be tested natively.

use std::future::Future;

use futures::StreamExt;
use futures::future::{self, Either};
use futures::stream::FuturesUnordered;

use crate::error::Error;

/// Asks sources `0..count` with `ask` until one answers: in order, the next one as soon as a
/// request fails or when the timer `ask_again()` fires without an answer, going round again
/// until `max_asks` requests have been sent; earlier requests keep running meanwhile. A source
/// whose request failed (reported to `failed`) is not asked again. Fails with the last error
/// (`None` without sources) once every request has failed.
pub(crate) async fn first_answer<T, Fut, Timer>(
    count: usize,
    ask: impl Fn(usize) -> Fut,
    failed: impl Fn(usize, &Error),
    ask_again: impl Fn() -> Timer,
    max_asks: usize,
) -> Result<T, Option<Error>>
where
    Fut: Future<Output = Result<T, Error>>,
    Timer: Future<Output = ()>,
{
    let mut running = FuturesUnordered::new();
    let mut gave_up = vec![false; count];
    let (mut asks, mut next, mut last) = (0, 0, None);
    loop {
        // Ask the next source that has not failed, unless every request has been sent.
        if asks < max_asks
            && let Some(i) = (0..count).map(|k| (next + k) % count).find(|i| !gave_up[*i])
        {
            let request = ask(i);
            running.push(async move { (i, request.await) });
            (asks, next) = (asks + 1, i + 1);
        }
        if running.is_empty() {
            return Err(last);
        }
        let answer = if asks < max_asks {
            match future::select(running.next(), std::pin::pin!(ask_again())).await {
                Either::Left((answer, _)) => answer,
                // Unanswered for a while: ask again.
                Either::Right(_) => continue,
            }
        } else {
            running.next().await
        };
        match answer {
            Some((_, Ok(value))) => return Ok(value),
            Some((i, Err(e))) => {
                failed(i, &e);
                gave_up[i] = true;
                last = Some(e);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use futures::executor::block_on;

    use antiphon_core::Cid;

    use super::*;

    const MAX_ASKS: usize = 4;

    /// Runs `first_answer` over sources that behave as `behave(source, nth ask of it)` says
    /// (`None`: never answers) and returns its result and the order of the asks.
    fn run(
        count: usize,
        behave: impl Fn(usize, usize) -> Option<Result<u32, Error>>,
    ) -> (Result<u32, Option<Error>>, Vec<usize>) {
        let asked = RefCell::new(Vec::new());
        let ask = |i: usize| {
            let nth = asked.borrow().iter().filter(|a| **a == i).count();
            asked.borrow_mut().push(i);
            let outcome = behave(i, nth);
            async move {
                match outcome {
                    Some(result) => result,
                    None => future::pending().await,
                }
            }
        };
        // The timer fires as soon as every running request is pending.
        let result = block_on(first_answer(count, ask, |_, _| {}, || future::ready(()), MAX_ASKS));
        (result, asked.into_inner())
    }

    #[test]
    fn a_silent_source_is_asked_again_and_the_first_answer_wins() {
        // The only source loses the first request and answers the second.
        let (result, asked) = run(1, |_, nth| (nth == 1).then_some(Ok(7)));
        assert_eq!(result.unwrap(), 7);
        assert_eq!(asked, vec![0, 0]);
        // With two, the second is asked when the first stays silent.
        let (result, asked) = run(2, |i, _| (i == 1).then_some(Ok(9)));
        assert_eq!(result.unwrap(), 9);
        assert_eq!(asked, vec![0, 1]);
    }

    #[test]
    fn a_failed_source_is_not_asked_again_and_the_last_error_is_returned() {
        let stopped = || Some(Err(Error::Stopped));
        let (result, asked) =
            run(2, |i, _| if i == 0 { stopped() } else { Some(Err(Error::NoSource { cid: Cid::default() })) });
        assert!(matches!(result, Err(Some(Error::NoSource { .. }))));
        assert_eq!(asked, vec![0, 1], "each asked once, the second at once");
        let (result, asked) = run(0, |_, _| None);
        assert!(matches!(result, Err(None)));
        assert!(asked.is_empty());
    }

    #[test]
    fn requests_are_bounded_when_nobody_answers() {
        // No request is answered until the limit has been reached; then each fails.
        let asked = RefCell::new(Vec::new());
        let ask = |i: usize| {
            asked.borrow_mut().push(i);
            let asked = &asked;
            future::poll_fn(move |cx| {
                if asked.borrow().len() < MAX_ASKS {
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Pending;
                }
                std::task::Poll::Ready(Err::<u32, _>(Error::Stopped))
            })
        };
        let result = block_on(first_answer(2, ask, |_, _| {}, || future::ready(()), MAX_ASKS));
        assert!(matches!(result, Err(Some(Error::Stopped))));
        assert_eq!(asked.into_inner(), vec![0, 1, 0, 1], "round and round, up to the limit and no further");
    }
}
