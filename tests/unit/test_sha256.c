/*
 * util/sha256 against FIPS 180-4's examples and the NIST long message.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/sha256.h"

static void
test_vectors(void **state)
{
	static const struct {
		const char	*in;
		const char	*hex;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495"
		    "991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
		    "10ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd4"
		    "19db06c1" },
	};
	char	hex[SHA256_HEX];
	size_t	i;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		sha256_hex(v[i].in, strlen(v[i].in), hex);
		assert_string_equal(hex, v[i].hex);
	}
}

/* A million 'a', fed in odd-sized pieces so blocks straddle calls. */
static void
test_million(void **state)
{
	static const char	want[] = "cdc76e5c9914fb9281a1c7e284d73e67f1"
	    "809a48a497200e046d39ccc7112cd0";
	static const char	digits[] = "0123456789abcdef";
	struct sha256		s;
	uint8_t			d[SHA256_LEN];
	char			buf[997], hex[SHA256_HEX];
	size_t			left = 1000000, n;
	int			i;

	memset(buf, 'a', sizeof buf);
	sha256_init(&s);
	while (left > 0) {
		n = left < sizeof buf ? left : sizeof buf;
		sha256_update(&s, buf, n);
		left -= n;
	}
	sha256_final(&s, d);
	for (i = 0; i < SHA256_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 0xf];
	}
	hex[2 * SHA256_LEN] = '\0';
	assert_string_equal(hex, want);
}

int
main(void)
{
	const struct CMUnitTest	tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_million),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
