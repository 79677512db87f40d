//! What JavaScript sees: the `Peer` and `Player` classes, the exported functions (`verify`,
//! `verifyAsync`, `cidOf`, `setLogLevel`), the checks every argument from a page goes
//! through, the console logger, and the hand-written TypeScript types.

pub(crate) mod args;
pub(crate) mod bootstrap;
pub(crate) mod log;
pub(crate) mod peer;
pub(crate) mod player;
mod types;
pub mod verify;
