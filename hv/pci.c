/*
 * PCI slot model. See pci.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/pci.h"

#define PCI_CLASS_BRIDGE	0x0604
#define PCI_DEV_Q35_HOST	0x29c0	/* Intel Q35 MCH */
#define PCI_VENDOR_INTEL	0x8086

const char *
pci_state_name(enum pci_state s)
{
	switch (s) {
	case PCI_FREE:
		return ("free");
	case PCI_USED:
		return ("used");
	case PCI_RESERVED:
		return ("reserved");
	}
	return ("?");
}

/* The type of a peripheral (qom-list entry "child<TYPE>"), or NULL. */
static const char *
pci_periph_type(const json_t *peripheral, const char *id, char *buf,
    size_t len)
{
	const json_t	*e;
	const char	*name, *type;
	size_t		 i, n;

	if (!json_is_array(peripheral) || id == NULL)
		return (NULL);
	json_array_foreach(peripheral, i, e) {
		name = json_string_value(json_object_get(e, "name"));
		type = json_string_value(json_object_get(e, "type"));
		if (name == NULL || type == NULL || strcmp(name, id) != 0)
			continue;
		if (strncmp(type, "child<", 6) != 0)
			return (NULL);
		n = strlen(type + 6);
		if (n == 0 || type[6 + n - 1] != '>' || n > len)
			return (NULL);
		memcpy(buf, type + 6, n - 1);
		buf[n - 1] = '\0';
		return (buf);
	}
	return (NULL);
}

static bool
pci_is_root_port(const char *type)
{
	return (type != NULL && (strcmp(type, "pcie-root-port") == 0 ||
	    strcmp(type, "ioh3420") == 0));
}

static bool
pci_is_pci_bridge(const char *type)
{
	return (type != NULL && strcmp(type, "pci-bridge") == 0);
}

static bool
pci_is_pcie_bridge(const char *type)
{
	return (type != NULL && strcmp(type, "pcie-pci-bridge") == 0);
}

const char *
pci_kind_name(enum pci_kind k)
{
	switch (k) {
	case PCI_K_ROOT:
		return ("pci-root");
	case PCI_K_BRIDGE:
		return ("pci-bridge");
	case PCI_K_ROOT_PORT:
		return ("pcie-root-port");
	case PCI_K_PCIE_BRIDGE:
		return ("pcie-pci-bridge");
	}
	return ("?");
}

static int
pci_int(const json_t *o, const char *key)
{
	const json_t	*v = json_object_get(o, key);

	return (json_is_integer(v) ? (int)json_integer_value(v) : -1);
}

static int
pci_class(const json_t *dev)
{
	return (pci_int(json_object_get(dev, "class_info"), "class"));
}

static const char *
pci_qdev_id(const json_t *dev)
{
	const char	*s = json_string_value(json_object_get(dev, "qdev_id"));

	return (s != NULL && *s != '\0' ? s : NULL);
}

static const json_t *
pci_bus0_devices(const json_t *query_pci, struct qmp_error *err)
{
	const json_t	*bus, *devs;
	size_t		 i;

	if (!json_is_array(query_pci)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "query-pci did not return an array");
		return (NULL);
	}
	json_array_foreach(query_pci, i, bus) {
		if (pci_int(bus, "bus") != 0)
			continue;
		devs = json_object_get(bus, "devices");
		if (!json_is_array(devs))
			break;
		return (devs);
	}
	qmp_error_set(err, QMP_CLS_GENERIC, "query-pci shows no bus 0");
	return (NULL);
}

/* A bridge's secondary bus number as the firmware set it; 0 if unset. */
static int
pci_secondary(const json_t *dev)
{
	const json_t	*br = json_object_get(dev, "pci_bridge");

	return (pci_int(json_object_get(br, "bus"), "secondary"));
}

/* The machine shows in its host bridge: q35's MCH or i440FX. */
static bool
pci_devs_q35(const json_t *devs)
{
	const json_t	*dev, *id;
	size_t		 i;

	json_array_foreach(devs, i, dev) {
		if (pci_int(dev, "slot") != 0 || pci_int(dev, "function") > 0)
			continue;
		id = json_object_get(dev, "id");
		return (pci_int(id, "vendor") == PCI_VENDOR_INTEL &&
		    pci_int(id, "device") == PCI_DEV_Q35_HOST);
	}
	return (false);
}

/* A bridge's type from the peripheral list; without one, the only kind
   of hotplug bridge the machine has. */
static const char *
pci_bridge_type(const json_t *peripheral, const char *id, bool q35,
    char *buf, size_t len)
{
	if (peripheral == NULL)
		return (q35 ? "pcie-root-port" : "pci-bridge");
	return (pci_periph_type(peripheral, id, buf, len));
}

json_t *
pci_need_qom(const json_t *query_pci, const json_t *peripheral)
{
	struct qmp_error	 err;
	const json_t		*devs, *dev;
	const char		*id, *type;
	char			 tbuf[PCI_NAME_MAX];
	json_t			*out;
	size_t			 i;

	out = json_array();
	if ((devs = pci_bus0_devices(query_pci, &err)) == NULL)
		return (out);
	json_array_foreach(devs, i, dev) {
		if (pci_class(dev) != PCI_CLASS_BRIDGE ||
		    (id = pci_qdev_id(dev)) == NULL)
			continue;
		type = pci_bridge_type(peripheral, id, pci_devs_q35(devs), tbuf,
		    sizeof tbuf);
		if (!pci_is_root_port(type) && !pci_is_pci_bridge(type) &&
		    !pci_is_pcie_bridge(type))
			continue;
		if (pci_secondary(dev) <= 0)
			json_array_append_new(out, json_string(id));
	}
	return (out);
}

static struct pci_place *
pci_add(struct pci_map *m, const char *bus, int slot, enum pci_kind kind,
    enum pci_state st, const char *owner)
{
	struct pci_place	*p;

	if (m->n == PCI_MAX_PLACES)
		return (NULL);
	p = &m->place[m->n++];
	snprintf(p->bus, sizeof p->bus, "%s", bus);
	p->slot = slot;
	p->kind = kind;
	p->state = st;
	snprintf(p->owner, sizeof p->owner, "%s", owner != NULL ? owner : "");
	return (p);
}

/* Fills used[] (and owners) from a bridge's bus, as query-pci or QOM
   shows it. Returns -1 if neither can. */
static int
pci_bridge_used(const json_t *dev, const char *id, const json_t *qom_buses,
    bool used[PCI_SLOTS], const char *owner[PCI_SLOTS])
{
	const json_t	*inner, *d, *fns;
	size_t		 i;
	int		 slot;

	memset(used, 0, PCI_SLOTS * sizeof used[0]);
	memset(owner, 0, PCI_SLOTS * sizeof owner[0]);
	if (pci_secondary(dev) > 0) {
		inner = json_object_get(json_object_get(dev, "pci_bridge"),
		    "devices");
		json_array_foreach(inner, i, d) {
			slot = pci_int(d, "slot");
			if (slot < 0 || slot >= PCI_SLOTS)
				continue;
			used[slot] = true;
			if (owner[slot] == NULL)
				owner[slot] = pci_qdev_id(d);
		}
		return (0);
	}
	fns = json_object_get(qom_buses, id);
	if (!json_is_array(fns))
		return (-1);
	json_array_foreach(fns, i, d) {
		if (!json_is_integer(d))
			continue;
		slot = (int)(json_integer_value(d) >> 3);
		if (slot >= 0 && slot < PCI_SLOTS)
			used[slot] = true;
	}
	return (0);
}

int
pci_map_build(struct pci_map *m, const json_t *query_pci,
    const json_t *peripheral, const json_t *qom_buses, struct qmp_error *err)
{
	const json_t	*devs, *dev;
	const char	*id, *type, *owner[PCI_SLOTS], *bus0owner[PCI_SLOTS];
	char		 tbuf[PCI_NAME_MAX];
	bool		 used[PCI_SLOTS], bus0[PCI_SLOTS];
	size_t		 i;
	int		 slot, s;

	memset(m, 0, sizeof *m);
	if ((devs = pci_bus0_devices(query_pci, err)) == NULL)
		return (-1);
	memset(bus0, 0, sizeof bus0);
	memset(bus0owner, 0, sizeof bus0owner);
	json_array_foreach(devs, i, dev) {
		slot = pci_int(dev, "slot");
		if (slot < 0 || slot >= PCI_SLOTS) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "query-pci device without a valid slot");
			return (-1);
		}
		bus0[slot] = true;
		if (bus0owner[slot] == NULL)
			bus0owner[slot] = pci_qdev_id(dev);
	}
	m->q35 = pci_devs_q35(devs);

	if (!m->q35) {
		for (s = 0; s < PCI_SLOTS; s++)
			pci_add(m, "pci.0", s, PCI_K_ROOT, bus0[s] ? PCI_USED :
			    PCI_FREE, bus0owner[s]);
	}
	json_array_foreach(devs, i, dev) {
		if (pci_class(dev) != PCI_CLASS_BRIDGE ||
		    (id = pci_qdev_id(dev)) == NULL)
			continue;
		type = pci_bridge_type(peripheral, id, m->q35, tbuf,
		    sizeof tbuf);
		if (m->q35 && pci_is_root_port(type)) {
			if (pci_bridge_used(dev, id, qom_buses, used,
			    owner) != 0)
				continue;	/* cannot tell: never offer it */
			for (s = 1; s < PCI_SLOTS && !used[0]; s++)
				used[0] = used[s];
			pci_add(m, id, 0, PCI_K_ROOT_PORT, used[0] ? PCI_USED :
			    PCI_FREE, owner[0]);
		} else if ((!m->q35 && pci_is_pci_bridge(type)) ||
		    (m->q35 && pci_is_pcie_bridge(type))) {
			if (pci_bridge_used(dev, id, qom_buses, used,
			    owner) != 0)
				continue;
			/* slot 0 of a (pcie-)pci-bridge is its SHPC's own:
			   libvirt and QEMU keep devices off it */
			for (s = 1; s < PCI_SLOTS; s++)
				pci_add(m, id, s, m->q35 ? PCI_K_PCIE_BRIDGE :
				    PCI_K_BRIDGE, used[s] ? PCI_USED :
				    PCI_FREE, owner[s]);
		}
	}
	return (0);
}

static struct pci_place *
pci_find(struct pci_map *m, const char *bus, int slot)
{
	size_t	i;

	for (i = 0; i < m->n; i++) {
		if (m->place[i].slot == slot &&
		    strcmp(m->place[i].bus, bus) == 0)
			return (&m->place[i]);
	}
	return (NULL);
}

void
pci_hist_apply(struct pci_map *m, const struct pci_hist *h)
{
	struct pci_place	*p;
	size_t			 i;

	for (i = 0; i < h->n; i++) {
		if ((p = pci_find(m, h->e[i].bus, h->e[i].slot)) != NULL)
			p->last_used = h->e[i].when;
	}
}

void
pci_hist_note(struct pci_hist *h, const struct pci_place *p)
{
	size_t	i, slot = h->n;

	for (i = 0; i < h->n; i++) {
		if (h->e[i].slot == p->slot && strcmp(h->e[i].bus, p->bus) == 0)
			break;
	}
	if (i < h->n)
		slot = i;
	else if (h->n < PCI_HIST_MAX)
		h->n++;
	else {
		/* forget the oldest: it ranks as never used, which is
		   what it nearly is */
		slot = 0;
		for (i = 1; i < h->n; i++) {
			if (h->e[i].when < h->e[slot].when)
				slot = i;
		}
	}
	snprintf(h->e[slot].bus, sizeof h->e[slot].bus, "%s", p->bus);
	h->e[slot].slot = p->slot;
	h->e[slot].when = ++h->clock;
}

void
pci_map_apply(struct pci_map *m, const struct pci_resv *r)
{
	struct pci_place	*p;

	for (; r != NULL; r = r->next) {
		if ((p = pci_find(m, r->bus, r->slot)) == NULL)
			continue;
		if (p->state == PCI_FREE) {
			p->state = r->in ? PCI_USED : PCI_RESERVED;
			snprintf(p->owner, sizeof p->owner, "%s", r->owner);
		}
	}
}

static bool
pci_has_kind(const struct pci_map *m, enum pci_kind k)
{
	size_t	i;

	for (i = 0; i < m->n; i++)
		if (m->place[i].kind == k)
			return (true);
	return (false);
}

struct pci_place *
pci_alloc(struct pci_map *m, const char *bus, int slot, const char *owner,
    struct qmp_error *err)
{
	struct pci_place	*p = NULL;
	size_t			 i;
	bool			 known = false;

	if (bus != NULL && slot >= 0) {
		if ((p = pci_find(m, bus, slot)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s addr 0x%x is "
			    "not a hotplug-capable PCI slot of this VM", bus,
			    slot);
			return (NULL);
		}
		if (p->state != PCI_FREE) {
			qmp_error_set(err, QMP_CLS_GENERIC, "PCI slot %s addr "
			    "0x%x is %s%s%s", bus, slot,
			    pci_state_name(p->state), *p->owner ? " by " : "",
			    p->owner);
			return (NULL);
		}
	} else {
		for (i = 0; i < m->n; i++) {
			if (bus != NULL && strcmp(m->place[i].bus, bus) != 0)
				continue;
			if (slot >= 0 && m->place[i].slot != slot)
				continue;
			known = true;
			if (m->place[i].state == PCI_FREE && (p == NULL ||
			    m->place[i].last_used < p->last_used ||
			    (m->place[i].last_used == p->last_used &&
			    m->place[i].kind == PCI_K_ROOT_PORT &&
			    p->kind != PCI_K_ROOT_PORT)))
				p = &m->place[i];
		}
		if (p == NULL) {
			if (bus != NULL && !known)
				qmp_error_set(err, QMP_CLS_GENERIC, "bus '%s' "
				    "has no hotplug-capable PCI slot", bus);
			else if (m->q35)
				qmp_error_set(err, QMP_CLS_GENERIC, "no free "
				    "PCI slot: every pcie-root-port is in use "
				    "(q35 hotplugs only into empty root "
				    "ports%s)", pci_has_kind(m,
				    PCI_K_PCIE_BRIDGE) ? ", and every slot of "
				    "the pcie-pci-bridges" : " and "
				    "pcie-pci-bridges");
			else
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "no free PCI slot on any hotplug-capable "
				    "bus");
			return (NULL);
		}
	}
	p->state = PCI_RESERVED;
	snprintf(p->owner, sizeof p->owner, "%s", owner);
	return (p);
}

struct pci_resv *
pci_resv_add(struct pci_resv **head, const char *bus, int slot,
    const char *owner)
{
	struct pci_resv	*r;

	if ((r = calloc(1, sizeof *r)) == NULL)
		return (NULL);
	snprintf(r->bus, sizeof r->bus, "%s", bus);
	r->slot = slot;
	snprintf(r->owner, sizeof r->owner, "%s", owner);
	r->next = *head;
	*head = r;
	return (r);
}

void
pci_resv_del(struct pci_resv **head, struct pci_resv *r)
{
	struct pci_resv	**pp;

	for (pp = head; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			free(r);
			return;
		}
	}
}

void
pci_resv_prune(struct pci_resv **head)
{
	struct pci_resv	**pp, *r;

	for (pp = head; (r = *pp) != NULL; ) {
		if (r->in) {
			*pp = r->next;
			free(r);
		} else
			pp = &r->next;
	}
}

void
pci_resv_free_all(struct pci_resv **head)
{
	struct pci_resv	*r;

	while ((r = *head) != NULL) {
		*head = r->next;
		free(r);
	}
}

int
pci_parse_addr(const json_t *v, struct qmp_error *err)
{
	const char	*s, *p;
	char		*end;
	long		 slot, fn = 0;

	if (json_is_integer(v)) {
		slot = (long)json_integer_value(v);
		goto check;
	}
	if ((s = json_string_value(v)) == NULL || *s == '\0')
		goto bad;
	for (p = s; *p != '\0'; p++) {
		if (!isxdigit((unsigned char)*p) && *p != 'x' && *p != 'X' &&
		    *p != '.')
			goto bad;
	}
	slot = strtol(s, &end, 16);
	if (end == s)
		goto bad;
	if (*end == '.') {
		fn = strtol(end + 1, &end, 16);
		if (end[-1] == '.')
			goto bad;
	}
	if (*end != '\0')
		goto bad;
check:
	if (slot < 0 || slot >= PCI_SLOTS || fn != 0)
		goto bad;
	return ((int)slot);
bad:
	qmp_error_set(err, QMP_CLS_GENERIC, "'addr' must be a PCI slot 0..0x1f "
	    "(function 0), as 5, \"0x5\" or \"05.0\"");
	return (-1);
}

json_t *
pci_map_json(const struct pci_map *m)
{
	const struct pci_place	*p;
	json_t			*out, *o;
	char			 addr[8];
	size_t			 i;

	out = json_array();
	for (i = 0; i < m->n; i++) {
		p = &m->place[i];
		snprintf(addr, sizeof addr, "0x%x", p->slot);
		/* the kind of place, for capacity by kind (pci-plan makes
		   them) */
		o = json_pack("{s:s, s:s, s:s, s:s}", "bus", p->bus, "addr",
		    addr, "state", pci_state_name(p->state), "kind",
		    pci_kind_name(p->kind));
		if (o != NULL && p->owner[0] != '\0')
			json_object_set_new(o, "device",
			    json_string(p->owner));
		if (o != NULL)
			json_array_append_new(out, o);
	}
	return (out);
}

json_t *
pci_slots_by_kind(const json_t *slots)
{
	static const char *const states[] = { "free", "used", "reserved" };
	const json_t	*e;
	const char	*kind, *st;
	json_t		*out, *o;
	size_t		 i, k;

	out = json_pack("{s:{},s:{},s:{}}", "free", "used", "reserved");
	if (out == NULL)
		return (NULL);
	json_array_foreach(slots, i, e) {
		kind = json_string_value(json_object_get(e, "kind"));
		st = json_string_value(json_object_get(e, "state"));
		if (kind == NULL || st == NULL)
			continue;
		/* every kind the VM has shows in each state, 0 included */
		for (k = 0; k < sizeof states / sizeof states[0]; k++) {
			o = json_object_get(out, states[k]);
			if (json_object_get(o, kind) == NULL)
				json_object_set_new(o, kind, json_integer(0));
		}
		if ((o = json_object_get(out, st)) != NULL)
			json_object_set_new(o, kind, json_integer(
			    json_integer_value(json_object_get(o, kind)) + 1));
	}
	return (out);
}
