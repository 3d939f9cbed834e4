/*
 * Image URIs: every accepted form gives the node QEMU's own URI parsers
 * would have built, and every malformed or unknown form is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "disk/uri.h"

static void
expect_node(const char *src, const char *want)
{
	struct qmp_error	 err;
	json_t			*node = NULL, *w;
	json_error_t		 jerr;
	char			*got;

	memset(&err, 0, sizeof err);
	if (uri_parse(src, &node, &err) != URI_NET)
		fail_msg("%s: refused: %s", src, err.desc);
	w = json_loads(want, 0, &jerr);
	assert_non_null(w);
	if (!json_equal(node, w)) {
		got = json_dumps(node, JSON_SORT_KEYS);
		fail_msg("%s: got %s want %s", src, got, want);
	}
	json_decref(w);
	json_decref(node);
}

static void
expect_bad(const char *src, const char *needle)
{
	struct qmp_error	 err;
	json_t			*node = (json_t *)1;

	memset(&err, 0, sizeof err);
	if (uri_parse(src, &node, &err) != URI_BAD)
		fail_msg("%s: accepted", src);
	assert_null(node);
	assert_string_equal(err.cls, "GenericError");
	if (strstr(err.desc, needle) == NULL)
		fail_msg("%s: error '%s' lacks '%s'", src, err.desc, needle);
}

static void
test_local(void **state)
{
	struct qmp_error	 err;
	json_t			*node = NULL;

	assert_int_equal(uri_parse("/srv/img/a.qcow2", &node, &err), URI_LOCAL);
	assert_null(node);
	expect_bad("img/a.raw", "absolute path or a URI");
	expect_bad("", "empty");
}

static void
test_nbd(void **state)
{
	expect_node("nbd://10.0.0.1/exp",
	    "{\"driver\":\"nbd\",\"export\":\"exp\",\"server\":{\"type\":"
	    "\"inet\",\"host\":\"10.0.0.1\",\"port\":\"10809\"}}");
	expect_node("nbd://host.example:10900/",
	    "{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\",\"host\":"
	    "\"host.example\",\"port\":\"10900\"}}");
	expect_node("NBD+TCP://h:1/a%20b",
	    "{\"driver\":\"nbd\",\"export\":\"a b\",\"server\":{\"type\":"
	    "\"inet\",\"host\":\"h\",\"port\":\"1\"}}");
	expect_node("nbd://[fe80::1]:10810/d",
	    "{\"driver\":\"nbd\",\"export\":\"d\",\"server\":{\"type\":"
	    "\"inet\",\"host\":\"fe80::1\",\"port\":\"10810\"}}");
	expect_node("nbd+unix:///disk0?socket=/run/nbd.sock",
	    "{\"driver\":\"nbd\",\"export\":\"disk0\",\"server\":{\"type\":"
	    "\"unix\",\"path\":\"/run/nbd.sock\"}}");
	expect_node("nbd+unix://?socket=/s",
	    "{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":"
	    "\"/s\"}}");

	expect_bad("nbd:///exp", "needs a host");
	expect_bad("nbd://h/e?socket=/x", "no socket option");
	expect_bad("nbd://h/e?tls=1", "unknown URI option 'tls'");
	expect_bad("nbd+unix://host/e?socket=/s", "no host");
	expect_bad("nbd+unix:///e", "socket=PATH");
	expect_bad("nbd+unix:///e?socket=rel", "socket=PATH");
	expect_bad("nbd+unix:///e?socket=/a&socket=/b", "given twice");
	expect_bad("nbd+vsock://h/e", "unsupported image URI scheme");
	expect_bad("nbd://h:0/e", "port out of range");
	expect_bad("nbd://h:65536/e", "port out of range");
	expect_bad("nbd://h:123456/e", "bad port");
	expect_bad("nbd://h:x/e", "bad port");
	expect_bad("nbd://h:/e", "bad port");
	expect_bad("nbd://user@h/e", "user information");
	expect_bad("nbd://h/e#frag", "fragments");
	expect_bad("nbd://h/e%0a", "control character");
	expect_bad("nbd://h/e%2", "truncated");
	expect_bad("nbd://h/e%zz", "bad percent");
	expect_bad("nbd://h/e%00x", "control character");
	expect_bad("nbd://h/a b", "space");
	expect_bad("nbd://[::1/e", "unterminated");
	expect_bad("nbd://[not-v6]/e", "bad IPv6");
	expect_bad("nbd://[]/e", "bad IPv6");
	expect_bad("nbd://h!x/e", "bad character in URI host");
	expect_bad("nbd://h/e?", "empty URI option");
	expect_bad("nbd://h/e?x", "key=value");
	expect_bad("http://h/e", "unsupported image URI scheme 'http'");
}

static void
test_gluster(void **state)
{
	expect_node("gluster://gs1/vol/dir/img.qcow2",
	    "{\"driver\":\"gluster\",\"volume\":\"vol\",\"path\":"
	    "\"dir/img.qcow2\",\"server\":[{\"type\":\"inet\",\"host\":"
	    "\"gs1\",\"port\":\"24007\"}]}");
	expect_node("gluster://[2001:db8::7]:24010/v/i?transport=tcp",
	    "{\"driver\":\"gluster\",\"volume\":\"v\",\"path\":\"i\","
	    "\"server\":[{\"type\":\"inet\",\"host\":\"2001:db8::7\","
	    "\"port\":\"24010\"}]}");
	expect_node("gluster://gs/v/i?transport=rdma",
	    "{\"driver\":\"gluster\",\"volume\":\"v\",\"path\":\"i\","
	    "\"server\":[{\"type\":\"inet\",\"host\":\"gs\",\"port\":"
	    "\"24007\"}]}");
	expect_node("gluster:///v/i?transport=unix&socket=/run/gd.sock",
	    "{\"driver\":\"gluster\",\"volume\":\"v\",\"path\":\"i\","
	    "\"server\":[{\"type\":\"unix\",\"path\":\"/run/gd.sock\"}]}");
	expect_node("gluster+unix:///v/i?socket=/g",
	    "{\"driver\":\"gluster\",\"volume\":\"v\",\"path\":\"i\","
	    "\"server\":[{\"type\":\"unix\",\"path\":\"/g\"}]}");
	expect_node("gluster+tcp://gs:1/v/i",
	    "{\"driver\":\"gluster\",\"volume\":\"v\",\"path\":\"i\","
	    "\"server\":[{\"type\":\"inet\",\"host\":\"gs\",\"port\":"
	    "\"1\"}]}");

	expect_bad("gluster://gs/v/i?transport=udp", "unknown gluster transport");
	expect_bad("gluster://gs/v/i?debug=9", "unknown URI option 'debug'");
	expect_bad("gluster://gs/v/i?transport=tcp&transport=tcp",
	    "given twice");
	expect_bad("gluster+tcp://gs/v/i?transport=unix", "differently");
	expect_bad("gluster://gs/v", "/volname/image");
	expect_bad("gluster://gs/v/", "/volname/image");
	expect_bad("gluster://gs//i", "/volname/image");
	expect_bad("gluster://gs", "/volname/image");
	expect_bad("gluster:///v/i", "needs a server");
	expect_bad("gluster://gs/v/i?transport=unix&socket=/s", "no host");
	expect_bad("gluster:///v/i?transport=unix", "socket=PATH");
	expect_bad("gluster+udp://gs/v/i", "unsupported image URI scheme");
}

/* Found by tests/fuzz/fuzz_uri.c: an escape decoding to bytes that are not
   UTF-8 made the node NULL and the refusal came without a word. */
static void
test_not_utf8(void **state)
{
	expect_bad("nbd+unix:///e?socket=/a%dd", "not valid UTF-8");
	expect_bad("nbd://h/exp%ff", "not valid UTF-8");
	expect_bad("gluster://h/v/%c3", "not valid UTF-8");
}

static void
test_long(void **state)
{
	char	buf[URI_MAX + 64];

	memcpy(buf, "nbd://h/", 8);
	memset(buf + 8, 'a', sizeof buf - 9);
	buf[sizeof buf - 1] = '\0';
	expect_bad(buf, "longer than");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_nbd),
		cmocka_unit_test(test_gluster),
		cmocka_unit_test(test_long),
		cmocka_unit_test(test_not_utf8),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
