// The seed's ChatRoomServer example (tests/reference/chat.py) as a weft
// guest in JavaScript: a line receiver (Twisted's LineReceiver rules:
// "\r\n" delimiter, 16384-byte lines at most, a longer line closes that
// connection, a burst handed over within a time budget per call) whose
// factory state is the set of connected clients. With
// config.idle-timeout=SECONDS, a client silent for that long hears "idle
// timeout" and is disconnected (tests/reference/chat_idle.py).

import { callLater } from 'weft:protocol/reactor@0.2.6';
import { get } from 'wasi:config/store@0.2.0-rc.1';

const DELIMITER = new Uint8Array([13, 10]);
const MAX_LENGTH = 16384;
// How long one call hands over lines, well within the host's default 100 ms
// deadline, and how many lines pass between looks at the clock.
const CALL_BUDGET_MS = 10;
const LINES_PER_CLOCK_READ = 16;
const encoder = new TextEncoder();

// The factory: every connected client, in the order they joined.
const clients = new Set();

// reactor.callLater: the host calls events.timerFired(token) when due.
const timers = new Map();
let nextToken = 0n;

function nanos(seconds) {
  return BigInt(Math.round(seconds * 1e9));
}

// Twisted's IDelayedCall over the host's delayed-call.
class DelayedCall {
  constructor(seconds, f) {
    nextToken += 1n;
    this.token = nextToken;
    this.call = callLater(nanos(seconds), this.token);
    timers.set(this.token, f);
  }

  reset(seconds) {
    this.call.reset(nanos(seconds));
  }

  cancel() {
    this.call.cancel();
    timers.delete(this.token);
  }
}

// Read on first use: the module is evaluated when the component is built.
let idleTimeout;
function idleSeconds() {
  if (idleTimeout === undefined) {
    const value = get('idle-timeout');
    idleTimeout = value ? Number(value) : null;
  }
  return idleTimeout;
}

function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}

function indexOfDelimiter(bytes, from) {
  for (let i = from; i + 1 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

// Twisted's str() of an IPv4Address / IPv6Address / UNIXAddress.
function describe(address) {
  if (address.tag === 'unix') {
    return address.val == null ? 'UNIXAddress(None)' : `UNIXAddress('${address.val}')`;
  }
  const tcp = address.val;
  const kind = tcp.family === 'ipv6' ? 'IPv6Address' : 'IPv4Address';
  const extra = tcp.family === 'ipv6' ? ', flowInfo=0, scopeID=0' : '';
  return `${kind}(type='TCP', host='${tcp.host}', port=${tcp.port}${extra})`;
}

class Protocol {
  constructor(transport, _client) {
    this.transport = transport;
    this.buffer = new Uint8Array(0);
    this.disconnecting = false;
    this.backlogged = false;
    clients.add(this);
    // TimeoutMixin: setTimeout on connect, resetTimeout on every line.
    if (idleSeconds() !== null) {
      this.timeoutCall = new DelayedCall(idleSeconds(), () => this.timeoutConnection());
    }
  }

  timeoutConnection() {
    this.sendLine(encoder.encode('idle timeout'));
    this.loseConnection();
  }

  dataReceived(data) {
    this.buffer = this.buffer.length > 0 ? concat(this.buffer, data) : data;
    this.deliverLines();
  }

  // Twisted's LineReceiver loop, within a time budget per call: a burst of
  // input (a paste into a full room) is handed over across many calls, the
  // peer not read meanwhile, rather than in one call that outlasts the
  // host's deadline. Lines are cut by offset, so a 64 KiB read costs one
  // pass over its bytes, not one copy of the rest per line.
  deliverLines() {
    const started = performance.now();
    let start = 0;
    let handled = 0;
    while (start < this.buffer.length && !this.disconnecting) {
      if (++handled % LINES_PER_CLOCK_READ === 0 && performance.now() - started >= CALL_BUDGET_MS) {
        this.buffer = this.buffer.subarray(start);
        this.carryOnLater();
        return;
      }
      const end = indexOfDelimiter(this.buffer, start);
      if (end < 0) {
        if (this.buffer.length - start >= MAX_LENGTH + DELIMITER.length) {
          this.buffer = new Uint8Array(0);
          this.loseConnection();
          return;
        }
        break;
      }
      const line = this.buffer.subarray(start, end);
      start = end + DELIMITER.length;
      if (line.length > MAX_LENGTH) {
        this.buffer = new Uint8Array(0);
        this.loseConnection();
        return;
      }
      this.lineReceived(line);
    }
    this.buffer = this.buffer.slice(start);
  }

  // Out of time with lines left: stop reading, carry on in a later call.
  carryOnLater() {
    if (!this.backlogged) {
      this.backlogged = true;
      this.transport.pauseProducing();
    }
    new DelayedCall(0, () => {
      if (this.disconnecting || !clients.has(this)) return;
      this.backlogged = false;
      this.deliverLines();
      if (!this.backlogged) this.transport.resumeProducing();
    });
  }

  lineReceived(line) {
    this.timeoutCall?.reset(idleSeconds());
    const source = encoder.encode(`<${describe(this.transport.getHostAddress())}> `);
    for (const client of clients) {
      client.sendLine(concat(source, line));
    }
  }

  sendLine(line) {
    this.transport.write(concat(line, DELIMITER));
  }

  loseConnection() {
    this.disconnecting = true;
    this.transport.loseConnection();
  }

  readConnectionLost() {
    this.loseConnection();
  }

  connectionLost(_reason) {
    this.timeoutCall?.cancel();
    clients.delete(this);
  }
}

export const protocol = { Protocol };

// The instance's events: a timer is due; the chat connects nowhere.
export const events = {
  start() {},
  stop() {},
  timerFired(token) {
    const f = timers.get(token);
    timers.delete(token);
    f?.();
  },
  connectFailed(_token, _reason) {},
};

// No-ops: the chat only relays what clients send, so it watches no write-buffer.
export const producers = {
  pauseProducing(_token) {},
  resumeProducing(_token) {},
};
