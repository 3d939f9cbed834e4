/*
 * fake-qemu's PCI device model, shared by pci.c (devices, query-pci) and
 * qom.c (the QOM tree view of the same devices).
 */
#ifndef FAKE_PCI_H
#define FAKE_PCI_H

#include "tools/fake-qemu/fake.h"

enum drv_kind { K_NET, K_BLK, K_SCSI, K_SCSI_HD, K_BRIDGE, K_RP, K_VMEM };

struct drv {
	const char	*name;
	enum drv_kind	 kind;
	int		 cls;
	const char	*desc;
	int		 dev_legacy, sub_legacy;	/* conventional PCI */
	int		 dev_modern, sub_modern;	/* behind a PCIe port */
	const char	*backend;	/* virtio child type, or NULL */
	const char	*regions_legacy, *regions_modern;
};

struct dev {
	char		*id;		/* NULL: anonymous */
	char		*qom;		/* canonical path */
	const struct drv *drv;
	struct dev	*parent;	/* bus owner; NULL: root bus */
	int		 slot, func;	/* scsi-hd: scsi-id, lun */
	char		*netdev;
	char		*drive;
	int		 builtin;	/* root ports made at start */
	int		 unplugging;
	struct event	*timer;
	struct vm	*vm;
	int		 secondary;	/* bus number, set by pci_number */
	int		 subordinate;
};

/* q35's root ports exist from the start but are made on first use, so
   an idle VM in scale mode costs nothing. */
void	pci_ensure(struct vm *);

#endif
