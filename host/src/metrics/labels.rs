//! The label values weft's series take: why a connection ended, which
//! guest export was called, what became of a datagram, what ended an
//! instance, which limit was hit, how a connect ended, a service's state.

/// Declares a label enum: its variants, each with the label value it
/// shows, and `ALL` in order, which indexes its counters.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl From<$name> for usize {
            /// Its place in `ALL`, which indexes its series.
            fn from(value: $name) -> usize {
                value as usize
            }
        }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            pub fn label(self) -> &'static str {
                match self { $(Self::$variant => $label,)* }
            }
        }
    };
}

labels! {
    /// Why a connection ended.
    Closed {
        /// Closed by either side after its output was sent.
        Done = "done",
        /// Reset by the peer, or another socket error.
        Lost = "lost",
        /// The guest aborted it.
        Aborted = "aborted",
        /// The guest queued more than the write limit.
        WriteLimit = "write_limit",
        /// No traffic for the idle timeout.
        IdleTimeout = "idle_timeout",
        /// weft stopped, or a reload's drain timeout passed.
        Shutdown = "shutdown",
        /// Its instance trapped.
        Trap = "trap",
        /// No instance would take it: the service had failed, or
        /// instantiating failed.
        Refused = "refused",
        /// Its TLS handshake failed or timed out: no guest saw it.
        TlsHandshake = "tls_handshake",
        /// A `haproxy:` endpoint's connection whose PROXY header was
        /// missing, malformed, too long or late: no guest saw it.
        ProxyHeader = "proxy_header",
        /// A `haproxy:` endpoint's connection from outside `proxy-from`:
        /// closed unread.
        ProxyUntrusted = "proxy_untrusted",
    }
}

labels! {
    /// A guest export weft calls.
    Export {
        Constructor = "constructor",
        DataReceived = "data-received",
        ReadConnectionLost = "read-connection-lost",
        ConnectionLost = "connection-lost",
        TimerFired = "timer-fired",
        ConnectFailed = "connect-failed",
        Start = "start",
        Stop = "stop",
        MessageReceived = "message-received",
        MessagesDropped = "messages-dropped",
        SubscriptionInterrupted = "subscription-interrupted",
        SubscriptionResumed = "subscription-resumed",
        PauseProducing = "pause-producing",
        ResumeProducing = "resume-producing",
        // The datagram world's, last: the guest call series split there.
        StartProtocol = "start-protocol",
        DatagramReceived = "datagram-received",
        StopProtocol = "stop-protocol",
    }
}

labels! {
    /// What became of a datagram of a `udp:` service.
    Datagram {
        /// Delivered to the guest.
        Received = "received",
        /// Received but longer than `max-datagram`: dropped.
        TooLarge = "too_large",
        /// Received past `datagram-rate`: dropped.
        OverRate = "over_rate",
        /// Sent by the guest.
        Sent = "sent",
        /// A send refused: longer than `max-datagram`.
        SendTooLarge = "send_too_large",
        /// A send refused: not an address the guest may send to.
        SendDenied = "send_denied",
        /// A send refused: past `datagram-rate`.
        SendOverRate = "send_over_rate",
        /// A send the socket did not take.
        SendFailed = "send_failed",
    }
}

labels! {
    /// What ended an instance.
    TrapCause {
        /// It used its CPU deadline in one call.
        Deadline = "deadline",
        /// One call waited past its wall-clock limit.
        WallClock = "wall_clock",
        /// It trapped after a memory growth was refused.
        Memory = "memory",
        StackOverflow = "stack_overflow",
        /// `unreachable`: a Rust panic, an abort.
        Unreachable = "unreachable",
        Other = "other",
    }
}

labels! {
    /// A limit that stopped a guest or a connection.
    LimitHit {
        WriteLimit = "write_limit",
        Deadline = "deadline",
        WallClock = "wall_clock",
        /// A memory growth refused (the guest may carry on).
        Memory = "memory",
        /// A connection refused: the instance held its limit of handles.
        Handles = "handles",
        /// An accept waited for a connection slot.
        MaxConnections = "max_connections",
        Timers = "timers",
        Outbound = "outbound",
        /// A TLS handshake outlasted the handshake timeout.
        HandshakeTimeout = "handshake_timeout",
        /// A PROXY header did not arrive within the proxy header timeout.
        ProxyHeaderTimeout = "proxy_header_timeout",
    }
}

labels! {
    /// How an outbound connect ended.
    Connect {
        Connected = "connected",
        InvalidEndpoint = "invalid_endpoint",
        Limit = "limit",
        Denied = "denied",
        NotResolvable = "not_resolvable",
        Refused = "refused",
        TimedOut = "timed_out",
        Failed = "failed",
    }
}

labels! {
    /// How a `wasi:keyvalue` call ended.
    KeyValue {
        Ok = "ok",
        /// A value over `kv-value-size`.
        ValueSize = "value_size",
        /// A new bucket past `kv-buckets`.
        Buckets = "buckets",
        /// A new key in a full bucket (`kv-keys`).
        Keys = "keys",
        /// A bucket that would hold more than `kv-bytes`.
        Bytes = "bytes",
        /// A bucket name, key or count the interface refuses.
        Invalid = "invalid",
        /// The backend did not answer (Redis down, or past the timeout).
        Unavailable = "unavailable",
    }
}

labels! {
    /// What became of a publish/subscribe operation or message.
    Messaging {
        /// A message published.
        Published = "published",
        /// A message handed to a subscribing instance.
        Delivered = "delivered",
        /// A message dropped from a subscriber that fell `pending-messages`
        /// behind.
        Dropped = "dropped",
        /// A topic subscribed to.
        Subscribed = "subscribed",
        /// A subscription refused: past `subscriptions`.
        Subscriptions = "subscriptions",
        /// A publish refused: over `message-size`.
        MessageSize = "message_size",
        /// A publish refused: past `publish-rate`.
        Rate = "rate",
        /// A topic name the interface refuses, or messaging off.
        Invalid = "invalid",
        /// A publish refused: the backend did not answer.
        Unavailable = "unavailable",
    }
}

labels! {
    /// What a service is doing, as `weft_service_state` and `/healthz`
    /// report it.
    State {
        /// Its instances start when connections need them.
        Serving = "serving",
        /// A trap retired an instance; the next starts after a backoff.
        BackingOff = "backing_off",
        /// It trapped too often and refuses connections for a while.
        Failed = "failed",
    }
}
