/*
 * The PCI slot model of one VM: where a device may be hot-plugged, and
 * which of those places are free, used or reserved.
 *
 * Built from QEMU's own answers (query-pci, and QOM where query-pci is
 * blind), never from guesses:
 *  - pc (i440FX): every empty slot of bus 0 ("pci.0") and of every
 *    pci-bridge (slots 1..31 of the bus named after the bridge's id);
 *  - q35: every pcie-root-port whose secondary bus is empty (slot 0 of
 *    the bus named after the port's id), and the empty slots 1..31 of
 *    every pcie-pci-bridge on pcie.0 (conventional PCI, SHPC hotplug;
 *    libvirt's pcie-to-pci-bridge). q35's root bus does not hotplug.
 * query-pci lists a bridge's devices only once the firmware has numbered
 * its secondary bus; for a VM that has not run yet (-S) the caller reads
 * the bridge's bus through QOM (pci_need_qom tells which) and passes the
 * occupied devfns in.
 *
 * Reservations: a slot is reserved from allocation until its device is in
 * (and a later snapshot can see it) or the attempt is undone, so that
 * concurrent hotplugs on one VM never pick the same slot.
 *
 * Pure code on jansson values.
 */
#ifndef HV_PCI_H
#define HV_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

#define PCI_NAME_MAX	128
#define PCI_MAX_PLACES	512
#define PCI_SLOTS	32

enum pci_state {
	PCI_FREE,
	PCI_USED,
	PCI_RESERVED,
};
const char	*pci_state_name(enum pci_state);

/* The kinds of hotplug place; query-pci-slots names them. */
enum pci_kind {
	PCI_K_ROOT,		/* "pci-root": a slot of pc's pci.0 */
	PCI_K_BRIDGE,		/* "pci-bridge" */
	PCI_K_ROOT_PORT,	/* "pcie-root-port" */
	PCI_K_PCIE_BRIDGE,	/* "pcie-pci-bridge" */
};
const char	*pci_kind_name(enum pci_kind);

struct pci_place {
	char		 bus[PCI_NAME_MAX];
	int		 slot;
	enum pci_state	 state;
	enum pci_kind	 kind;
	char		 owner[PCI_NAME_MAX];	/* device id, "" if unknown */
	uint32_t	 last_used;	/* pci_hist clock; 0: never by us */
};

struct pci_map {
	bool		 q35;
	size_t		 n;
	struct pci_place place[PCI_MAX_PLACES];
};

/* One reservation. 'in' marks a device that is plugged but may not yet
   show in a snapshot taken before it went in. */
struct pci_resv {
	char		 bus[PCI_NAME_MAX];
	int		 slot;
	char		 owner[PCI_NAME_MAX];
	bool		 in;
	struct pci_resv	*next;
};

/* The bridge ids (new array) whose buses query-pci cannot show, so that
   the caller reads them through QOM: qom-list /machine/peripheral/ID/ID
   and qom-get .../child[N] addr. */
json_t	*pci_need_qom(const json_t *query_pci, const json_t *peripheral);

/* Builds the map. peripheral is qom-list /machine/peripheral (may be
   NULL: every id'd bridge is then taken for the machine's hotplug kind). qom_buses is {"ID": [devfn...]}
   for the bridges named by pci_need_qom (may be NULL). Returns 0, or -1
   with err set when the input is not query-pci's shape. */
int	 pci_map_build(struct pci_map *, const json_t *query_pci,
	    const json_t *peripheral, const json_t *qom_buses,
	    struct qmp_error *err);

/* Marks the reservations in the list on the map (a reserved place that
   the snapshot already shows used stays used). */
void	 pci_map_apply(struct pci_map *, const struct pci_resv *);

/*
 * Allocation history of one VM. A place the guest has just let go of may
 * still be settling in its hotplug driver (Linux pciehp powers a root
 * port down and back) when the next device arrives, and the guest then
 * misses the new device. So automatic allocation takes the free place
 * used longest ago, never-used ones first.
 */
#define PCI_HIST_MAX	32
struct pci_hist {
	uint32_t	 clock;
	size_t		 n;
	struct {
		char	 bus[PCI_NAME_MAX];
		int	 slot;
		uint32_t when;
	}		 e[PCI_HIST_MAX];
};
/* Copies the history's times onto the map's places. */
void	 pci_hist_apply(struct pci_map *, const struct pci_hist *);
/* Records that place was just allocated (the oldest entry makes room). */
void	 pci_hist_note(struct pci_hist *, const struct pci_place *);

/* Picks a place for owner: the one asked for (bus and/or slot; slot -1
   and bus NULL mean any) if it is free, else the free one used longest
   ago (see pci_hist; among equals, a PCIe root port before a slot of a
   pcie-pci-bridge, then the first in map order): on q35 every kind of
   place a plan made is used. Returns
   the place (now PCI_RESERVED in the map) or NULL with err set. */
struct pci_place *pci_alloc(struct pci_map *, const char *bus, int slot,
	    const char *owner, struct qmp_error *err);

/* Reservation list helpers. */
struct pci_resv *pci_resv_add(struct pci_resv **, const char *bus, int slot,
	    const char *owner);
void	 pci_resv_del(struct pci_resv **, struct pci_resv *);
/* Drops every reservation marked 'in' (called when no snapshot taken
   before they went in is still being used). */
void	 pci_resv_prune(struct pci_resv **);
void	 pci_resv_free_all(struct pci_resv **);

/* A PCI address as clients write it: 5, "5", "0x5", "0x05.0", "05.0".
   Function must be 0. Returns the slot or -1 with err set. */
int	 pci_parse_addr(const json_t *, struct qmp_error *err);

/* [{"bus","addr","state","kind","device"?}] for query-pci-slots. */
json_t	*pci_map_json(const struct pci_map *);
/* query-pci-slots {"by-kind": true}: from pci_map_json's array (borrowed),
   {"free": {KIND: N}, "used": {...}, "reserved": {...}}, every kind the
   VM has counted in each. */
json_t	*pci_slots_by_kind(const json_t *slots);

/* pci-plan (pci_plan.c): the QEMU arguments (["-device", "...", ...])
   that give machine "pc" or "q35" hotplug places for nics + disks +
   spare devices at boot, and conventional places for devices that want
   conventional PCI (q35: slots of pcie-pci-bridges; pc: any slot):
   {"args", "places", "budget"}. NULL with err on a bad machine, a
   negative count or a budget past what a plan gives. */
json_t	*pci_plan(const char *machine, long long nics, long long disks,
	    long long spare, long long conventional, struct qmp_error *err);

#endif
