// The seed's EchoServer example (tests/reference/echo.py) as a weft guest
// in C, on the bindings wit-bindgen generates from wit/ (`service.h`).
// With config.idle-timeout=SECONDS, a connection idle that long is closed:
// a reactor timer, reset by every read (Twisted's TimeoutMixin).

#include <stdlib.h>
#include <string.h>

#include "service.h"

typedef exports_weft_protocol_protocol_protocol_t echo_t;

// One connection: the transport the host gave the constructor, and its
// idle timer when there is a timeout.
struct exports_weft_protocol_protocol_protocol_t {
    weft_protocol_transport_own_transport_t transport;
    bool timing;
    uint64_t timeout;
    weft_protocol_reactor_own_delayed_call_t idle;
    // The token the timer fires with; the live connections are listed so
    // that a firing already on its way for a closed one finds nothing.
    uint64_t token;
    echo_t *next;
};

static echo_t *live;
static uint64_t next_token;

static weft_protocol_transport_borrow_transport_t transport_of(echo_t *echo) {
    return weft_protocol_transport_borrow_transport(echo->transport);
}

// config.idle-timeout in nanoseconds, or 0 for none (read on each connect:
// the operator's settings are read at run time, not when built).
static uint64_t idle_timeout(void) {
    service_string_t key;
    service_option_string_t value;
    wasi_config_store_error_t error;
    service_string_set(&key, "idle-timeout");
    if (!wasi_config_store_get(&key, &value, &error)) {
        wasi_config_store_error_free(&error);
        return 0;
    }
    uint64_t nanos = 0;
    if (value.is_some) {
        char seconds[32] = {0};
        size_t len = value.val.len < sizeof seconds - 1 ? value.val.len : sizeof seconds - 1;
        memcpy(seconds, value.val.ptr, len);
        nanos = (uint64_t)(strtod(seconds, NULL) * 1e9);
    }
    service_option_string_free(&value);
    return nanos;
}

// `maybe_client` is NULL for an accepted connection; the echo makes none.
exports_weft_protocol_protocol_own_protocol_t exports_weft_protocol_protocol_constructor_protocol(
    exports_weft_protocol_protocol_own_transport_t transport, uint64_t *maybe_client) {
    (void)maybe_client;
    echo_t *echo = calloc(1, sizeof *echo);
    if (echo == NULL) {
        abort();
    }
    echo->transport = transport;
    echo->token = ++next_token;
    echo->next = live;
    live = echo;
    echo->timeout = idle_timeout();
    weft_protocol_reactor_timer_error_t error;
    if (echo->timeout > 0) {
        echo->timing = weft_protocol_reactor_call_later(echo->timeout, echo->token, &echo->idle, &error);
    }
    return exports_weft_protocol_protocol_protocol_new(echo);
}

void exports_weft_protocol_protocol_method_protocol_data_received(echo_t *echo, service_list_u8_t *data) {
    if (echo->timing) {
        weft_protocol_reactor_method_delayed_call_reset(
            weft_protocol_reactor_borrow_delayed_call(echo->idle), echo->timeout);
    }
    weft_protocol_transport_method_transport_write(transport_of(echo), data);
    // Arguments of an exported function belong to the callee.
    service_list_u8_free(data);
}

void exports_weft_protocol_protocol_method_protocol_read_connection_lost(echo_t *echo) {
    weft_protocol_transport_method_transport_lose_connection(transport_of(echo));
}

void exports_weft_protocol_protocol_method_protocol_connection_lost(
    echo_t *echo, exports_weft_protocol_protocol_close_reason_t reason) {
    (void)reason;
    if (echo->timing) {
        weft_protocol_reactor_method_delayed_call_cancel(
            weft_protocol_reactor_borrow_delayed_call(echo->idle));
    }
}

void exports_weft_protocol_protocol_protocol_destructor(echo_t *echo) {
    for (echo_t **at = &live; *at != NULL; at = &(*at)->next) {
        if (*at == echo) {
            *at = echo->next;
            break;
        }
    }
    if (echo->timing) {
        weft_protocol_reactor_delayed_call_drop_own(echo->idle);
    }
    weft_protocol_transport_transport_drop_own(echo->transport);
    free(echo);
}

// The instance's events: an idle timer is due; the echo connects nowhere.
void exports_weft_protocol_events_start(void) {}

void exports_weft_protocol_events_stop(void) {}

void exports_weft_protocol_events_timer_fired(uint64_t token) {
    for (echo_t *echo = live; echo != NULL; echo = echo->next) {
        if (echo->token == token) {
            weft_protocol_transport_method_transport_lose_connection(transport_of(echo));
            return;
        }
    }
}

void exports_weft_protocol_events_connect_failed(uint64_t token, exports_weft_protocol_events_connect_error_t reason) {
    (void)token;
    (void)reason;
}

// No-ops: an echo produces nothing of its own, so it watches no write-buffer.
void exports_weft_protocol_producers_pause_producing(uint64_t token) {
    (void)token;
}

void exports_weft_protocol_producers_resume_producing(uint64_t token) {
    (void)token;
}
