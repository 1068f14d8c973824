/*
 * mqtt.c - the MQTT source adapter (type "mqtt"): libmosquitto 2.0 driven
 * by sluice's own libevent loop.
 *
 * Why it is wired by hand: libmosquitto runs its network loop either in a
 * thread of its own (mosquitto_loop_start) or in a blocking call
 * (mosquitto_loop_forever), or it offers the primitives of its "network
 * loop for use in other event loops" section: mosquitto_socket(),
 * mosquitto_loop_read/write/misc() and mosquitto_want_write(). sluice uses
 * the primitives so that every message is received, deduplicated and
 * handed to the bridge on the one loop thread: the hot path takes no lock
 * and the bridge never sees a second thread. The wiring is:
 *
 *   - a persistent EV_READ event on mosquitto_socket() that calls
 *     mosquitto_loop_read (which parses packets and runs our callbacks);
 *   - an EV_WRITE event that is pending only while mosquitto_want_write()
 *     is true, calling mosquitto_loop_write. libmosquitto only queues a
 *     packet (without writing it) when asked from inside one of its
 *     callbacks, so the write interest is re-checked after every call into
 *     libmosquitto that may queue packets (loop_read, subscribe, misc);
 *   - a 1 s periodic timer calling mosquitto_loop_misc (keepalive PINGREQ,
 *     and the disconnect when no PINGRESP came back);
 *   - our own reconnect timer (capped backoff with jitter from
 *     source_backoff_ms; mosquitto_reconnect_delay_set belongs to the
 *     threaded and blocking loops) and a 5 s CONNACK deadline.
 *
 * Life of a connection: DOWN -> mosquitto_connect_bind_async -> CONNACK ->
 * CONNECTING (SUBSCRIBE sent) -> every SUBACK -> UP. Any failure drops the
 * connection, sets DOWN with a short status and schedules a retry.
 *
 * One upstream message is one event (SPEC 3.1): the subscription table
 * and the suppression of the copies a broker sends for overlapping
 * filters (MQTT 5 subscription identifiers, a retained-message set for
 * 3.1.1) are mqtt_subs.c's, with its design note. This file owns the
 * connection lifecycle and the libevent wiring, and tells mqtt_subs when
 * a connection starts, ends, or gets a SUBACK/UNSUBACK.
 *
 * Invariants: nothing here blocks the loop (except a DNS lookup, see
 * mqtt_connect_attempt), no password or URL is logged, and once stop() ran
 * no sink function is called. adapter.h forbids a sink to call stop();
 * should one do it anyway, the adapter is freed only after the outermost
 * libmosquitto call has returned (impl->depth), not under its feet.
 *
 * A known cost of this wiring: libmosquitto writes one byte to an internal
 * non-blocking socketpair for every packet it queues (to wake its own
 * select loop); nothing reads it here, so once full those writes fail
 * with EAGAIN: one wasted syscall per PUBACK or SUBSCRIBE, no blocking.
 */
#include "adapters/adapter.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "adapters/mqtt_subs.h"
#include "lib/url.h"
#include "lib/log.h"
#include "lib/message.h"

enum {
    MQTT_PORT = 1883,
    MQTTS_PORT = 8883,
    MQTT_KEEPALIVE_MIN_S = 5,
    MQTT_KEEPALIVE_MAX_S = 65535,
    MQTT_HANDSHAKE_TIMEOUT_MS = 5000,
    MQTT_MISC_INTERVAL_MS = 1000,
    /* Packets read per readiness callback before yielding to the loop. */
    MQTT_READ_BATCH = 64,
};

/* Without a ca_file, mqtts:// verifies the broker against the system's
 * CA store (Debian's ca-certificates), as a browser would. */
static const char mqtt_system_ca_path[] = "/etc/ssl/certs";

/* Where and how to connect, parsed from the source URL. Owns its strings;
 * user and password are secrets as far as logging is concerned. */
struct mqtt_endpoint {
    char *host; /* without IPv6 brackets */
    int port;
    bool tls;
    char *user;     /* NULL: anonymous */
    char *password; /* NULL: none */
};

/* The adapter's private state (src->impl). */
struct mqtt_adapter {
    struct source *src; /* not touched once stopped */
    struct mosquitto *mosq;
    struct mqtt_endpoint ep;
    char *client_id;
    int keepalive_s;
    bool v5;              /* protocol 5 */
    bool lib_initialised; /* we hold one mosquitto_lib_init reference */

    /* The current connection. ev_read/ev_write watch one socket and are
     * re-created per connection; the timers live as long as the adapter. */
    struct event *ev_read;
    struct event *ev_write;
    struct event *ev_misc;
    struct event *ev_handshake;
    struct event *ev_retry;
    bool linked;      /* the I/O events watch a live socket */
    bool write_armed; /* ev_write is pending */
    bool connack;     /* CONNACK accepted on this connection */
    unsigned attempt; /* reconnect attempt; reset when UP */

    /* Subscriptions of the current connection and deduplication state
     * (owned; emptied whenever the connection ends). */
    struct mqtt_subs subs;

    int depth;    /* nesting of our event callbacks */
    bool stopped; /* stop() ran; free when depth is 0 */
};

static void mqtt_on_readable(evutil_socket_t fd, short what, void *arg);
static void mqtt_on_writable(evutil_socket_t fd, short what, void *arg);

/* ---- URL --------------------------------------------------------------- */

static void mqtt_endpoint_clear(struct mqtt_endpoint *ep)
{
    free(ep->host);
    free(ep->user);
    if (ep->password != NULL) {
        /* Do not leave the secret in freed heap memory. */
        memset(ep->password, 0, strlen(ep->password));
        free(ep->password);
    }
    memset(ep, 0, sizeof(*ep));
}

/*
 * Parses "mqtt[s]://[user[:pass]@]host[:port][/]" into ep (which it owns
 * afterwards; clear with mqtt_endpoint_clear, also on failure), with the
 * one broker URL parser (lib/url.h). Error texts never quote the URL: it
 * may hold a password.
 */
static int mqtt_parse_url(const char *text, struct mqtt_endpoint *ep,
                          char *why, size_t whylen)
{
    struct url url;
    int rc = -1;

    memset(ep, 0, sizeof(*ep));
    if (url_parse(text, &url, why, whylen) < 0)
        goto out;
    if (strcmp(url.scheme, "mqtts") == 0) {
        ep->tls = true;
    } else if (strcmp(url.scheme, "mqtt") != 0) {
        snprintf(why, whylen, "url scheme must be mqtt:// or mqtts://");
        goto out;
    }
    if (url.path[0] != '\0' && strcmp(url.path, "/") != 0) {
        snprintf(why, whylen, "url must not have a path");
        goto out;
    }
    ep->port = url.port != -1 ? url.port : ep->tls ? MQTTS_PORT : MQTT_PORT;
    /* Moved, not copied: url_clear frees (and wipes) what is left. */
    ep->host = url.host;
    ep->user = url.user;
    ep->password = url.password;
    url.host = url.user = url.password = NULL;
    rc = 0;
out:
    url_clear(&url);
    return rc;
}

/* ---- small helpers ----------------------------------------------------- */

/* Text for a refused CONNACK: MQTT 5 reason codes and 3.1.1 return
 * codes are different tables. */
static const char *mqtt_connack_text(const struct mqtt_adapter *impl, int rc)
{
    if (impl->v5)
        return mosquitto_reason_string(rc);
    return mosquitto_connack_string(rc);
}

static struct timeval mqtt_timeval(int64_t ms)
{
    struct timeval tv = {
        .tv_sec = (time_t)(ms / 1000),
        .tv_usec = (suseconds_t)((ms % 1000) * 1000),
    };
    return tv;
}

/* Receive time: the loop's cached clock (no syscall per message). */
static int64_t mqtt_now_ms(const struct mqtt_adapter *impl)
{
    struct timeval tv;

    event_base_gettimeofday_cached(impl->src->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- connection lifecycle ---------------------------------------------- */

/* Stops watching the current socket (the socket itself belongs to
 * libmosquitto, which closes it). Safe to call when not linked. */
static void mqtt_unlink(struct mqtt_adapter *impl)
{
    if (impl->ev_read != NULL)
        event_del(impl->ev_read);
    if (impl->ev_write != NULL)
        event_del(impl->ev_write);
    event_del(impl->ev_misc);
    event_del(impl->ev_handshake);
    impl->linked = false;
    impl->write_armed = false;
    impl->connack = false;
    mqtt_subs_reset(&impl->subs);
}

/* Arms ev_write exactly while libmosquitto has bytes to send. */
static void mqtt_update_write(struct mqtt_adapter *impl)
{
    bool want;

    if (impl->stopped || !impl->linked)
        return;
    want = mosquitto_want_write(impl->mosq);
    if (want == impl->write_armed)
        return;
    if (want)
        event_add(impl->ev_write, NULL);
    else
        event_del(impl->ev_write);
    impl->write_armed = want;
}

static void mqtt_schedule_retry(struct mqtt_adapter *impl)
{
    int64_t delay = source_backoff_ms(impl->attempt);
    struct timeval tv = mqtt_timeval(delay);

    if (impl->attempt == 0)
        log_warn("source %s: %s; retrying in %lld ms", impl->src->cfg->name,
                 impl->src->status, (long long)delay);
    else
        log_debug("source %s: %s; retry %u in %lld ms", impl->src->cfg->name,
                  impl->src->status, impl->attempt, (long long)delay);
    impl->attempt++;
    evtimer_add(impl->ev_retry, &tv);
}

/*
 * Gives up on the current connection: stops watching it, asks
 * libmosquitto to close it (a DISCONNECT if the socket still works; a
 * socket that cannot be closed now is closed by the next connect), sets
 * DOWN with the printf-style status and schedules a retry. Any
 * on_disconnect this triggers is ignored (we are no longer linked).
 */
static void mqtt_fail(struct mqtt_adapter *impl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void mqtt_fail(struct mqtt_adapter *impl, const char *fmt, ...)
{
    char status[sizeof(impl->src->status)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(status, sizeof(status), fmt, ap);
    va_end(ap);
    mqtt_unlink(impl);
    mosquitto_disconnect(impl->mosq);
    if (impl->stopped)
        return;
    source_set_state(impl->src, SOURCE_DOWN, status);
    mqtt_schedule_retry(impl);
}

/* Creates the I/O events for the socket libmosquitto just opened and arms
 * the timers of a new connection. 0, or -1 on ENOMEM. */
static int mqtt_link(struct mqtt_adapter *impl, evutil_socket_t fd)
{
    struct event_base *base = impl->src->base;
    struct timeval misc = mqtt_timeval(MQTT_MISC_INTERVAL_MS);
    struct timeval handshake = mqtt_timeval(MQTT_HANDSHAKE_TIMEOUT_MS);

    /* The previous connection's events are deleted, never running here. */
    if (impl->ev_read != NULL)
        event_free(impl->ev_read);
    if (impl->ev_write != NULL)
        event_free(impl->ev_write);
    impl->ev_read =
        event_new(base, fd, EV_READ | EV_PERSIST, mqtt_on_readable, impl);
    impl->ev_write =
        event_new(base, fd, EV_WRITE | EV_PERSIST, mqtt_on_writable, impl);
    if (impl->ev_read == NULL || impl->ev_write == NULL)
        return -1;
    if (event_add(impl->ev_read, NULL) != 0 ||
        event_add(impl->ev_misc, &misc) != 0 ||
        event_add(impl->ev_handshake, &handshake) != 0)
        return -1;
    impl->linked = true;
    impl->connack = false;
    mqtt_update_write(impl);
    return 0;
}

/*
 * Starts one connection attempt. mosquitto_connect_bind_async does not
 * wait for the TCP handshake (a non-blocking connect, completed through
 * ev_write), but it resolves the host name with a blocking getaddrinfo():
 * instant for IP literals and "localhost" (from /etc/hosts), which is how
 * a sidecar reaches its brokers; a slow DNS server would stall the loop
 * for the lookup. libmosquitto 2.0 has no asynchronous resolver for
 * non-SRV connects.
 */
static void mqtt_connect_attempt(struct mqtt_adapter *impl)
{
    int rc;
    int fd;

    errno = 0;
    rc = mosquitto_connect_bind_async(impl->mosq, impl->ep.host, impl->ep.port,
                                      impl->keepalive_s, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        mqtt_fail(impl, "connect failed: %s", mqtt_subs_strerror(rc));
        return;
    }
    fd = mosquitto_socket(impl->mosq);
    if (fd < 0) {
        mqtt_fail(impl, "connect failed: no socket");
        return;
    }
    if (mqtt_link(impl, fd) != 0)
        mqtt_fail(impl, "connect failed: out of memory");
}

/* CONNECTING -> UP once no SUBACK is outstanding. */
static void mqtt_check_subscribed(struct mqtt_adapter *impl)
{
    struct source *src = impl->src;

    if (src->state != SOURCE_CONNECTING || mqtt_subs_pending(&impl->subs))
        return;
    impl->attempt = 0;
    source_set_state(src, SOURCE_UP, NULL);
    log_debug("source %s: subscribed to %zu filters", src->cfg->name,
              impl->subs.nfilters);
}

/* ---- messages ---------------------------------------------------------- */

/*
 * libmosquitto's on_message (v5 form: props is NULL under 3.1.1): one
 * PUBLISH (for QoS 2, on PUBREL). Hot path: the copy check, one
 * message_new, the sink. libmosquitto has queued the PUBACK of a QoS 1
 * message before calling us (2.0 has no manual acknowledgement), so the
 * sink's answer cannot hold the acknowledgement back.
 */
static void mqtt_on_message(struct mosquitto *mosq, void *obj,
                            const struct mosquitto_message *m,
                            const mosquitto_property *props)
{
    struct mqtt_adapter *impl = obj;
    struct source *src = impl->src;
    size_t topic_len;
    struct message *msg;

    (void)mosq;
    if (impl->stopped || m->topic == NULL || m->payloadlen < 0)
        return;
    topic_len = strlen(m->topic);
    if (mqtt_subs_is_copy(&impl->subs, m, topic_len, props))
        return;
    /* A payload over max_payload is counted and never copied. */
    if (src->sink.too_large != NULL &&
        src->sink.too_large(src->sink.ctx, src, m->topic,
                            (size_t)m->payloadlen))
        return;
    msg = message_new(src->index, SOURCE_MQTT, m->topic, topic_len,
                      m->payloadlen > 0 ? m->payload : "",
                      (size_t)m->payloadlen, mqtt_now_ms(impl));
    if (msg == NULL) {
        log_warn("source %s: message dropped: out of memory", src->cfg->name);
        return;
    }
    msg->has_mqtt = true;
    msg->retain = m->retain;
    msg->qos = (uint8_t)m->qos;
    /* The bridge counts refusals (too large, ENOMEM); nothing to undo. */
    (void)src->sink.deliver(src->sink.ctx, src, msg);
}

/* ---- libmosquitto callbacks -------------------------------------------- */

static void mqtt_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    struct mqtt_adapter *impl = obj;
    struct source *src = impl->src;
    char why[sizeof(src->status)];

    (void)mosq;
    if (impl->stopped || !impl->linked)
        return;
    if (rc != 0) {
        mqtt_fail(impl, "CONNACK refused: %s", mqtt_connack_text(impl, rc));
        return;
    }
    event_del(impl->ev_handshake);
    impl->connack = true;
    log_info("source %s: connected to %s:%d", src->cfg->name, impl->ep.host,
             impl->ep.port);
    source_set_state(src, SOURCE_CONNECTING, "subscribing");
    /* With clean_session false the broker still has our subscriptions;
     * subscribing again is harmless and covers a changed config. */
    mqtt_subs_clear(&impl->subs);
    for (size_t i = 0; i < src->subs.patterns.count; i++) {
        if (mqtt_subs_subscribe(&impl->subs, impl->mosq,
                                src->subs.patterns.items[i], src->cfg->qos, why,
                                sizeof(why)) != 0) {
            mqtt_fail(impl, "%s", why);
            return;
        }
    }
    mqtt_check_subscribed(impl);
}

static void mqtt_on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    struct mqtt_adapter *impl = obj;

    (void)mosq;
    if (impl->stopped || !impl->linked)
        return; /* we dropped it ourselves */
    if (impl->connack)
        mqtt_fail(impl, "connection lost: %s", mqtt_subs_strerror(rc));
    else
        mqtt_fail(impl, "connect failed: %s", mqtt_subs_strerror(rc));
}

static void mqtt_on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                              int qos_count, const int *granted_qos)
{
    struct mqtt_adapter *impl = obj;
    const struct mqtt_filter *f;

    (void)mosq;
    if (impl->stopped)
        return;
    f = mqtt_subs_suback(&impl->subs, mid, qos_count, granted_qos);
    if (f == NULL)
        return; /* from an earlier connection */
    /* A refused filter is the operator's to fix; the others keep
     * working. */
    if (f->state == MQTT_FILTER_REFUSED)
        log_warn("source %s: broker refused subscription to %s",
                 impl->src->cfg->name, f->text);
    mqtt_check_subscribed(impl);
}

static void mqtt_on_unsubscribe(struct mosquitto *mosq, void *obj, int mid)
{
    struct mqtt_adapter *impl = obj;

    (void)mosq;
    if (impl->stopped)
        return;
    mqtt_subs_unsuback(&impl->subs, mid);
}

/* ---- libevent callbacks ------------------------------------------------ */

static void mqtt_adapter_free(struct mqtt_adapter *impl);

/* Brackets every libevent callback: stop() called from inside one (via
 * the sink) defers the free until the outermost callback returns. */
static void mqtt_enter(struct mqtt_adapter *impl)
{
    impl->depth++;
}

static void mqtt_leave(struct mqtt_adapter *impl)
{
    impl->depth--;
    if (impl->stopped && impl->depth == 0)
        mqtt_adapter_free(impl);
}

/* A loop call that failed without telling on_disconnect (no socket). */
static void mqtt_check_rc(struct mqtt_adapter *impl, int rc)
{
    if (rc != MOSQ_ERR_SUCCESS && impl->linked && !impl->stopped)
        mqtt_fail(impl, "connection lost: %s", mqtt_subs_strerror(rc));
}

/*
 * Readable socket. mosquitto_loop_read handles one packet per call when
 * no QoS>0 message is in flight, so this reads up to MQTT_READ_BATCH
 * packets before yielding to the loop, stopping early when libmosquitto's
 * own "drained" signal (success with errno EAGAIN) shows up. Stopping
 * early by mistake only costs one more loop turn: the event is
 * level-triggered.
 */
static void mqtt_on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct mqtt_adapter *impl = arg;
    int rc = MOSQ_ERR_SUCCESS;

    (void)fd;
    (void)what;
    mqtt_enter(impl);
    for (int i = 0; i < MQTT_READ_BATCH; i++) {
        errno = 0;
        rc = mosquitto_loop_read(impl->mosq, 1);
        if (rc != MOSQ_ERR_SUCCESS || !impl->linked || impl->stopped ||
            errno == EAGAIN || errno == EWOULDBLOCK)
            break;
    }
    mqtt_check_rc(impl, rc);
    mqtt_update_write(impl);
    mqtt_leave(impl);
}

/*
 * Writable socket: flush queued packets. During a TLS handshake
 * libmosquitto 2.0 advances SSL_connect only from mosquitto_loop_read
 * (its own mosquitto_loop calls the handshake on writability too), and
 * loop_write does nothing then. When SSL_connect wants to write (its
 * ClientHello met a TCP connect still in progress, as with a remote
 * broker), want_write stays true and this event would fire in a loop;
 * so before the CONNACK a TLS connection also gets a read call here.
 * On loopback the handshake only ever waits to read.
 */
static void mqtt_on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct mqtt_adapter *impl = arg;
    int rc = MOSQ_ERR_SUCCESS;

    (void)fd;
    (void)what;
    mqtt_enter(impl);
    if (impl->ep.tls && !impl->connack)
        rc = mosquitto_loop_read(impl->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && impl->linked && !impl->stopped)
        rc = mosquitto_loop_write(impl->mosq, 1);
    mqtt_check_rc(impl, rc);
    mqtt_update_write(impl);
    mqtt_leave(impl);
}

static void mqtt_on_misc(evutil_socket_t fd, short what, void *arg)
{
    struct mqtt_adapter *impl = arg;

    (void)fd;
    (void)what;
    mqtt_enter(impl);
    mqtt_check_rc(impl, mosquitto_loop_misc(impl->mosq));
    mqtt_update_write(impl);
    mqtt_leave(impl);
}

static void mqtt_on_handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct mqtt_adapter *impl = arg;

    (void)fd;
    (void)what;
    mqtt_enter(impl);
    if (impl->linked && !impl->connack)
        mqtt_fail(impl, "no CONNACK within %d s",
                  MQTT_HANDSHAKE_TIMEOUT_MS / 1000);
    mqtt_leave(impl);
}

static void mqtt_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct mqtt_adapter *impl = arg;

    (void)fd;
    (void)what;
    mqtt_enter(impl);
    mqtt_connect_attempt(impl);
    mqtt_leave(impl);
}

/* ---- setup and teardown ------------------------------------------------ */

/*
 * MQTT 5 only: with clean_session false, asks the broker to keep the
 * session after a disconnect (Session Expiry Interval "never"); without
 * it an MQTT 5 session ends with the connection. libmosquitto 2.0 has no
 * asynchronous connect that takes CONNECT properties, but
 * mosquitto_connect_bind_v5 stores its properties on the handle before it
 * checks the address, and every later connect sends the stored ones. So
 * we store them with a port of -1, which fails (MOSQ_ERR_INVAL) before
 * any network I/O. The unit test "protocol 5 persistent session" guards
 * this reliance on libmosquitto's order of checks.
 */
static int mqtt_store_session_expiry(struct mqtt_adapter *impl)
{
    mosquitto_property *props = NULL;
    int rc;

    rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                      UINT32_MAX);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect_bind_v5(impl->mosq, impl->ep.host, -1,
                                       impl->keepalive_s, NULL, props);
    mosquitto_property_free_all(&props);
    return rc == MOSQ_ERR_INVAL ? 0 : -1;
}

/* TLS for mqtts:// (and a refusal of TLS files without it). 0 or -1. */
static int mqtt_configure_tls(struct mqtt_adapter *impl, char *why,
                              size_t whylen)
{
    const struct source_config *cfg = impl->src->cfg;
    int rc;

    if (!impl->ep.tls) {
        if (cfg->ca_file || cfg->cert_file || cfg->key_file) {
            snprintf(why, whylen, "ca_file/cert_file/key_file need mqtts://");
            return -1;
        }
        return 0;
    }
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(why, whylen, "cert_file and key_file go together");
        return -1;
    }
    rc = mosquitto_tls_set(impl->mosq, cfg->ca_file,
                           cfg->ca_file ? NULL : mqtt_system_ca_path,
                           cfg->cert_file, cfg->key_file, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(why, whylen,
                 "TLS setup failed (check ca_file, cert_file, "
                 "key_file): %s",
                 mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

/* Creates and configures the libmosquitto handle. 0 or -1 with why. */
static int mqtt_configure(struct mqtt_adapter *impl, char *why, size_t whylen)
{
    const struct source_config *cfg = impl->src->cfg;
    int version = impl->v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;

    impl->mosq = mosquitto_new(impl->client_id, cfg->clean_session, impl);
    if (impl->mosq == NULL) {
        snprintf(why, whylen, "cannot create MQTT client: %s", strerror(errno));
        return -1;
    }
    if (mosquitto_int_option(impl->mosq, MOSQ_OPT_PROTOCOL_VERSION, version) !=
            MOSQ_ERR_SUCCESS ||
        (impl->ep.user != NULL &&
         mosquitto_username_pw_set(impl->mosq, impl->ep.user,
                                   impl->ep.password) != MOSQ_ERR_SUCCESS)) {
        snprintf(why, whylen, "bad protocol version or user name");
        return -1;
    }
    if (mqtt_configure_tls(impl, why, whylen) != 0)
        return -1;
    if (version == MQTT_PROTOCOL_V5 && !cfg->clean_session &&
        mqtt_store_session_expiry(impl) != 0) {
        snprintf(why, whylen, "cannot set the MQTT 5 session expiry");
        return -1;
    }
    mosquitto_connect_callback_set(impl->mosq, mqtt_on_connect);
    mosquitto_disconnect_callback_set(impl->mosq, mqtt_on_disconnect);
    mosquitto_subscribe_callback_set(impl->mosq, mqtt_on_subscribe);
    mosquitto_unsubscribe_callback_set(impl->mosq, mqtt_on_unsubscribe);
    mosquitto_message_v5_callback_set(impl->mosq, mqtt_on_message);
    return 0;
}

/* Client id, keepalive and the timers. 0 or -1 with why. */
static int mqtt_prepare(struct mqtt_adapter *impl, char *why, size_t whylen)
{
    const struct source_config *cfg = impl->src->cfg;
    struct event_base *base = impl->src->base;
    int64_t keepalive = cfg->keepalive_ms / 1000;
    char id[128];

    if (cfg->client_id != NULL) {
        impl->client_id = strdup(cfg->client_id);
    } else {
        snprintf(id, sizeof(id), "sluice-%s-%ld", cfg->name, (long)getpid());
        impl->client_id = strdup(id);
    }
    if (keepalive < MQTT_KEEPALIVE_MIN_S)
        keepalive = MQTT_KEEPALIVE_MIN_S;
    if (keepalive > MQTT_KEEPALIVE_MAX_S)
        keepalive = MQTT_KEEPALIVE_MAX_S;
    impl->keepalive_s = (int)keepalive;
    impl->v5 = cfg->protocol == 5;
    mqtt_subs_init(&impl->subs, impl->v5);
    impl->ev_misc = event_new(base, -1, EV_PERSIST, mqtt_on_misc, impl);
    impl->ev_handshake = evtimer_new(base, mqtt_on_handshake_timeout, impl);
    impl->ev_retry = evtimer_new(base, mqtt_on_retry, impl);
    if (impl->client_id == NULL || impl->ev_misc == NULL ||
        impl->ev_handshake == NULL || impl->ev_retry == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* Frees everything the adapter owns; closes the connection if open. */
static void mqtt_adapter_free(struct mqtt_adapter *impl)
{
    if (impl->mosq != NULL) {
        mosquitto_disconnect(impl->mosq);
        mosquitto_destroy(impl->mosq);
    }
    if (impl->lib_initialised)
        mosquitto_lib_cleanup();
    if (impl->ev_read != NULL)
        event_free(impl->ev_read);
    if (impl->ev_write != NULL)
        event_free(impl->ev_write);
    if (impl->ev_misc != NULL)
        event_free(impl->ev_misc);
    if (impl->ev_handshake != NULL)
        event_free(impl->ev_handshake);
    if (impl->ev_retry != NULL)
        event_free(impl->ev_retry);
    mqtt_subs_free(&impl->subs);
    mqtt_endpoint_clear(&impl->ep);
    free(impl->client_id);
    free(impl);
}

/*
 * adapter_ops.start: parses the URL, sets up libmosquitto and schedules
 * the first connection attempt at once (on the loop, so start itself does
 * no network I/O). mosquitto_lib_init is process-wide but reference
 * counted in libmosquitto 2.0 (not thread-safe, which does not matter on
 * one thread), so every adapter takes and releases one reference; note
 * that the first init also calls srand().
 */
static int mqtt_start(struct source *src, char *why, size_t whylen)
{
    struct mqtt_adapter *impl = calloc(1, sizeof(*impl));
    struct timeval now = {0, 0};

    if (impl == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    impl->src = src;
    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        snprintf(why, whylen, "cannot initialise libmosquitto");
        goto fail;
    }
    impl->lib_initialised = true;
    if (mqtt_parse_url(src->cfg->url, &impl->ep, why, whylen) != 0 ||
        mqtt_prepare(impl, why, whylen) != 0 ||
        mqtt_configure(impl, why, whylen) != 0)
        goto fail;
    src->impl = impl;
    source_set_state(src, SOURCE_DOWN, "connecting");
    evtimer_add(impl->ev_retry, &now);
    return 0;
fail:
    mqtt_adapter_free(impl);
    return -1;
}

/*
 * adapter_ops.stop: idempotent. Removes every event at once, so no
 * callback and no sink call follows; the handle is freed now, or after
 * the current libmosquitto call when stop() runs inside one. The state is
 * set DOWN without telling the sink (the caller is tearing it down).
 */
static void mqtt_stop(struct source *src)
{
    struct mqtt_adapter *impl = src->impl;

    if (impl == NULL)
        return;
    src->impl = NULL;
    mqtt_unlink(impl);
    event_del(impl->ev_retry);
    impl->stopped = true;
    src->state = SOURCE_DOWN;
    snprintf(src->status, sizeof(src->status), "stopped");
    if (impl->depth == 0)
        mqtt_adapter_free(impl);
}

/*
 * adapter_ops.resubscribe: takes *subs' contents (and zeroes *subs). When
 * connected, unsubscribes the gone filters and subscribes the new ones;
 * otherwise the next connection subscribes the new set. A source that is
 * UP stays UP while the new SUBACKs are outstanding. Returns 0, or -1
 * when libmosquitto refused a filter (the new set is kept, and the next
 * connection subscribes it in full).
 */
static int mqtt_resubscribe(struct source *src, struct subscriptions *subs)
{
    struct mqtt_adapter *impl = src->impl;
    int rc = 0;

    subscriptions_free(&src->subs);
    src->subs = *subs;
    memset(subs, 0, sizeof(*subs));
    if (impl != NULL && impl->connack) {
        rc = mqtt_subs_apply(&impl->subs, impl->mosq, &src->subs.patterns,
                             src->cfg->qos, src->cfg->name);
        mqtt_update_write(impl);
    }
    return rc;
}

/* adapter_ops.check_url. */
static int mqtt_check_url(const char *url, char *why, size_t whylen)
{
    struct mqtt_endpoint ep;
    int rc = mqtt_parse_url(url, &ep, why, whylen);

    mqtt_endpoint_clear(&ep);
    return rc;
}

/* adapter_ops.configured: the `subscribe` filters. */
static int mqtt_configured(const struct source_config *cfg,
                           struct subscriptions *out)
{
    if (cfg->subscribe.count == 0)
        return 0;
    return config_strv_copy_unique(&out->patterns, &cfg->subscribe) ? -1 : 1;
}

const struct adapter_ops mqtt_adapter_ops = {
    .type = "mqtt",
    .exact_verb = "SUBSCRIBE",
    .pattern_verb = "SUBSCRIBE",
    .configured = mqtt_configured,
    .check_url = mqtt_check_url,
    .start = mqtt_start,
    .stop = mqtt_stop,
    .resubscribe = mqtt_resubscribe,
};
