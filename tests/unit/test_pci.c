/*
 * The slot model against query-pci and QOM replies recorded from real
 * QEMU 7.2 (tests/data/qemu72-*.json: pc with a pci-bridge, q35 with
 * three pcie-root-ports, each paused before firmware and running).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hv/pci.h"

static json_t *
load(const char *name)
{
	char		 path[1024];
	const char	*src = getenv("QB_SRCDIR");
	json_error_t	 jerr;
	json_t		*t;

	snprintf(path, sizeof path, "%s/tests/data/%s.json",
	    src != NULL ? src : ".", name);
	t = json_load_file(path, 0, &jerr);
	if (t == NULL)
		fail_msg("%s: %s", path, jerr.text);
	return (t);
}

/* What hp does with QOM: per bridge the devfns on its bus. */
static json_t *
qom_buses(const json_t *rec, const json_t *need)
{
	json_t		*out = json_object(), *fns, *id, *e, *list;
	char		 key[512];
	size_t		 i, j;

	json_array_foreach(need, i, id) {
		const char *b = json_string_value(id);

		fns = json_array();
		snprintf(key, sizeof key, "qom-list /machine/peripheral/%s/%s",
		    b, b);
		list = json_object_get(rec, key);
		assert_non_null(list);
		json_array_foreach(list, j, e) {
			const char *n = json_string_value(json_object_get(e,
			    "name"));
			if (strncmp(n, "child[", 6) != 0)
				continue;
			snprintf(key, sizeof key, "qom-get /machine/peripheral/"
			    "%s/%s/%s addr", b, b, n);
			assert_non_null(json_object_get(rec, key));
			json_array_append(fns, json_object_get(rec, key));
		}
		json_object_set_new(out, b, fns);
	}
	return (out);
}

static void
build(struct pci_map *m, const char *name, size_t want_need)
{
	struct qmp_error	 err;
	json_t			*rec, *need, *buses;

	rec = load(name);
	need = pci_need_qom(json_object_get(rec, "query-pci"),
	    json_object_get(rec, "qom-list /machine/peripheral"));
	assert_int_equal(json_array_size(need), want_need);
	buses = qom_buses(rec, need);
	if (pci_map_build(m, json_object_get(rec, "query-pci"),
	    json_object_get(rec, "qom-list /machine/peripheral"), buses,
	    &err) != 0)
		fail_msg("%s: %s", name, err.desc);
	json_decref(buses);
	json_decref(need);
	json_decref(rec);
}

static const struct pci_place *
place(const struct pci_map *m, const char *bus, int slot)
{
	size_t	i;

	for (i = 0; i < m->n; i++)
		if (m->place[i].slot == slot && strcmp(m->place[i].bus, bus) == 0)
			return (&m->place[i]);
	return (NULL);
}

static void
expect(const struct pci_map *m, const char *bus, int slot,
    enum pci_state st, const char *owner)
{
	const struct pci_place	*p = place(m, bus, slot);

	if (p == NULL)
		fail_msg("no place %s/%d", bus, slot);
	if (p->state != st)
		fail_msg("%s/%d is %s, want %s", bus, slot,
		    pci_state_name(p->state), pci_state_name(st));
	if (owner != NULL)
		assert_string_equal(p->owner, owner);
}

static void
check_pc(const struct pci_map *m, const char *br_owner)
{
	int	s;

	assert_false(m->q35);
	/* bus 0: 32 slots, bridge 1..31 */
	assert_int_equal(m->n, 32 + 31);
	expect(m, "pci.0", 0, PCI_USED, "");
	expect(m, "pci.0", 1, PCI_USED, NULL);
	expect(m, "pci.0", 5, PCI_USED, "br1");
	expect(m, "pci.0", 7, PCI_USED, "blk0");
	for (s = 2; s < 32; s++)
		if (s != 5 && s != 7)
			expect(m, "pci.0", s, PCI_FREE, "");
	assert_null(place(m, "br1", 0));
	expect(m, "br1", 3, PCI_USED, br_owner);
	for (s = 1; s < 32; s++)
		if (s != 3)
			expect(m, "br1", s, PCI_FREE, "");
}

static void
test_pc_paused(void **state)
{
	struct pci_map	*m = malloc(sizeof *m);

	/* firmware has not numbered br1's bus: only QOM sees net0 */
	build(m, "qemu72-pc-paused", 1);
	check_pc(m, "");
	free(m);
}

static void
test_pc_running(void **state)
{
	struct pci_map	*m = malloc(sizeof *m);

	build(m, "qemu72-pc-running", 0);
	check_pc(m, "net0");
	free(m);
}

static void
check_q35(const struct pci_map *m, const char *owner)
{
	assert_true(m->q35);
	assert_int_equal(m->n, 3);
	assert_null(place(m, "pcie.0", 5));
	expect(m, "rp0", 0, PCI_FREE, "");
	expect(m, "rp1", 0, PCI_USED, owner);
	expect(m, "rp2", 0, PCI_FREE, "");
}

static void
test_q35(void **state)
{
	struct pci_map	*m = malloc(sizeof *m);

	build(m, "qemu72-q35-paused", 3);
	check_q35(m, "");
	build(m, "qemu72-q35-running", 0);
	check_q35(m, "net0");
	free(m);
}

static void
test_q35_without_qom(void **state)
{
	struct pci_map		*m = malloc(sizeof *m);
	struct qmp_error	 err;
	json_t			*rec = load("qemu72-q35-paused");

	/* a root port whose bus cannot be read is never offered */
	assert_int_equal(pci_map_build(m, json_object_get(rec, "query-pci"),
	    json_object_get(rec, "qom-list /machine/peripheral"), NULL,
	    &err), 0);
	assert_int_equal(m->n, 0);
	assert_null(pci_alloc(m, NULL, -1, "n1", &err));
	assert_non_null(strstr(err.desc, "pcie-root-port"));
	json_decref(rec);
	free(m);
}

static void
test_alloc(void **state)
{
	struct pci_map		*m = malloc(sizeof *m);
	struct qmp_error	 err;
	struct pci_place	*p;
	struct pci_resv		*resv = NULL;
	int			 i, seen[32] = { 0 };

	build(m, "qemu72-pc-running", 0);
	p = pci_alloc(m, "br1", 3, "x", &err);
	assert_null(p);
	assert_non_null(strstr(err.desc, "used by net0"));
	assert_null(pci_alloc(m, "pci.0", 0, "x", &err));
	assert_null(pci_alloc(m, "nosuch", 4, "x", &err));
	assert_non_null(strstr(err.desc, "not a hotplug-capable"));
	assert_null(pci_alloc(m, "nosuch", -1, "x", &err));
	assert_non_null(strstr(err.desc, "no hotplug-capable"));
	p = pci_alloc(m, "br1", 4, "x", &err);
	assert_non_null(p);
	assert_string_equal(p->bus, "br1");
	assert_int_equal(p->slot, 4);
	assert_null(pci_alloc(m, "br1", 4, "y", &err));
	assert_non_null(strstr(err.desc, "reserved by x"));
	p = pci_alloc(m, "br1", -1, "z", &err);
	assert_int_equal(p->slot, 1);

	/* four concurrent attempts, each on its own fresh snapshot taken
	   before any went in: reservations keep them apart */
	for (i = 0; i < 4; i++) {
		build(m, "qemu72-pc-running", 0);
		pci_map_apply(m, resv);
		p = pci_alloc(m, NULL, -1, "n", &err);
		assert_non_null(p);
		assert_string_equal(p->bus, "pci.0");
		assert_int_equal(seen[p->slot]++, 0);
		assert_non_null(pci_resv_add(&resv, p->bus, p->slot, "n"));
	}
	assert_int_equal(seen[2] + seen[3] + seen[4] + seen[6], 4);
	/* a device that went in stays out of stale snapshots until pruned */
	resv->in = true;
	build(m, "qemu72-pc-running", 0);
	pci_map_apply(m, resv);
	expect(m, "pci.0", resv->slot, PCI_USED, "n");
	pci_resv_prune(&resv);
	build(m, "qemu72-pc-running", 0);
	pci_map_apply(m, resv);
	expect(m, "pci.0", 6, PCI_FREE, "");
	pci_resv_free_all(&resv);
	assert_null(resv);

	/* no free slot on q35 once both empty ports are taken */
	build(m, "qemu72-q35-running", 0);
	assert_non_null(pci_alloc(m, NULL, -1, "a", &err));
	assert_non_null(pci_alloc(m, NULL, -1, "b", &err));
	assert_null(pci_alloc(m, NULL, -1, "c", &err));
	assert_non_null(strstr(err.desc, "no free PCI slot"));
	free(m);
}

/* A slot just given back is taken again only when nothing else is free:
   the guest may still be settling it (see pci_hist). */
static void
test_alloc_lru(void **state)
{
	struct pci_map		*m = calloc(1, sizeof *m);
	struct pci_hist		*h = calloc(1, sizeof *h);
	struct pci_place	*p;
	struct qmp_error	 err;
	char			 first[PCI_NAME_MAX], second[PCI_NAME_MAX];
	int			 i;

	assert_non_null(m);
	assert_non_null(h);
	/* q35 with two empty root ports: plug into one, unplug, plug again */
	build(m, "qemu72-q35-running", 0);
	pci_hist_apply(m, h);
	assert_non_null(p = pci_alloc(m, NULL, -1, "a", &err));
	pci_hist_note(h, p);
	snprintf(first, sizeof first, "%s", p->bus);

	build(m, "qemu72-q35-running", 0);	/* "a" is gone again */
	pci_hist_apply(m, h);
	assert_non_null(p = pci_alloc(m, NULL, -1, "b", &err));
	pci_hist_note(h, p);
	assert_string_not_equal(p->bus, first);
	snprintf(second, sizeof second, "%s", p->bus);

	/* round robin: the first port is now the one used longest ago */
	build(m, "qemu72-q35-running", 0);
	pci_hist_apply(m, h);
	assert_non_null(p = pci_alloc(m, NULL, -1, "c", &err));
	pci_hist_note(h, p);
	assert_string_equal(p->bus, first);

	/* the only free place is taken even if it was just used */
	build(m, "qemu72-q35-running", 0);
	pci_hist_apply(m, h);
	assert_non_null(pci_alloc(m, second, -1, "x", &err));
	assert_non_null(p = pci_alloc(m, NULL, -1, "d", &err));
	assert_string_equal(p->bus, first);

	/* the history stays bounded */
	for (i = 0; i < 3 * PCI_HIST_MAX; i++) {
		struct pci_place q = { .slot = i % PCI_SLOTS };

		snprintf(q.bus, sizeof q.bus, "b%d", i);
		pci_hist_note(h, &q);
	}
	assert_int_equal(h->n, PCI_HIST_MAX);
	free(h);
	free(m);
}

static void
test_addr(void **state)
{
	struct qmp_error	 err;
	json_t			*v;
	const char		*good[] = { "5", "0x5", "0x05", "05.0", "0x1f",
				    "1f.0" };
	int			 want[] = { 5, 5, 5, 5, 31, 31 };
	const char		*bad[] = { "", "0x20", "5.1", "x", "5.", "-1",
				    "0x5 ", "05.0.0", "g" };
	size_t			 i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = json_string(good[i]);
		assert_int_equal(pci_parse_addr(v, &err), want[i]);
		json_decref(v);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = json_string(bad[i]);
		if (pci_parse_addr(v, &err) != -1)
			fail_msg("'%s' accepted", bad[i]);
		json_decref(v);
	}
	v = json_integer(7);
	assert_int_equal(pci_parse_addr(v, &err), 7);
	json_decref(v);
	v = json_integer(32);
	assert_int_equal(pci_parse_addr(v, &err), -1);
	json_decref(v);
	v = json_true();
	assert_int_equal(pci_parse_addr(v, &err), -1);
	json_decref(v);
}

static void
test_json(void **state)
{
	struct pci_map	*m = malloc(sizeof *m);
	struct qmp_error err;
	json_t		*j, *e;

	build(m, "qemu72-q35-running", 0);
	assert_non_null(pci_alloc(m, "rp2", 0, "nic9", &err));
	j = pci_map_json(m);
	assert_int_equal(json_array_size(j), 3);
	e = json_array_get(j, 2);
	assert_string_equal(json_string_value(json_object_get(e, "bus")), "rp2");
	assert_string_equal(json_string_value(json_object_get(e, "addr")), "0x0");
	assert_string_equal(json_string_value(json_object_get(e, "state")),
	    "reserved");
	assert_string_equal(json_string_value(json_object_get(e, "device")),
	    "nic9");
	assert_string_equal(json_string_value(json_object_get(e, "kind")),
	    "pcie-root-port");
	json_decref(j);
	free(m);
}

static void
test_garbage(void **state)
{
	struct pci_map		*m = malloc(sizeof *m);
	struct qmp_error	 err;
	json_t			*j;

	j = json_loads("{\"bus\": 0}", 0, NULL);
	assert_int_equal(pci_map_build(m, j, NULL, NULL, &err), -1);
	json_decref(j);
	j = json_loads("[{\"bus\": 1, \"devices\": []}]", 0, NULL);
	assert_int_equal(pci_map_build(m, j, NULL, NULL, &err), -1);
	json_decref(j);
	j = json_loads("[{\"bus\": 0, \"devices\": [{\"slot\": 99}]}]", 0,
	    NULL);
	assert_int_equal(pci_map_build(m, j, NULL, NULL, &err), -1);
	json_decref(j);
	free(m);
}

/* pci-plan's conventional places on q35, and the counts by kind. */
static void
test_plan_by_kind(void **state)
{
	struct qmp_error	 err;
	json_t			*plan, *slots, *bk, *args;

	plan = pci_plan("q35", 1, 0, 0, 32, &err);
	assert_non_null(plan);
	args = json_object_get(plan, "args");
	assert_int_equal(json_array_size(args), 2 * 3);
	assert_string_equal(json_string_value(json_array_get(args, 3)),
	    "pcie-pci-bridge,id=qb-pb0,bus=pcie.0,addr=0x1e");
	assert_string_equal(json_string_value(json_array_get(args, 5)),
	    "pcie-pci-bridge,id=qb-pb1,bus=pcie.0,addr=0x1d");
	assert_int_equal(json_integer_value(json_object_get(plan, "places")),
	    1 + 62);
	json_decref(plan);
	assert_null(pci_plan("q35", 0, 0, 0, 6 * 31 + 1, &err));
	assert_null(pci_plan("pc", 1LL << 62, 1LL << 62, 0, 0, &err));
	/* pc: every place is conventional already, no bridge for 3 */
	plan = pci_plan("pc", 0, 0, 0, 3, &err);
	assert_int_equal(json_array_size(json_object_get(plan, "args")), 0);
	json_decref(plan);

	slots = json_loads("[{\"kind\": \"pcie-root-port\", \"state\": "
	    "\"used\"}, {\"kind\": \"pcie-pci-bridge\", \"state\": "
	    "\"free\"}, {\"kind\": \"pcie-pci-bridge\", \"state\": "
	    "\"free\"}, {\"kind\": 1}]", 0, NULL);
	bk = pci_slots_by_kind(slots);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    bk, "free"), "pcie-pci-bridge")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    bk, "free"), "pcie-root-port")), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    bk, "used"), "pcie-root-port")), 1);
	assert_int_equal(json_object_size(json_object_get(bk, "reserved")),
	    2);
	json_decref(bk);
	json_decref(slots);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pc_paused),
		cmocka_unit_test(test_pc_running),
		cmocka_unit_test(test_q35),
		cmocka_unit_test(test_q35_without_qom),
		cmocka_unit_test(test_alloc),
		cmocka_unit_test(test_alloc_lru),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_plan_by_kind),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
