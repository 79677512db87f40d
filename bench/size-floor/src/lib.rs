//! One exported function, `fetchBlock(multiaddr, cid)`: dial a peer over WebSocket or
//! WebRTC-direct (noise, yamux, ping) and fetch one block by Bitswap, verified. No player, no
//! JS API beyond that, no browser-to-browser serving, no logging. Whatever rust-libp2p needs
//! for this much, every browser peer built on it ships; `bench/size-floor.mjs` measures it
//! and checks that it works.

use std::time::Duration;

use antiphon_core::bitswap::{self, MemoryBlockstore, Source};
use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::upgrade::Version;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Transport, noise, ping, webrtc_websys, websocket_websys, yamux};
use wasm_bindgen::prelude::*;

#[derive(NetworkBehaviour)]
struct Fetcher {
    bitswap: bitswap::Behaviour<MemoryBlockstore>,
    ping: ping::Behaviour,
}

/// Fetches the block `cid` from the peer at `addr` and returns its bytes, verified.
#[wasm_bindgen(js_name = fetchBlock)]
pub async fn fetch_block(addr: String, cid: String) -> Result<Vec<u8>, JsError> {
    let error = |e: &dyn std::fmt::Display| JsError::new(&e.to_string());
    let addr: Multiaddr = addr.parse().map_err(|e| error(&e))?;
    let cid: antiphon_core::Cid = cid.parse().map_err(|e| error(&e))?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_wasm_bindgen()
        .with_other_transport(|key| {
            let websocket = websocket_websys::Transport::default()
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            let direct = webrtc_websys::Transport::new(webrtc_websys::Config::new(key))
                .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)));
            Ok(websocket.or_transport(direct).map(|either, _| either.into_inner()))
        })
        .map_err(|e| error(&e))?
        .with_behaviour(|_| Fetcher {
            bitswap: bitswap::Behaviour::new(MemoryBlockstore::new(4 << 20), bitswap::Config::default()),
            ping: ping::Behaviour::default(),
        })
        .map_err(|e| error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(addr).map_err(|e| error(&e))?;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                swarm.behaviour_mut().bitswap.get(cid, Source::Peers(vec![peer_id]));
            }
            SwarmEvent::OutgoingConnectionError { error: e, .. } => return Err(error(&e)),
            SwarmEvent::Behaviour(FetcherEvent::Bitswap(bitswap::Event::Block { block, .. })) => {
                return Ok(block.data().to_vec());
            }
            SwarmEvent::Behaviour(FetcherEvent::Bitswap(bitswap::Event::Failed { error: e, .. })) => {
                return Err(error(&format!("{e:?}")));
            }
            _ => {}
        }
    }
}
