// The seed's EchoServer example (tests/reference/echo.py) as a weft guest
// in JavaScript: every byte received is written back, in order.

class Protocol {
  constructor(transport, _client) {
    this.transport = transport;
  }

  dataReceived(data) {
    this.transport.write(data);
  }

  // Not half-closeable: the peer's end of input closes the connection.
  readConnectionLost() {
    this.transport.loseConnection();
  }

  connectionLost(_reason) {}
}

export const protocol = { Protocol };

// The instance's events: an echo schedules nothing and connects nowhere.
export const events = {
  start() {},
  stop() {},
  timerFired(_token) {},
  connectFailed(_token, _reason) {},
};

// No-ops: an echo produces nothing of its own, so it watches no write-buffer.
export const producers = {
  pauseProducing(_token) {},
  resumeProducing(_token) {},
};
