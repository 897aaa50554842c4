//! Reading an upstream's answer without trusting its size. An OpenAI-compatible server is
//! whatever the config points at; one that answers with an endless or enormous body must cost
//! ragway a bounded amount of memory and end in a clear error, not exhaust the process.

use futures::{Stream, StreamExt as _};

/// A chat completion (not streamed) larger than this is refused: a whole answer of the
/// largest models' output limits is a few hundred kilobytes of JSON.
pub const MAX_COMPLETION_BYTES: usize = 16 << 20;
/// How much of an error answer is read for its message.
pub const MAX_ERROR_BYTES: usize = 64 << 10;

/// Why a capped read stopped.
#[derive(Debug)]
pub enum CappedError<E> {
    /// The body went past `limit` bytes; reading stopped there.
    TooLarge { limit: usize },
    /// The body could not be read.
    Failed(E),
}

/// Reads `body` to its end, or fails as soon as it holds more than `limit` bytes.
pub async fn read_capped<S, B, E>(body: S, limit: usize) -> Result<Vec<u8>, CappedError<E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(CappedError::Failed)?;
        let chunk = chunk.as_ref();
        if out.len() + chunk.len() > limit {
            return Err(CappedError::TooLarge { limit });
        }
        out.extend_from_slice(chunk);
    }
    Ok(out)
}

/// The first `limit` bytes of `body` (an error answer, for its message), as text.
pub async fn read_prefix<S, B, E>(body: S, limit: usize) -> String
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while out.len() < limit {
        match body.next().await {
            Some(Ok(chunk)) => {
                let chunk = chunk.as_ref();
                out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Result<Vec<u8>, ()>> {
        futures::stream::iter(sizes.iter().map(|n| Ok(vec![b'x'; *n])).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_body_past_the_cap_stops_the_read_and_one_at_it_is_read_whole() {
        assert_eq!(read_capped(chunks(&[4, 4]), 8).await.unwrap().len(), 8);
        assert!(matches!(
            read_capped(chunks(&[4, 4, 1]), 8).await,
            Err(CappedError::TooLarge { limit: 8 })
        ));
        // An endless body is cut at the cap, not read on.
        let endless = futures::stream::repeat_with(|| Ok::<_, ()>(vec![0u8; 1024]));
        assert!(matches!(
            read_capped(endless, 1 << 20).await,
            Err(CappedError::TooLarge { .. })
        ));
        let endless = futures::stream::repeat_with(|| Ok::<_, ()>(b"ab".to_vec()));
        assert_eq!(read_prefix(endless, 5).await, "ababa");
        assert!(matches!(
            read_capped(futures::stream::iter([Ok(vec![1u8]), Err("cut")]), 8).await,
            Err(CappedError::Failed("cut"))
        ));
    }
}
