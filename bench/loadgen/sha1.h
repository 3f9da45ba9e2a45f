/* SHA-1 for the WebSocket handshake (RFC 6455 4.2.2): Sec-WebSocket-Accept only. */
#ifndef LOADGEN_SHA1_H
#define LOADGEN_SHA1_H
#include <stddef.h>
#include <stdint.h>

void sha1(const uint8_t *data, size_t len, uint8_t out[20]);
/* base64 of `len` bytes into `out` (NUL-terminated); returns the length written. */
size_t base64(const uint8_t *in, size_t len, char *out);
/* The Sec-WebSocket-Accept value of a client key (28 characters + NUL). */
void ws_accept(const char *key, size_t key_len, char out[29]);

#endif
