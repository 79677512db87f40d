//! Where blocks come from: a creator node over Bitswap, or an HTTP trustless gateway. Either
//! way every block is verified against its CID before anything uses it; a gateway's body is
//! refused as soon as it passes the block limit, before it is buffered whole.

use std::time::Duration;

use antiphon_core::limits::MAX_BLOCK_BYTES;
use antiphon_core::{Block, Cid};
use libp2p::PeerId;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::Error;
use crate::js::{describe, read_body};
use crate::network::swarm::NetHandle;

/// A block and who delivered it.
pub(crate) struct Delivered {
    /// The verified block.
    pub(crate) block: Block,
    /// A label for the sender: a peer ID or a gateway URL.
    pub(crate) from: String,
}

/// One source of blocks.
#[derive(Clone)]
pub(crate) enum Source {
    /// A connected libp2p peer, asked over Bitswap.
    Bitswap {
        /// The network task.
        net: NetHandle,
        /// The peer.
        peer: PeerId,
    },
    /// An HTTP trustless gateway, asked for `application/vnd.ipld.raw`.
    Gateway {
        /// Its base URL, without a trailing slash.
        base: String,
        /// The network task, whose cache keeps what the gateway delivered, to serve it on.
        net: NetHandle,
    },
}

impl Source {
    /// A label for events and provenance.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Bitswap { peer, .. } => peer.to_string(),
            Self::Gateway { base, .. } => base.clone(),
        }
    }

    /// Fetches and verifies one block.
    pub(crate) async fn get(&self, cid: Cid) -> Result<Delivered, Error> {
        match self {
            Self::Bitswap { net, peer } => {
                let fetched = net.get(cid, *peer).await?;
                Ok(Delivered { block: fetched.block, from: fetched.peer.to_string() })
            }
            Self::Gateway { base, net } => {
                let data = gateway_raw(base, &cid).await?;
                let block =
                    Block::new(cid, data).map_err(|source| Error::Verification { cid, peer: base.clone(), source })?;
                net.keep(&block);
                Ok(Delivered { block, from: base.clone() })
            }
        }
    }
}

/// Gateway requests that take longer than this fail.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET {base}/ipfs/{cid}?format=raw`, read chunk by chunk, refused past [`MAX_BLOCK_BYTES`].
async fn gateway_raw(base: &str, cid: &Cid) -> Result<Vec<u8>, Error> {
    let url = format!("{base}/ipfs/{cid}?format=raw");
    let http = |reason: String| Error::Http { url: url.clone(), reason };
    let request = async {
        let init = web_sys::RequestInit::new();
        let headers = web_sys::Headers::new().map_err(|e| http(describe(&e)))?;
        headers.set("Accept", "application/vnd.ipld.raw").map_err(|e| http(describe(&e)))?;
        init.set_headers(&headers);
        let request = web_sys::Request::new_with_str_and_init(&url, &init).map_err(|e| http(describe(&e)))?;
        let global: web_sys::Window = js_sys::global().dyn_into().map_err(|_| http("no window object".into()))?;
        let response = JsFuture::from(global.fetch_with_request(&request)).await.map_err(|e| http(describe(&e)))?;
        let response: web_sys::Response = response.dyn_into().map_err(|e| http(describe(&e)))?;
        if !response.ok() {
            return Err(http(format!("status {}", response.status())));
        }
        read_body(&response, MAX_BLOCK_BYTES).await.map_err(|e| http(e.to_string()))
    };
    let timeout = futures_timer::Delay::new(GATEWAY_TIMEOUT);
    futures::pin_mut!(request);
    match futures::future::select(request, timeout).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(_) => Err(http(format!("no answer within {GATEWAY_TIMEOUT:?}"))),
    }
}
