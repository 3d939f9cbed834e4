/*
 * Image sources as blockdev-add protocol nodes.
 *
 * A disk's source is either an absolute local path (checked against the
 * image roots by img_path_check and opened by the broker) or a network
 * URI that QEMU opens itself:
 *
 *   nbd://host[:port]/export             (also nbd+tcp://)
 *   nbd+unix:///export?socket=PATH
 *   gluster://server[:port]/volname/image[?transport=tcp|unix|rdma]
 *   gluster+tcp|+unix|+rdma://...        (QEMU's own spelling)
 *
 * IPv6 hosts go in brackets. Any query option the protocol does not know
 * is refused rather than ignored, as QEMU's drivers did.
 *
 * Pure code on strings and jansson values.
 */
#ifndef DISK_URI_H
#define DISK_URI_H

#include <jansson.h>

#include "proto/qmp_msg.h"

#define URI_MAX		4096

enum uri_kind {
	URI_BAD = -1,
	URI_LOCAL = 0,		/* an absolute path: not ours to open here */
	URI_NET = 1,		/* *node holds the protocol node */
};

/* Classifies src and, for a network URI, builds the protocol-layer
   blockdev-add node ({"driver": "nbd"|"gluster", ...}, without a
   node-name; the caller owns it). Relative paths, unknown schemes and
   malformed URIs give URI_BAD with err filled. */
enum uri_kind	uri_parse(const char *src, json_t **node, struct qmp_error *err);

#endif
