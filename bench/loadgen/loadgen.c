/*
 * loadgen: a single-threaded epoll WebSocket load generator and echo server.
 *
 * Compiled (not Python) so that on a 2-core machine the load side costs a small
 * fraction of what the thing under test costs; it reports its own CPU time so a
 * reader can check that. Every mode prints one JSON object per report on stdout.
 *
 *   loadgen echo --port P                   echo server: text/binary echoed with their
 *                                           opcode, ping answered, close echoed
 *   loadgen echo --port P --turns 1         a turn per user_message: the five golden-path
 *                                           events (agent_started ... agent_completed),
 *                                           each a frame; anything else echoed
 *   loadgen rtt  ... --turns 1              a round trip ends with agent_completed (the
 *                                           other events are read and not counted)
 *   loadgen rtt  --port P --path /ws --conns N --duration S [--warmup W] [--size B]
 *                                           closed loop: each connection sends one
 *                                           masked text frame, waits for the reply,
 *                                           repeats; latency per round trip
 *   loadgen rtt  ... --rate R [--drain D] [--open-rate O]
 *                                           open loop instead: R messages per second in
 *                                           all, message k on connection k mod N at
 *                                           start + k/R, whether or not the replies
 *                                           are back; latency from the scheduled send
 *                                           time, so a late reply delays no later send
 *                                           and queueing is not hidden (coordinated
 *                                           omission). Replies to messages scheduled in
 *                                           the window are awaited up to D s after it.
 *                                           The connections open first, at most O per
 *                                           second if given (a burst of handshakes is
 *                                           a load of its own).
 *   loadgen idle --port P --path /ws --conns N
 *                                           opens N connections, prints a report, holds
 *                                           them until stdin reaches EOF, closes them
 *   loadgen handshakes --port P --path /ws --conns C --duration S
 *                                           C parallel loops of open, close handshake,
 *                                           wait for the server's EOF; cycles per second
 *
 * Client modes take any number of --header "Name: value" (e.g. Authorization).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sha1.h"

enum mode { M_ECHO, M_RTT, M_IDLE, M_HS };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING, S_LISTEN };

typedef struct {
    uint8_t *p;
    size_t len, off, cap;
} buf_t;

typedef struct {
    int state;
    int server; /* accepted by the echo server */
    int close_after_flush;
    int want_out; /* EPOLLOUT registered */
    int live;     /* counted in g_live: opened and not yet closed */
    uint64_t sent_at;
    buf_t in, out;
    /* paced mode: scheduled send times of the messages in flight, oldest first (the
     * echo answers in order) */
    uint64_t *q;
    size_t qhead, qlen, qcap;
} conn_t;

/* ---- options ---- */
static enum mode g_mode;
static int g_port = 0, g_conns = 1, g_size = 300, g_concurrency = 256;
static int g_turns = 0; /* --turns 1: turn-shaped traffic (echo answers, rtt waits for) */
static double g_duration = 5.0, g_warmup = 1.0, g_rate = 0.0, g_drain = 2.0, g_open_rate = 0.0;
static const char *g_host = "127.0.0.1";
static const char *g_path = "/";
static char g_headers[8192];

/* ---- state ---- */
static conn_t *g_c;
static int g_maxfd;
static int g_ep;
static uint8_t g_payload[1 << 16];
static size_t g_payload_len;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static volatile sig_atomic_t g_stop;

/* stats: 1 us buckets up to 200 ms, 1 ms buckets up to 60 s, then one overflow bucket */
#define HIST_US 200000
#define HIST_MS 60000
#define HIST_N (HIST_US + HIST_MS + 1)
static uint64_t *g_hist, *g_late_hist; /* round trips; how late the paced sends went out */
static uint64_t g_msgs, g_late_n, g_max_ns, g_errors, g_opened, g_cycles, g_live, g_attempts;
static int g_measuring;
static char g_first_error[200];

/* paced mode (--rate): message k is due at g_t0 + k * g_interval_ns on slot k % g_conns;
 * those due in [g_t1, g_t2) are the measured ones, and none is due from g_t2 on */
static int g_tfd = -1, g_pacing, *g_slots;
static double g_interval_ns;
static uint64_t g_t0, g_t1, g_t2, g_k, g_armed;
static uint64_t g_sched_win, g_sent_win, g_unsent_win, g_recv_meas, g_recv_win, g_lost;
static uint64_t g_sent_total;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)g_rng;
}

static void error_note(const char *what) {
    g_errors++;
    if (!g_first_error[0]) snprintf(g_first_error, sizeof g_first_error, "%s", what);
}

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) {
        perror("realloc");
        exit(1);
    }
    b->cap = cap;
}

static void buf_put(buf_t *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_consume(buf_t *b, size_t n) {
    b->off += n;
    if (b->off >= b->len) {
        b->off = b->len = 0;
    } else if (b->off > 65536 && b->off * 2 > b->len) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
}

static void buf_free(buf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void set_events(int fd, uint32_t ev, int op) {
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(g_ep, op, fd, &e) < 0 && op != EPOLL_CTL_DEL) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void conn_close(int fd) {
    conn_t *c = &g_c[fd];
    if (c->state == S_FREE) return;
    if (c->live) g_live--;
    for (size_t i = 0; i < c->qlen; i++) {
        uint64_t due = c->q[(c->qhead + i) % c->qcap];
        if (due >= g_t1 && due < g_t2) g_lost++;
    }
    free(c->q);
    epoll_ctl(g_ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    buf_free(&c->in);
    buf_free(&c->out);
    memset(c, 0, sizeof *c);
}

/* Write what is queued; register for EPOLLOUT only while something is left. */
static void flush(int fd) {
    conn_t *c = &g_c[fd];
    while (c->out.len > c->out.off) {
        ssize_t n = write(fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            if (!c->server) error_note("write failed");
            conn_close(fd);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    int pending = c->out.len > c->out.off;
    if (!pending && c->close_after_flush) {
        conn_close(fd);
        return;
    }
    if (pending != c->want_out) {
        c->want_out = pending;
        set_events(fd, EPOLLIN | (pending ? EPOLLOUT : 0), EPOLL_CTL_MOD);
    }
}

/* Append one frame; `masked` for client-to-server frames (RFC 6455 5.3). */
static void put_frame(conn_t *c, uint8_t first, const uint8_t *data, size_t n, int masked) {
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = first;
    uint8_t mbit = masked ? 0x80 : 0;
    if (n < 126) {
        hdr[h++] = mbit | (uint8_t)n;
    } else if (n < 65536) {
        hdr[h++] = mbit | 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--) hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (!masked) {
        buf_put(&c->out, hdr, h);
        buf_put(&c->out, data, n);
        return;
    }
    uint32_t key = rnd();
    uint8_t mask[4];
    memcpy(mask, &key, 4);
    memcpy(hdr + h, mask, 4);
    h += 4;
    buf_put(&c->out, hdr, h);
    buf_reserve(&c->out, n);
    uint8_t *dst = c->out.p + c->out.len;
    for (size_t i = 0; i < n; i++) dst[i] = data[i] ^ mask[i & 3];
    c->out.len += n;
}

/* ---- echo server ---- */

static const char *find_header(const char *req, const char *name, size_t *len) {
    size_t nl = strlen(name);
    const char *p = strstr(req, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            *len = (size_t)(e - v);
            return v;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static void echo_handshake(int fd) {
    conn_t *c = &g_c[fd];
    buf_reserve(&c->in, 1);
    c->in.p[c->in.len] = 0;
    char *req = (char *)c->in.p + c->in.off;
    char *end = strstr(req, "\r\n\r\n");
    if (!end) return;
    size_t klen;
    const char *key = find_header(req, "Sec-WebSocket-Key", &klen);
    if (!key) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        buf_put(&c->out, bad, sizeof bad - 1);
        c->close_after_flush = 1;
        return;
    }
    char accept[29];
    ws_accept(key, klen, accept);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    buf_put(&c->out, resp, (size_t)n);
    buf_consume(&c->in, (size_t)(end + 4 - req));
    c->state = S_OPEN;
}

/* Parse complete frames from c->in; returns the number of bytes of the next frame's
 * header+payload, or 0 when incomplete. Fills opcode/first byte/payload pointer. */
static size_t next_frame(conn_t *c, uint8_t *first, uint8_t **payload, size_t *plen) {
    uint8_t *p = c->in.p + c->in.off;
    size_t avail = c->in.len - c->in.off;
    if (avail < 2) return 0;
    size_t h = 2;
    uint64_t n = p[1] & 0x7F;
    int masked = p[1] & 0x80;
    if (n == 126) {
        if (avail < 4) return 0;
        n = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (n == 127) {
        if (avail < 10) return 0;
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | p[2 + i];
        h = 10;
    }
    if (masked) h += 4;
    if (avail < h + n) return 0;
    if (masked) {
        uint8_t *m = p + h - 4;
        for (uint64_t i = 0; i < n; i++) p[h + i] ^= m[i & 3];
    }
    *first = p[0];
    *payload = p + h;
    *plen = (size_t)n;
    return h + (size_t)n;
}

/* A turn's events as the unified router and the legacy handlers send them (small
 * payloads). Each echo process numbers its own runs, as each backend does: two such
 * backends compared side by side agree on everything but the volatile run id, so the
 * comparison meets the per-event difference real backends show (docs/PROTOCOL.md,
 * section 4) instead of byte-identical turns. */
static const char *const TURN_EVENTS[] = {
    "{\"type\": \"agent_started\", \"payload\": {\"run_id\": \"%s\", \"agent_name\": \"bench\"}}",
    "{\"type\": \"agent_thinking\", \"payload\": {\"run_id\": \"%s\", \"step\": 1, \"reasoning\": \"looking it up\"}}",
    "{\"type\": \"tool_executing\", \"payload\": {\"run_id\": \"%s\", \"tool_name\": \"search\", \"parameters\": {\"q\": \"bench\"}}}",
    "{\"type\": \"tool_completed\", \"payload\": {\"run_id\": \"%s\", \"tool_name\": \"search\", \"result\": {\"hits\": 3}}}",
    "{\"type\": \"agent_completed\", \"payload\": {\"run_id\": \"%s\", \"result\": {\"answer\": \"done\"}}}",
};

static unsigned long g_runs;

static void put_turn(conn_t *c) {
    char run[40], event[256];
    snprintf(run, sizeof run, "run-%ld-%lu", (long)getpid(), ++g_runs);
    for (size_t i = 0; i < sizeof TURN_EVENTS / sizeof *TURN_EVENTS; i++) {
        int n = snprintf(event, sizeof event, TURN_EVENTS[i], run);
        put_frame(c, 0x81, (const uint8_t *)event, (size_t)n, 0);
    }
}

static void echo_frames(int fd) {
    conn_t *c = &g_c[fd];
    uint8_t first, *payload;
    size_t plen, total;
    while ((total = next_frame(c, &first, &payload, &plen)) > 0) {
        uint8_t op = first & 0x0F;
        if (op == 0x8) {
            put_frame(c, 0x88, payload, plen, 0);
            c->close_after_flush = 1;
            buf_consume(&c->in, total);
            return;
        }
        if (op == 0x9)
            put_frame(c, 0x8A, payload, plen, 0);
        else if (g_turns && op == 0x1 && memmem(payload, plen, "\"user_message\"", 14))
            put_turn(c);
        else if (op != 0xA)
            put_frame(c, first & 0x8F, payload, plen, 0);
        buf_consume(&c->in, total);
    }
}

/* ---- client ---- */

static int open_client(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        error_note("socket() failed (fd limit?)");
        return -1;
    }
    if (fd >= g_maxfd) {
        close(fd);
        error_note("fd beyond table");
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    inet_pton(AF_INET, g_host, &a.sin_addr);
    g_attempts++;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        error_note("connect failed");
        close(fd);
        return -1;
    }
    conn_t *c = &g_c[fd];
    memset(c, 0, sizeof *c);
    c->state = S_CONNECTING;
    c->want_out = 1;
    set_events(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
    return fd;
}

static void send_request(int fd) {
    conn_t *c = &g_c[fd];
    uint8_t raw[16];
    for (int i = 0; i < 4; i++) {
        uint32_t r = rnd();
        memcpy(raw + 4 * i, &r, 4);
    }
    char key[32];
    base64(raw, 16, key);
    char req[9000];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     g_path, g_host, g_port, key, g_headers);
    buf_put(&c->out, req, (size_t)n);
    c->state = S_HANDSHAKE;
}

static void send_message(int fd) {
    conn_t *c = &g_c[fd];
    c->sent_at = now_ns();
    put_frame(c, 0x81, g_payload, g_payload_len, 1);
}

static void send_close(int fd) {
    conn_t *c = &g_c[fd];
    static const uint8_t code[2] = {0x03, 0xE8}; /* 1000 */
    put_frame(c, 0x88, code, 2, 1);
    c->state = S_CLOSING;
}

static void on_open(int fd) {
    g_opened++;
    g_live++;
    g_c[fd].live = 1;
    if (g_mode == M_RTT && g_rate <= 0 && !g_stop)
        send_message(fd); /* closed loop; paced connections wait for their slots */
    else if (g_mode == M_HS)
        send_close(fd);
}

static void client_handshake(int fd) {
    conn_t *c = &g_c[fd];
    buf_reserve(&c->in, 1);
    c->in.p[c->in.len] = 0;
    char *resp = (char *)c->in.p + c->in.off;
    char *end = strstr(resp, "\r\n\r\n");
    if (!end) return;
    if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
        char what[64];
        snprintf(what, sizeof what, "handshake refused: %.12s", resp);
        error_note(what);
        conn_close(fd);
        return;
    }
    buf_consume(&c->in, (size_t)(end + 4 - resp));
    c->state = S_OPEN;
    on_open(fd);
}

static size_t bucket(uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us < HIST_US) return (size_t)us;
    uint64_t ms = (us - HIST_US) / 1000;
    return HIST_US + (size_t)(ms < HIST_MS ? ms : HIST_MS);
}

static void hist_add(uint64_t ns) {
    g_hist[bucket(ns)]++;
    g_msgs++;
    if (ns > g_max_ns) g_max_ns = ns;
}

static void record(uint64_t ns) {
    if (g_measuring) hist_add(ns);
}

/* ---- paced mode ---- */

static void q_push(conn_t *c, uint64_t due) {
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 64;
        uint64_t *q = malloc(cap * sizeof *q);
        if (!q) {
            perror("malloc");
            exit(1);
        }
        for (size_t i = 0; i < c->qlen; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = due;
    c->qlen++;
}

static uint64_t q_pop(conn_t *c) {
    uint64_t due = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return due;
}

static void arm(uint64_t at) {
    if (at == g_armed) return;
    g_armed = at;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at / 1000000000ull),
                                          .tv_nsec = (long)(at % 1000000000ull)}};
    timerfd_settime(g_tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Send every message that is due by now, each on its own connection's schedule, then
 * arm the timer for the next. A connection that is gone loses its slots (unsent). */
static void pace(void) {
    if (!g_pacing) return;
    uint64_t now = now_ns();
    for (;;) {
        uint64_t due = g_t0 + (uint64_t)((double)g_k * g_interval_ns);
        if (due >= g_t2) {
            g_pacing = 0;
            return;
        }
        if (due > now) {
            arm(due);
            return;
        }
        int fd = g_slots[g_k % (uint64_t)g_conns];
        g_k++;
        int measured = due >= g_t1;
        g_sched_win += (uint64_t)measured;
        if (fd < 0 || g_c[fd].state != S_OPEN || g_c[fd].server) {
            g_unsent_win += (uint64_t)measured;
            continue;
        }
        if (measured) {
            g_sent_win++;
            uint64_t late = (now - due) / 1000;
            g_late_hist[late < HIST_US ? late : HIST_US]++;
            g_late_n++;
        }
        g_sent_total++;
        q_push(&g_c[fd], due);
        put_frame(&g_c[fd], 0x81, g_payload, g_payload_len, 1);
        flush(fd);
    }
}

static void paced_reply(conn_t *c) {
    if (c->qlen == 0) return;
    uint64_t due = q_pop(c), now = now_ns();
    if (due >= g_t1 && due < g_t2) {
        hist_add(now - due);
        g_recv_meas++;
    }
    if (now >= g_t1 && now < g_t2) g_recv_win++;
}

static void client_frames(int fd) {
    conn_t *c = &g_c[fd];
    uint8_t first, *payload;
    size_t plen, total;
    while (g_c[fd].state != S_FREE && (total = next_frame(c, &first, &payload, &plen)) > 0) {
        uint8_t op = first & 0x0F;
        if (op == 0x9) {
            put_frame(c, 0x8A, payload, plen, 1);
        } else if (op == 0x8) {
            if (c->state != S_CLOSING) {
                error_note("server closed the connection");
                put_frame(c, 0x88, payload, plen < 2 ? plen : 2, 1);
                c->state = S_CLOSING;
            }
            /* wait for the server's EOF: the server side then holds TIME_WAIT */
        } else if (g_turns && op == 0x1 && !memmem(payload, plen, "\"agent_completed\"", 17)) {
            /* an event before the turn's end: read, not a round trip */
        } else if (op == 0x1 || op == 0x2) {
            if (g_mode == M_RTT && c->state == S_OPEN && g_rate > 0) {
                paced_reply(c);
            } else if (g_mode == M_RTT && c->state == S_OPEN) {
                record(now_ns() - c->sent_at);
                if (!g_stop) send_message(fd);
            }
        }
        buf_consume(&c->in, total);
    }
}

static void on_eof(int fd, int err) {
    conn_t *c = &g_c[fd];
    if (c->server) {
        conn_close(fd);
        return;
    }
    if (c->state == S_CLOSING) {
        if (g_mode == M_HS && g_measuring) g_cycles++;
    } else {
        char what[128];
        snprintf(what, sizeof what, "connection ended without a close handshake (%s, %s)",
                 c->state == S_HANDSHAKE ? "before the 101" : "after the 101",
                 err ? strerror(err) : "EOF");
        error_note(what);
    }
    conn_close(fd);
    if (g_mode == M_HS && !g_stop) open_client();
}

static void on_readable(int fd) {
    conn_t *c = &g_c[fd];
    for (;;) {
        buf_reserve(&c->in, 65536);
        size_t want = c->in.cap - c->in.len - 1; /* one byte kept for a NUL */
        ssize_t n = read(fd, c->in.p + c->in.len, want);
        if (n > 0) {
            c->in.len += (size_t)n;
            if ((size_t)n < want) break; /* drained */
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            on_eof(fd, n == 0 ? 0 : errno);
            return;
        }
        if (errno == EAGAIN) break;
    }
    if (c->server) {
        if (c->state == S_HANDSHAKE) echo_handshake(fd);
        if (c->state == S_OPEN) echo_frames(fd);
    } else {
        if (c->state == S_HANDSHAKE) client_handshake(fd);
        if (c->state == S_OPEN || c->state == S_CLOSING) client_frames(fd);
    }
    if (g_c[fd].state != S_FREE) flush(fd);
}

static void on_writable(int fd) {
    conn_t *c = &g_c[fd];
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            error_note(strerror(err));
            conn_close(fd);
            if (g_mode == M_HS && !g_stop) open_client();
            return;
        }
        send_request(fd);
    }
    flush(fd);
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return;
        if (fd >= g_maxfd) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = &g_c[fd];
        memset(c, 0, sizeof *c);
        c->server = 1;
        c->state = S_HANDSHAKE;
        set_events(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ---- reports ---- */

/* The q-quantile of a histogram of n values, in us (a bucket's lower bound). */
static uint64_t quantile(const uint64_t *hist, size_t buckets, uint64_t n, double q) {
    if (n == 0) return 0;
    uint64_t target = (uint64_t)(q * (double)n);
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets; i++) {
        seen += hist[i];
        if (seen > target) return i < HIST_US ? i : HIST_US + (uint64_t)(i - HIST_US) * 1000;
    }
    return HIST_US + (uint64_t)HIST_MS * 1000;
}

static uint64_t percentile(double q) { return quantile(g_hist, HIST_N, g_msgs, q); }

/* The driver samples the thing under test's CPU time at these lines, so its CPU
 * window is the measured window, without warm-up and teardown. */
static void mark(const char *what) {
    printf("{\"mark\": \"%s\"}\n", what);
    fflush(stdout);
}

static void print_json_error(void) {
    printf("\"errors\": %llu, \"first_error\": \"%s\"", (unsigned long long)g_errors,
           g_first_error);
}

static void run_loop(uint64_t until_ns, int stop_when_closed) {
    struct epoll_event ev[512];
    for (;;) {
        if (until_ns && now_ns() >= until_ns) return;
        if (stop_when_closed && g_live == 0) return;
        if (g_mode == M_ECHO && g_stop) return;
        pace();
        int n = epoll_wait(g_ep, ev, 512, 5);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (g_c[fd].state == S_LISTEN) {
                accept_all(fd);
                continue;
            }
            if (fd == g_tfd) { /* the next paced send is due: pace() below sends it */
                uint64_t expirations;
                if (read(fd, &expirations, sizeof expirations) < 0) { /* EAGAIN: raced */
                }
                g_armed = 0;
                continue;
            }
            if (fd == 0) { /* stdin: the driver releases idle connections */
                char tmp[256];
                ssize_t r = read(0, tmp, sizeof tmp);
                if (r <= 0) {
                    g_stop = 1;
                    epoll_ctl(g_ep, EPOLL_CTL_DEL, 0, NULL);
                }
                continue;
            }
            if (g_c[fd].state == S_FREE) continue;
            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
            if (g_c[fd].state != S_FREE && (ev[i].events & EPOLLOUT)) on_writable(fd);
        }
        pace();
    }
}

/* Close every open client connection with a close handshake, bounded in time. */
static void close_all(double seconds) {
    for (int fd = 0; fd < g_maxfd; fd++) {
        conn_t *c = &g_c[fd];
        if (c->server || c->state == S_FREE || c->state == S_LISTEN) continue;
        if (c->state == S_OPEN) {
            send_close(fd);
            flush(fd);
        } else if (c->state != S_CLOSING) {
            conn_close(fd);
        }
    }
    run_loop(now_ns() + (uint64_t)(seconds * 1e9), 1);
}

static int cmd_echo(void) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    inet_pton(AF_INET, g_host, &a.sin_addr);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
        perror("echo: bind/listen");
        return 2;
    }
    g_c[lfd].state = S_LISTEN;
    set_events(lfd, EPOLLIN, EPOLL_CTL_ADD);
    printf("{\"listening\": %d}\n", g_port);
    fflush(stdout);
    run_loop(0, 0);
    printf("{\"cpu_seconds\": %.3f}\n", cpu_seconds());
    return 0;
}

/* The measured part of a loaded run: its wall time and this process's CPU. */
struct window {
    double secs, cpu, setup_cpu;
};

/* Open the connections, warm up, then measure for g_duration between the "start" and
 * "end" marks (the harness samples the other processes' CPU at the marks). */
static struct window measured_window(void) {
    double cpu0 = cpu_seconds();
    for (int i = 0; i < g_conns; i++) open_client();
    run_loop(now_ns() + (uint64_t)(g_warmup * 1e9), 0);
    mark("start");
    g_measuring = 1;
    double cpu1 = cpu_seconds();
    uint64_t t1 = now_ns();
    run_loop(t1 + (uint64_t)(g_duration * 1e9), 0);
    uint64_t t2 = now_ns();
    double cpu2 = cpu_seconds();
    g_measuring = 0;
    mark("end");
    g_stop = 1;
    return (struct window){(double)(t2 - t1) / 1e9, cpu2 - cpu1, cpu1 - cpu0};
}

static int cmd_rtt(void) {
    struct window w = measured_window();
    uint64_t live = g_live;
    close_all(3.0);
    printf("{\"mode\": \"rtt\", \"conns\": %d, \"open\": %llu, \"messages\": %llu, "
           "\"seconds\": %.3f, \"msgs_per_s\": %.1f, \"p50_us\": %llu, \"p90_us\": %llu, "
           "\"p99_us\": %llu, \"max_us\": %llu, "
           "\"loadgen_cpu_seconds\": %.3f, \"setup_cpu_seconds\": %.3f, ",
           g_conns, (unsigned long long)live, (unsigned long long)g_msgs, w.secs,
           (double)g_msgs / w.secs, (unsigned long long)percentile(0.5),
           (unsigned long long)percentile(0.9), (unsigned long long)percentile(0.99),
           (unsigned long long)(g_max_ns / 1000), w.cpu, w.setup_cpu);
    print_json_error();
    printf("}\n");
    return 0;
}

/* Open loop: open the connections (at most --concurrency handshakes in flight), then
 * send on the schedule for warm-up + duration. The "end" mark is the end of the sending
 * window; the replies to its messages are awaited up to --drain s after it, and those
 * still missing then are counted lost and enter the percentiles at the time they had
 * waited by then (a lower bound: dropping them would flatter an overloaded run). */
static int cmd_paced(void) {
    double cpu0 = cpu_seconds();
    g_slots = malloc((size_t)g_conns * sizeof *g_slots);
    g_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (!g_slots || g_tfd < 0) {
        perror("paced setup");
        return 1;
    }
    set_events(g_tfd, EPOLLIN, EPOLL_CTL_ADD);
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake at the slot, not up to 50 us after it */
    uint64_t open_t0 = now_ns(), open_by = open_t0 + 60ull * 1000000000ull;
    int started = 0;
    while (started < g_conns || (uint64_t)(g_opened + g_errors) < (uint64_t)started) {
        while (started < g_conns &&
               (uint64_t)started - g_opened - g_errors < (uint64_t)g_concurrency &&
               (g_open_rate <= 0 ||
                now_ns() >= open_t0 + (uint64_t)((double)started * 1e9 / g_open_rate)))
            g_slots[started++] = open_client();
        run_loop(now_ns() + 1000000ull, 0);
        if (now_ns() > open_by) {
            error_note("timed out opening connections");
            break;
        }
    }
    uint64_t opened = g_live;
    g_interval_ns = 1e9 / g_rate;
    g_t0 = now_ns();
    g_t1 = g_t0 + (uint64_t)(g_warmup * 1e9);
    g_t2 = g_t1 + (uint64_t)(g_duration * 1e9);
    g_pacing = 1;
    run_loop(g_t1, 0);
    mark("start");
    double cpu1 = cpu_seconds();
    run_loop(g_t2, 0);
    uint64_t t2 = now_ns();
    double cpu2 = cpu_seconds();
    mark("end");
    uint64_t drain_by = t2 + (uint64_t)(g_drain * 1e9);
    while (g_recv_meas + g_lost < g_sent_win && now_ns() < drain_by)
        run_loop(now_ns() + 2000000ull, 0);
    uint64_t now = now_ns(), missing = 0;
    for (int i = 0; i < g_conns; i++) {
        int fd = g_slots[i];
        if (fd < 0 || g_c[fd].state == S_FREE) continue;
        conn_t *c = &g_c[fd];
        for (size_t j = 0; j < c->qlen; j++) {
            uint64_t due = c->q[(c->qhead + j) % c->qcap];
            if (due >= g_t1 && due < g_t2) {
                hist_add(now - due);
                missing++;
            }
        }
    }
    uint64_t lost = g_lost + missing, live = g_live;
    double secs = (double)(t2 - g_t1) / 1e9;
    g_stop = 1;
    close_all(3.0);
    printf("{\"mode\": \"paced\", \"conns\": %d, \"opened\": %llu, \"open\": %llu, "
           "\"rate\": %.1f, \"seconds\": %.3f, \"scheduled\": %llu, \"sent\": %llu, "
           "\"unsent\": %llu, \"received\": %llu, \"lost\": %llu, \"messages\": %llu, "
           "\"offered_per_s\": %.1f, \"msgs_per_s\": %.1f, \"p50_us\": %llu, "
           "\"p90_us\": %llu, \"p99_us\": %llu, \"max_us\": %llu, "
           "\"send_late_p50_us\": %llu, \"send_late_p99_us\": %llu, \"sent_total\": %llu, "
           "\"loadgen_cpu_seconds\": %.3f, \"setup_cpu_seconds\": %.3f, ",
           g_conns, (unsigned long long)opened, (unsigned long long)live, g_rate, secs,
           (unsigned long long)g_sched_win, (unsigned long long)g_sent_win,
           (unsigned long long)g_unsent_win, (unsigned long long)g_recv_meas,
           (unsigned long long)lost, (unsigned long long)g_recv_meas,
           (double)g_sched_win / secs, (double)g_recv_win / secs,
           (unsigned long long)percentile(0.5), (unsigned long long)percentile(0.9),
           (unsigned long long)percentile(0.99), (unsigned long long)(g_max_ns / 1000),
           (unsigned long long)quantile(g_late_hist, HIST_US + 1, g_late_n, 0.5),
           (unsigned long long)quantile(g_late_hist, HIST_US + 1, g_late_n, 0.99),
           (unsigned long long)g_sent_total, cpu2 - cpu1, cpu1 - cpu0);
    print_json_error();
    printf("}\n");
    return 0;
}

static int cmd_idle(void) {
    uint64_t t0 = now_ns();
    int started = 0;
    while (started < g_conns || (uint64_t)(g_opened + g_errors) < (uint64_t)started) {
        /* keep at most g_concurrency handshakes in flight */
        while (started < g_conns &&
               (uint64_t)started - g_opened - g_errors < (uint64_t)g_concurrency) {
            open_client();
            started++;
        }
        run_loop(now_ns() + 2000000ull, 0);
        if (now_ns() - t0 > 120ull * 1000000000ull) {
            error_note("timed out opening connections");
            break;
        }
    }
    printf("{\"mode\": \"idle\", \"conns\": %d, \"open\": %llu, \"seconds\": %.3f, "
           "\"loadgen_cpu_seconds\": %.3f, ",
           g_conns, (unsigned long long)g_live, (double)(now_ns() - t0) / 1e9, cpu_seconds());
    print_json_error();
    printf("}\n");
    fflush(stdout);
    set_events(0, EPOLLIN, EPOLL_CTL_ADD);
    g_stop = 0;
    while (!g_stop) run_loop(now_ns() + 100000000ull, 0);
    uint64_t before = g_live;
    close_all(30.0);
    printf("{\"mode\": \"idle_closed\", \"held\": %llu, \"still_open\": %llu}\n",
           (unsigned long long)before, (unsigned long long)g_live);
    return 0;
}

static int cmd_hs(void) {
    struct window w = measured_window();
    run_loop(now_ns() + 3000000000ull, 1);
    printf("{\"mode\": \"handshakes\", \"conns\": %d, \"cycles\": %llu, \"seconds\": %.3f, "
           "\"handshakes_per_s\": %.1f, \"loadgen_cpu_seconds\": %.3f, "
           "\"setup_cpu_seconds\": %.3f, ",
           g_conns, (unsigned long long)g_cycles, w.secs, (double)g_cycles / w.secs, w.cpu,
           w.setup_cpu);
    print_json_error();
    printf("}\n");
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen echo|rtt|idle|handshakes [--host H] [--port P] [--path /p]\n"
            "       [--conns N] [--duration S] [--warmup S] [--size B] [--concurrency C]\n"
            "       [--rate MSGS_PER_S [--drain S] [--open-rate CONNS_PER_S]] (rtt: open loop)\n"
            "       [--header 'Name: value']...\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "echo"))
        g_mode = M_ECHO;
    else if (!strcmp(argv[1], "rtt"))
        g_mode = M_RTT;
    else if (!strcmp(argv[1], "idle"))
        g_mode = M_IDLE;
    else if (!strcmp(argv[1], "handshakes"))
        g_mode = M_HS;
    else
        usage();
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--host"))
            g_host = v;
        else if (!strcmp(k, "--port"))
            g_port = atoi(v);
        else if (!strcmp(k, "--path"))
            g_path = v;
        else if (!strcmp(k, "--conns"))
            g_conns = atoi(v);
        else if (!strcmp(k, "--duration"))
            g_duration = atof(v);
        else if (!strcmp(k, "--warmup"))
            g_warmup = atof(v);
        else if (!strcmp(k, "--size"))
            g_size = atoi(v);
        else if (!strcmp(k, "--rate"))
            g_rate = atof(v);
        else if (!strcmp(k, "--open-rate"))
            g_open_rate = atof(v);
        else if (!strcmp(k, "--turns"))
            g_turns = atoi(v);
        else if (!strcmp(k, "--drain"))
            g_drain = atof(v);
        else if (!strcmp(k, "--concurrency"))
            g_concurrency = atoi(v);
        else if (!strcmp(k, "--header")) {
            size_t used = strlen(g_headers);
            snprintf(g_headers + used, sizeof g_headers - used, "%s\r\n", v);
        } else
            usage();
    }
    if (g_port <= 0 || g_size < 64 || g_size > (int)sizeof g_payload || g_conns < 1 ||
        g_rate < 0 || (g_rate > 0 && g_mode != M_RTT))
        usage();

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    g_maxfd = (int)rl.rlim_cur;
    g_c = calloc((size_t)g_maxfd, sizeof *g_c);
    g_hist = calloc(HIST_N, sizeof *g_hist);
    g_late_hist = calloc(HIST_US + 1, sizeof *g_late_hist);
    g_ep = epoll_create1(0);
    if (!g_c || !g_hist || !g_late_hist || g_ep < 0) {
        perror("setup");
        return 1;
    }
    g_rng ^= (uint64_t)now_ns() ^ (uint64_t)getpid() << 32;

    /* A chat turn as the golden path sends it, padded to --size bytes of JSON. */
    static const char head[] =
        "{\"type\": \"user_message\", \"payload\": {\"thread_id\": \"thread_bench_0001\", "
        "\"run_id\": \"run_bench_0001\", \"content\": \"";
    static const char tail[] = "\"}}";
    size_t fixed = sizeof head - 1 + sizeof tail - 1;
    size_t pad = (size_t)g_size > fixed ? (size_t)g_size - fixed : 1;
    memcpy(g_payload, head, sizeof head - 1);
    for (size_t i = 0; i < pad; i++) g_payload[sizeof head - 1 + i] = (uint8_t)('a' + i % 26);
    memcpy(g_payload + sizeof head - 1 + pad, tail, sizeof tail - 1);
    g_payload_len = sizeof head - 1 + pad + sizeof tail - 1;

    switch (g_mode) {
    case M_ECHO:
        return cmd_echo();
    case M_RTT:
        return g_rate > 0 ? cmd_paced() : cmd_rtt();
    case M_IDLE:
        return cmd_idle();
    case M_HS:
        return cmd_hs();
    }
    return 0;
}
