// The seed's ChatRoomServer example (tests/reference/chat.py) as a weft
// guest in JavaScript: a line receiver (Twisted's LineReceiver rules:
// "\r\n" delimiter, 16384-byte lines at most, a longer line closes that
// connection) whose factory state is the set of connected clients.

const DELIMITER = new Uint8Array([13, 10]);
const MAX_LENGTH = 16384;
const encoder = new TextEncoder();

// The factory: every connected client, in the order they joined.
const clients = new Set();

function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}

function indexOfDelimiter(bytes) {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

// Twisted's str() of an IPv4Address / IPv6Address.
function describe(address) {
  const kind = address.family === 'ipv6' ? 'IPv6Address' : 'IPv4Address';
  const extra = address.family === 'ipv6' ? ', flowInfo=0, scopeID=0' : '';
  return `${kind}(type='TCP', host='${address.host}', port=${address.port}${extra})`;
}

class Protocol {
  constructor(transport, _client) {
    this.transport = transport;
    this.buffer = new Uint8Array(0);
    this.disconnecting = false;
    clients.add(this);
  }

  dataReceived(data) {
    this.buffer = concat(this.buffer, data);
    while (this.buffer.length > 0 && !this.disconnecting) {
      const end = indexOfDelimiter(this.buffer);
      if (end < 0) {
        if (this.buffer.length >= MAX_LENGTH + DELIMITER.length) {
          this.buffer = new Uint8Array(0);
          this.loseConnection();
        }
        return;
      }
      const line = this.buffer.subarray(0, end);
      this.buffer = this.buffer.slice(end + DELIMITER.length);
      if (line.length > MAX_LENGTH) {
        this.buffer = new Uint8Array(0);
        this.loseConnection();
        return;
      }
      this.lineReceived(line);
    }
  }

  lineReceived(line) {
    const source = encoder.encode(`<${describe(this.transport.getHost())}> `);
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
    clients.delete(this);
  }
}

export const protocol = { Protocol };

// The instance's events: the chat schedules no timers and connects nowhere.
export const events = {
  start() {},
  stop() {},
  timerFired(_token) {},
  connectFailed(_token, _reason) {},
};
