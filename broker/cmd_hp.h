/*
 * Hotplug commands (nic-add, nic-del, disk-add, disk-del,
 * query-pci-slots, has-device) and their journal reconciliation.
 */
#ifndef BROKER_CMD_HP_H
#define BROKER_CMD_HP_H

#include "broker/cmd.h"

extern const struct cmd_entry cmd_hp_table[];

/* At start-up, once the loop and the VM registry exist: loads the
   hotplug journal and reconciles each record as its VM becomes ready. */
void	cmd_hp_init(void);
/* At shutdown: answers what is in flight, frees everything. */
void	cmd_hp_shutdown(void);

#endif
