"""Publish/subscribe kept by the host (`weft:protocol/messaging`): an
instance subscribes to a topic and gets what anyone publishes to it, in
this process or, when the operator puts the service's topics on Redis, in
every weft process sharing that server. Each call is done when it returns
(the host waits for its backend), so they return plainly and raise
MessagingError, rather than return Deferreds."""

from componentize_py_types import Err
from wit_world.imports import messaging as _messaging

# Subscribers by topic.
_subscribers = {}


class MessagingError(Exception):
    """Why a call did not take effect; `reason` is one of `invalid-topic`,
    `off`, `limit`, `too-large`, `rate` or `unavailable`."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(reason)


def subscribe(topic, subscriber):
    """Receive what is published to `topic` (1 to 64 letters, digits, `.`,
    `_` or `-`, inside the service's namespace) through `subscriber`: a
    callable taking the message's bytes, or an object with
    `messageReceived(message)` and, if it cares,
    `messagesDropped(count)`, `subscriptionInterrupted()` and
    `subscriptionResumed()`. Once this returns, every message published
    to the topic reaches it, this instance's own included."""
    _call(_messaging.subscribe, topic)
    _subscribers[topic] = subscriber


def unsubscribe(topic):
    """Stop receiving what is published to `topic`."""
    _messaging.unsubscribe(topic)
    _subscribers.pop(topic, None)


def publish(topic, message):
    """Send `message` (bytes) to every instance subscribed to `topic`;
    raises MessagingError if it was not sent (too large, over the publish
    rate, the backend unreachable)."""
    if not isinstance(message, bytes):
        raise TypeError(f"a message is bytes, not {type(message).__name__}")
    _call(_messaging.publish, topic, message)


def _call(function, *args):
    try:
        function(*args)
    except Err as error:
        reason = error.value.name.lower().replace("_", "-")
        raise MessagingError(reason) from None


def _tell(topic, method, *args):
    """Tell the subscriber of `topic`, if there is one, of an event."""
    subscriber = _subscribers.get(topic)
    if subscriber is None:
        return
    handler = getattr(subscriber, method, None)
    if handler is None and method == "messageReceived" and callable(subscriber):
        handler = subscriber
    if handler is not None:
        handler(*args)
