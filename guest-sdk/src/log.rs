//! Records in the host's log, tagged by the host with the service name.
//! Printing to stdout or stderr also reaches the log, one record per line.

use crate::bindings::weft::protocol::log::{Level, log};

/// Log a debugging detail.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Log a routine event.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Log something the operator should look at.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Log a failure.
pub fn error(message: &str) {
    log(Level::Error, message);
}
