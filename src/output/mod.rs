//! Where verified segments go: Media Source Extensions ([`media`]) with a watch that gets a
//! stalled element going again ([`stall`]), or, with the `webaudio` feature, symphonia in wasm
//! ([`decode`]) and Web Audio ([`webaudio`]); [`sink`] is what the player sees of either.

#[cfg(feature = "webaudio")]
pub mod decode;
#[cfg(target_arch = "wasm32")]
pub mod media;
#[cfg(target_arch = "wasm32")]
pub(crate) mod sink;
pub mod stall;
#[cfg(all(target_arch = "wasm32", feature = "webaudio"))]
pub mod webaudio;
