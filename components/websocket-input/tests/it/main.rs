//! Integration tests of `websocket_input` against real sockets on 127.0.0.1
//! and the memory bus (one test binary: one link).

mod common;

mod auth_and_limits;
mod backpressure;
mod client_mode;
mod control;
mod delivery;
mod frames;
mod lifecycle;
mod peer_cli;
mod relays;
mod shutdown;
