/*
 * Reading a VM's PCI slot map from QEMU: query-pci, the peripheral list,
 * and, for bridges whose bus query-pci cannot see into yet, the bus
 * contents from QOM. A QEMU (or a fake) that lacks the QOM commands
 * still gets a map: query-pci's own view of each bridge is used then.
 */
#include <stdio.h>
#include <string.h>

#include "hv/hp_int.h"

static void	hp_scan_bridge(struct hp_op *);

static void
hp_scan_clear(struct hp_scan *s)
{
	json_decref(s->query_pci);
	json_decref(s->peripheral);
	json_decref(s->need);
	json_decref(s->children);
	json_decref(s->buses);
	memset(s, 0, sizeof *s);
}

/* The scan is over, or its operation is: once no scan runs, no stale
   snapshot remains that a reservation must outlive. */
void
hp_scan_end(struct hp_op *op)
{
	hp_scan_clear(&op->scan);
	if (!op->scanning)
		return;
	op->scanning = false;
	if (--op->vm->scanning == 0)
		pci_resv_prune(&op->vm->resv);
}

static void
hp_scan_finish(struct hp_op *op)
{
	struct hp_scan		*s = &op->scan;
	struct pci_map		*m;
	struct qmp_error	 err;
	hp_scan_fn		*cb = s->cb;

	if ((m = calloc(1, sizeof *m)) == NULL) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "out of memory");
		cb(op, NULL, &err);
		return;
	}
	if (pci_map_build(m, s->query_pci, s->peripheral, s->buses,
	    &err) != 0) {
		free(m);
		cb(op, NULL, &err);
		return;
	}
	cb(op, m, NULL);
	free(m);
}

/* query-pci's own devices behind a bridge, as devfns: the fallback when
   QOM cannot be read. */
static json_t *
hp_scan_qpci_bus(const json_t *query_pci, const char *id)
{
	const json_t	*bus, *dev, *d;
	json_t		*out = json_array();
	size_t		 i, j, k;
	const char	*q;

	json_array_foreach(query_pci, i, bus) {
		json_array_foreach(json_object_get(bus, "devices"), j, dev) {
			q = json_string_value(json_object_get(dev, "qdev_id"));
			if (q == NULL || strcmp(q, id) != 0)
				continue;
			json_array_foreach(json_object_get(json_object_get(dev,
			    "pci_bridge"), "devices"), k, d) {
				json_array_append_new(out, json_integer(
				    json_integer_value(json_object_get(d,
				    "slot")) << 3));
			}
		}
	}
	return (out);
}

static const char *
hp_scan_cur_bridge(struct hp_op *op)
{
	return (json_string_value(json_array_get(op->scan.need,
	    op->scan.ineed)));
}

static void
hp_scan_addr_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	struct hp_scan	*s = &op->scan;
	json_t		*list;

	list = json_object_get(s->buses, hp_scan_cur_bridge(op));
	/* a child whose addr cannot be read still occupies something:
	   count it as slot 0, which never hides a free slot wrongly on a
	   root port and is not offered on a pci-bridge anyway */
	json_array_append_new(list, json_integer(err == NULL &&
	    json_is_integer(ret) ? json_integer_value(ret) : 0));
	s->ichild++;
	hp_scan_bridge(op);
}

static void
hp_scan_list_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	struct hp_scan	*s = &op->scan;
	const json_t	*e;
	const char	*n, *id = hp_scan_cur_bridge(op);
	size_t		 i;

	json_decref(s->children);
	s->children = NULL;
	if (err != NULL || !json_is_array(ret)) {
		json_object_set_new(s->buses, id,
		    hp_scan_qpci_bus(s->query_pci, id));
		s->ineed++;
		hp_scan_bridge(op);
		return;
	}
	s->children = json_array();
	json_array_foreach(ret, i, e) {
		n = json_string_value(json_object_get(e, "name"));
		if (n != NULL && strncmp(n, "child[", 6) == 0)
			json_array_append_new(s->children, json_string(n));
	}
	s->ichild = 0;
	json_object_set_new(s->buses, id, json_array());
	hp_scan_bridge(op);
}

/* One step of walking the bridges that need QOM: list a bus, then read
   each child's addr. */
static void
hp_scan_bridge(struct hp_op *op)
{
	struct hp_scan	*s = &op->scan;
	const char	*id;
	char		 path[512];

	for (;;) {
		if (s->ineed >= json_array_size(s->need)) {
			hp_scan_finish(op);
			return;
		}
		id = hp_scan_cur_bridge(op);
		if (s->children == NULL) {
			snprintf(path, sizeof path,
			    "/machine/peripheral/%s/%s", id, id);
			hp_exec(op, "qom-list", json_pack("{s:s}", "path",
			    path), NULL, 0, hp_scan_list_done);
			return;
		}
		if (s->ichild < json_array_size(s->children)) {
			snprintf(path, sizeof path,
			    "/machine/peripheral/%s/%s/%s", id, id,
			    json_string_value(json_array_get(s->children,
			    s->ichild)));
			hp_exec(op, "qom-get", json_pack("{s:s, s:s}",
			    "path", path, "property", "addr"), NULL, 0,
			    hp_scan_addr_done);
			return;
		}
		json_decref(s->children);
		s->children = NULL;
		s->ineed++;
	}
}

static void
hp_scan_periph_done(struct hp_op *op, json_t *ret,
    const struct qmp_error *err)
{
	struct hp_scan	*s = &op->scan;

	/* Without the peripheral list bridges are told by the machine
	   type alone (pci_map_build does that for a NULL list). */
	if (err == NULL && json_is_array(ret))
		s->peripheral = json_incref(ret);
	s->need = pci_need_qom(s->query_pci, s->peripheral);
	s->buses = json_object();
	s->ineed = 0;
	hp_scan_bridge(op);
}

static void
hp_scan_pci_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	struct hp_scan	*s = &op->scan;

	if (err != NULL) {
		s->cb(op, NULL, err);
		return;
	}
	s->query_pci = json_incref(ret);
	if (!vmq_has_command(op->vm->q, "qom-list")) {
		hp_scan_periph_done(op, NULL, NULL);
		return;
	}
	hp_qom_peripheral(op, hp_scan_periph_done);
}

void
hp_scan_start(struct hp_op *op, hp_scan_fn *cb)
{
	hp_scan_clear(&op->scan);
	op->scan.cb = cb;
	op->scanning = true;
	op->vm->scanning++;
	hp_exec(op, "query-pci", NULL, NULL, 0, hp_scan_pci_done);
}

/* qom-list /machine/peripheral: every device that has an id, which is
   how presence is told and bridges are found. */
void
hp_qom_peripheral(struct hp_op *op, hp_exec_fn *cb)
{
	hp_exec(op, "qom-list", json_pack("{s:s}", "path",
	    "/machine/peripheral"), NULL, 0, cb);
}
