//! A weft guest: a component checked against the weft worlds and loaded,
//! the store each instance gets (the sandbox's part and every capability's
//! state, composed), and live instances whose exports weft calls.

pub mod component;
pub mod instance;
pub mod state;
pub mod world;
