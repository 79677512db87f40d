//! Answering identify (`/ipfs/id/1.0.0`) without asking it.
//!
//! A peer that fetches from others but is seldom fetched from, the browser peer, needs to
//! *answer* identify: Helia sends Bitswap wants only to peers whose identify lists
//! `/ipfs/bitswap/1.2.0`. It has no use for the answers of the peers it connects to, and
//! libp2p-identify's behaviour asks every new connection at once, in the milliseconds where the
//! first want is on its way. This is the answering half alone: one length-prefixed protobuf
//! `Identify` message written on each stream the remote opens, then the stream closed.

use std::io;
use std::time::Duration;

use futures::{AsyncWrite, AsyncWriteExt, FutureExt, Stream, StreamExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// The protocol answered.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/id/1.0.0");
/// The `protocolVersion` sent, as libp2p implementations send it.
pub const PROTOCOL_VERSION: &str = "/ipfs/id/1.0.0";
/// Listen addresses one answer carries at most.
pub const MAX_LISTEN_ADDRS: usize = 16;
/// Answers being written at once; a remote's further requests wait (libp2p-stream drops the
/// streams that find no room).
pub const MAX_CONCURRENT_ANSWERS: usize = 8;
/// How long one answer may take to write before its stream is dropped.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What this peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// This peer's public key, protobuf-encoded (`PublicKey::encode_protobuf`).
    pub public_key: Vec<u8>,
    /// Its `agentVersion`, e.g. `antiphon-browser/0.1.0`.
    pub agent_version: String,
    /// The protocols it accepts streams for.
    pub protocols: Vec<StreamProtocol>,
    /// Where it can be reached; only the first [`MAX_LISTEN_ADDRS`] are sent.
    pub listen_addrs: Vec<Multiaddr>,
}

/// The `Identify` message of the libp2p identify spec, only the fields this peer sends.
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(bytes = "vec", optional, tag = "1")]
    public_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    listen_addrs: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "3")]
    protocols: Vec<String>,
    #[prost(string, optional, tag = "5")]
    protocol_version: Option<String>,
    #[prost(string, optional, tag = "6")]
    agent_version: Option<String>,
}

impl Info {
    /// The answer as written on the wire: a varint length, then the protobuf message.
    pub fn encode(&self) -> Vec<u8> {
        let message = Message {
            public_key: Some(self.public_key.clone()),
            listen_addrs: self.listen_addrs.iter().take(MAX_LISTEN_ADDRS).map(|a| a.to_vec()).collect(),
            protocols: self.protocols.iter().map(|p| p.to_string()).collect(),
            protocol_version: Some(PROTOCOL_VERSION.to_owned()),
            agent_version: Some(self.agent_version.clone()),
        };
        prost::Message::encode_length_delimited_to_vec(&message)
    }
}

/// Writes `answer` (from [`Info::encode`]) on `stream` and closes it.
pub async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, answer: &[u8]) -> io::Result<()> {
    stream.write_all(answer).await?;
    stream.close().await
}

/// Answers every identify stream `incoming` yields with what `info` says at that moment, at most
/// [`MAX_CONCURRENT_ANSWERS`] at once and each within [`ANSWER_TIMEOUT`]. Ends when `incoming`
/// does (when the swarm is gone).
pub async fn serve<S, I>(incoming: I, info: impl Fn() -> Info)
where
    S: AsyncWrite + Unpin,
    I: Stream<Item = (PeerId, S)>,
{
    incoming
        .for_each_concurrent(MAX_CONCURRENT_ANSWERS, |(peer, mut stream)| {
            let bytes = info().encode();
            async move {
                let written = answer(&mut stream, &bytes).fuse();
                let timeout = futures_timer::Delay::new(ANSWER_TIMEOUT).fuse();
                futures::pin_mut!(written, timeout);
                futures::select! {
                    result = written => if let Err(error) = result {
                        tracing::debug!(%peer, %error, "identify answer not delivered");
                    },
                    () = timeout => tracing::debug!(%peer, "identify answer timed out"),
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addrs: usize) -> Info {
        Info {
            public_key: vec![8, 1, 18, 32, 7, 7, 7],
            agent_version: "antiphon-test/1".into(),
            protocols: vec![crate::bitswap::PROTOCOL, PROTOCOL],
            listen_addrs: (0..addrs).map(|i| format!("/ip4/10.0.0.{i}/tcp/4001").parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_answer_is_a_length_prefixed_identify_message() {
        let bytes = info(2).encode();
        let message = <Message as prost::Message>::decode_length_delimited(bytes.as_slice()).unwrap();
        assert_eq!(message.public_key.as_deref(), Some(&[8, 1, 18, 32, 7, 7, 7][..]));
        assert_eq!(message.protocols, ["/ipfs/bitswap/1.2.0", "/ipfs/id/1.0.0"]);
        assert_eq!(message.agent_version.as_deref(), Some("antiphon-test/1"));
        assert_eq!(message.protocol_version.as_deref(), Some(PROTOCOL_VERSION));
        let addrs: Vec<Multiaddr> = message.listen_addrs.into_iter().map(|a| Multiaddr::try_from(a).unwrap()).collect();
        assert_eq!(addrs, info(2).listen_addrs);
    }

    #[test]
    fn listen_addresses_are_capped() {
        let bytes = info(MAX_LISTEN_ADDRS + 5).encode();
        let message = <Message as prost::Message>::decode_length_delimited(bytes.as_slice()).unwrap();
        assert_eq!(message.listen_addrs.len(), MAX_LISTEN_ADDRS);
    }

    #[test]
    fn answering_writes_the_message_and_closes() {
        let bytes = info(1).encode();
        let mut out = futures::io::Cursor::new(Vec::new());
        futures::executor::block_on(answer(&mut out, &bytes)).unwrap();
        assert_eq!(out.into_inner(), bytes);
    }
}
