//! Getting verified bytes: sources (a creator node or browser over Bitswap, or a trustless
//! gateway over HTTP), whole segments reassembled from their blocks, and asking several
//! sources for one answer ([`first_answer`]).

#[cfg(target_arch = "wasm32")]
pub(crate) mod fetch;
// Pure future plumbing, tested natively too; only the wasm build uses it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod first_answer;
#[cfg(target_arch = "wasm32")]
pub(crate) mod source;
