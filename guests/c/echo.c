// The seed's EchoServer example (tests/reference/echo.py) as a weft guest
// in C, on the bindings wit-bindgen generates from wit/ (`service.h`).

#include <stdlib.h>

#include "service.h"

typedef exports_weft_protocol_protocol_protocol_t echo_t;

// One connection: the transport the host gave the constructor.
struct exports_weft_protocol_protocol_protocol_t {
    weft_protocol_transport_own_transport_t transport;
};

static weft_protocol_transport_borrow_transport_t transport_of(echo_t *echo) {
    return weft_protocol_transport_borrow_transport(echo->transport);
}

// `maybe_client` is NULL for an accepted connection; the echo makes none.
exports_weft_protocol_protocol_own_protocol_t exports_weft_protocol_protocol_constructor_protocol(
    exports_weft_protocol_protocol_own_transport_t transport, uint64_t *maybe_client) {
    (void)maybe_client;
    echo_t *echo = malloc(sizeof *echo);
    if (echo == NULL) {
        abort();
    }
    echo->transport = transport;
    return exports_weft_protocol_protocol_protocol_new(echo);
}

void exports_weft_protocol_protocol_method_protocol_data_received(echo_t *echo, service_list_u8_t *data) {
    weft_protocol_transport_method_transport_write(transport_of(echo), data);
    // Arguments of an exported function belong to the callee.
    service_list_u8_free(data);
}

void exports_weft_protocol_protocol_method_protocol_read_connection_lost(echo_t *echo) {
    weft_protocol_transport_method_transport_lose_connection(transport_of(echo));
}

void exports_weft_protocol_protocol_method_protocol_connection_lost(
    echo_t *echo, exports_weft_protocol_protocol_close_reason_t reason) {
    (void)echo;
    (void)reason;
}

void exports_weft_protocol_protocol_protocol_destructor(echo_t *echo) {
    weft_protocol_transport_transport_drop_own(echo->transport);
    free(echo);
}

// The instance's events: the echo schedules no timers and connects nowhere.
void exports_weft_protocol_events_start(void) {}

void exports_weft_protocol_events_stop(void) {}

void exports_weft_protocol_events_timer_fired(uint64_t token) {
    (void)token;
}

void exports_weft_protocol_events_connect_failed(uint64_t token, exports_weft_protocol_events_connect_error_t reason) {
    (void)token;
    (void)reason;
}
