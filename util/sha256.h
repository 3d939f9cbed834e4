/*
 * SHA-256 (FIPS 180-4), small and dependency-free: the audit trail's hash
 * chain needs it in the daemon and in qmpctl, and no library the broker
 * already links exports one (jansson, libevent and libvirt do not;
 * pulling in OpenSSL or gnutls for one hash is not worth the surface).
 * Not constant-time, which a public hash chain does not need.
 */
#ifndef UTIL_SHA256_H
#define UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN	32
#define SHA256_HEX	(2 * SHA256_LEN + 1)	/* with the NUL */

struct sha256 {
	uint32_t	h[8];
	uint64_t	len;		/* bytes so far */
	uint8_t		buf[64];
	size_t		nbuf;
};

void	sha256_init(struct sha256 *);
void	sha256_update(struct sha256 *, const void *, size_t);
void	sha256_final(struct sha256 *, uint8_t out[SHA256_LEN]);
/* The digest of data as 64 lowercase hex digits and a NUL into hex. */
void	sha256_hex(const void *data, size_t len, char hex[SHA256_HEX]);

#endif
