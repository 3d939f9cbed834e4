/*
 * The PCI capacity planner: the QEMU command-line arguments that give a
 * VM a hotplug budget at boot, for the places pci.c's allocator uses.
 *
 * q35 hotplugs only into empty pcie-root-ports, one device each, so the
 * plan is one port per NIC, disk and spare, packed eight to a slot of
 * pcie.0 (multifunction) from slot 0x18 down to 0x10, away from the
 * low slots QEMU's defaults take (VGA 0x1, e1000e 0x2) and from the
 * ICH9 functions at 0x1f. Devices that want conventional PCI (an old
 * guest driver, e1000 or rtl8139) get pcie-pci-bridges (libvirt's
 * pcie-to-pci-bridge) on pcie.0 at 0x1e, 0x1d, ... 0x19, 31 places each
 * (slot 0 being the SHPC's): pci.c offers their empty slots too, after
 * the root ports. pc hotplugs into the empty slots of pci.0 and
 * of pci-bridges: pci.0 is counted from slot 5 (0 host bridge, 1 PIIX,
 * 2 and 3 the default VGA and NIC, 4 kept for the user), and what does
 * not fit goes behind pci-bridges at 0x1f, 0x1e, ... (31 places each,
 * slot 0 being the bridge's SHPC).
 *
 * Pure code.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hv/pci.h"

#define PLAN_Q35_FIRST	0x18
#define PLAN_Q35_SLOTS	9		/* 0x18 .. 0x10 */
#define PLAN_PC_ROOT	27		/* slots 5..31 of pci.0 */
#define PLAN_PC_BRIDGE	31
#define PLAN_Q35_PCIBR	0x1e		/* pcie-pci-bridges: 0x1e .. 0x19 */
#define PLAN_Q35_NPCIBR	6

static void
plan_arg(json_t *args, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
plan_arg(json_t *args, const char *fmt, ...)
{
	char	buf[256];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	json_array_append_new(args, json_string("-device"));
	json_array_append_new(args, json_string(buf));
}

json_t *
pci_plan(const char *machine, long long nics, long long disks,
    long long spare, long long conv, struct qmp_error *err)
{
	json_t		*args, *r;
	long long	 want, i, nbr, npb = 0, max;
	bool		 q35;

	if (strcmp(machine, "q35") != 0 && strcmp(machine, "pc") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "machine must be pc or "
		    "q35");
		return (NULL);
	}
	q35 = machine[0] == 'q';
	if (nics < 0 || disks < 0 || spare < 0 || conv < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "nics, disks, spare and "
		    "conventional must not be negative");
		return (NULL);
	}
	/* each count is bounded first, so the sums cannot overflow */
	max = q35 ? 8 * PLAN_Q35_SLOTS : PLAN_PC_ROOT + 8 * PLAN_PC_BRIDGE;
	if (nics > max || disks > max || spare > max || conv > max * 3) {
		qmp_error_set(err, QMP_CLS_GENERIC, "a budget of more than %lld "
		    "places is more than the plan gives on %s", max, machine);
		return (NULL);
	}
	want = nics + disks + spare;
	if (q35)
		npb = (conv + PLAN_PC_BRIDGE - 1) / PLAN_PC_BRIDGE;
	else
		want += conv;	/* every place of pc is conventional */
	if (want > max) {
		qmp_error_set(err, QMP_CLS_GENERIC, "a budget of %lld places "
		    "is more than the plan gives on %s (%lld)", want, machine,
		    max);
		return (NULL);
	}
	if (npb > PLAN_Q35_NPCIBR) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%lld conventional places "
		    "is more than the plan gives on q35 (%d)", conv,
		    PLAN_Q35_NPCIBR * PLAN_PC_BRIDGE);
		return (NULL);
	}
	args = json_array();
	if (q35) {
		for (i = 0; i < want; i++)
			plan_arg(args, "pcie-root-port,id=qb-rp%lld,"
			    "chassis=%lld,bus=pcie.0,addr=0x%llx.0x%llx%s",
			    i, 100 + i, PLAN_Q35_FIRST - i / 8, i % 8,
			    i % 8 == 0 && i + 1 < want ? ",multifunction=on" :
			    "");
		for (i = 0; i < npb; i++)
			plan_arg(args, "pcie-pci-bridge,id=qb-pb%lld,"
			    "bus=pcie.0,addr=0x%llx", i, PLAN_Q35_PCIBR - i);
		nbr = 0;
	} else {
		nbr = want > PLAN_PC_ROOT ? (want - PLAN_PC_ROOT +
		    PLAN_PC_BRIDGE - 1) / PLAN_PC_BRIDGE : 0;
		for (i = 0; i < nbr; i++)
			plan_arg(args, "pci-bridge,id=qb-br%lld,"
			    "chassis_nr=%lld,bus=pci.0,addr=0x%llx", i, i + 1,
			    0x1f - i);
	}
	r = json_pack("{s:o,s:I,s:{s:I,s:I,s:I,s:I}}", "args", args,
	    "places", (json_int_t)(q35 ? want + npb * PLAN_PC_BRIDGE :
	    PLAN_PC_ROOT - nbr + nbr * PLAN_PC_BRIDGE), "budget", "nics",
	    (json_int_t)nics, "disks", (json_int_t)disks, "spare",
	    (json_int_t)spare, "conventional", (json_int_t)conv);
	return (r);
}
