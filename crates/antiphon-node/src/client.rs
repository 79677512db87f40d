//! A Bitswap client for one-off commands (`fetch`, replication pulls): a swarm on its own
//! task, dialled to one peer, asked for verified blocks through a cloneable handle. It serves
//! nothing and advertises only what it speaks: Bitswap (as a client), identify and ping.

use std::collections::HashMap;
use std::time::Duration;

use antiphon_core::bitswap::{self, MemoryBlockstore, RequestError, RequestId, Source};
use antiphon_core::{Block, Cid};
use anyhow::Context;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};

use libp2p::{identify, ping};

use crate::swarm::IDENTIFY_PROTOCOL;

mod behaviour {
    // The derive generates `ClientBehaviourEvent`, whose variants cannot carry doc comments.
    #![allow(missing_docs)]
    use super::*;

    /// What a fetching client runs: Bitswap over a store that keeps nothing, identify (Helia
    /// answers wants only from peers whose identify lists Bitswap) and ping.
    #[derive(libp2p::swarm::NetworkBehaviour)]
    pub(super) struct ClientBehaviour {
        pub(super) bitswap: bitswap::Behaviour<MemoryBlockstore>,
        pub(super) identify: identify::Behaviour,
        pub(super) ping: ping::Behaviour,
    }
}
use behaviour::{ClientBehaviour, ClientBehaviourEvent};

/// Commands the handle sends to the swarm task; bounded, so a flood waits instead of growing.
const COMMAND_QUEUE: usize = 64;

enum Command {
    Get { cid: Cid, peer: PeerId, reply: oneshot::Sender<Result<Block, RequestError>> },
}

/// A handle to the client's swarm task. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

/// Why a block could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Bitswap gave up: not found, timed out, corrupt, or no connection.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The swarm task is gone.
    #[error("the network task stopped")]
    Stopped,
}

impl Client {
    /// Starts a client and dials `addr`, returning once connected, with the remote's peer ID.
    /// When `addr` ends in `/p2p/<id>`, only that peer is accepted at the other end (the
    /// Noise handshake proves it).
    pub async fn connect(addr: Multiaddr, timeout: Duration) -> anyhow::Result<(Self, PeerId)> {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let cert = crate::webrtc::Certificate::generate()?;
        // The client serves nothing; a zero-byte store keeps nothing it fetches.
        let mut swarm = crate::swarm::build(key, cert, Default::default(), |key| ClientBehaviour {
            bitswap: bitswap::Behaviour::new(MemoryBlockstore::new(0), bitswap::Config::default()),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("antiphon-node-fetch/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
        })
        .await?;
        let opts = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => DialOpts::peer_id(peer).addresses(vec![addr.clone()]).build(),
            _ => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        swarm.dial(opts).with_context(|| format!("cannot dial {addr}"))?;
        let peer = tokio::time::timeout(timeout, wait_connected(&mut swarm, id))
            .await
            .with_context(|| format!("no connection to {addr} within {timeout:?}"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(run(swarm, rx));
        Ok((Self { commands }, peer))
    }

    /// Fetches one verified block from `peer`.
    pub async fn get(&self, cid: Cid, peer: PeerId) -> Result<Block, GetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Get { cid, peer, reply }).await.map_err(|_| GetError::Stopped)?;
        Ok(rx.await.map_err(|_| GetError::Stopped)??)
    }
}

async fn wait_connected(swarm: &mut Swarm<ClientBehaviour>, id: ConnectionId) -> anyhow::Result<PeerId> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } if connection_id == id => {
                return Ok(peer_id);
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } if connection_id == id => {
                return Err(error.into());
            }
            _ => {}
        }
    }
}

async fn run(mut swarm: Swarm<ClientBehaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut pending: HashMap<RequestId, oneshot::Sender<Result<Block, RequestError>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.next() => match command {
                None => break,
                Some(Command::Get { cid, peer, reply }) => {
                    let id = swarm.behaviour_mut().bitswap.get(cid, Source::Peers(vec![peer]));
                    pending.insert(id, reply);
                }
            },
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(ClientBehaviourEvent::Bitswap(event)) = event {
                    match event {
                        bitswap::Event::Block { request, block, .. } => {
                            if let Some(reply) = pending.remove(&request) {
                                let _ = reply.send(Ok(block));
                            }
                        }
                        bitswap::Event::Failed { request, error, .. } => {
                            if let Some(reply) = pending.remove(&request) {
                                let _ = reply.send(Err(error));
                            }
                        }
                        bitswap::Event::CorruptBlock { peer, bytes } => {
                            tracing::warn!(%peer, bytes, "peer sent a corrupt block; dropped");
                        }
                        other => tracing::debug!(?other, "bitswap"),
                    }
                }
            }
        }
    }
}
