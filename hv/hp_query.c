/*
 * Read-only questions about a VM's hotplug state (slots, device
 * presence) and the reconciliation of a journal left by a broker that
 * died mid-operation.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "hv/hp_int.h"

/* A question takes no lock on the id. NULL if refused: done is then
   answered from the loop. */
static struct hp_op *
hp_query_new(struct hp_vm *vm, const char *name, const char *id,
    const char *cmd, hp_done_fn *done, void *arg)
{
	struct hp_op		*op;
	struct qmp_error	 err;

	if (!hp_ready(vm) || !vmq_has_command(vm->q, cmd)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "the VM's monitor is "
		    "not ready or lacks %s", cmd);
		goto refuse;
	}
	if ((op = hp_op_alloc(vm, name, id, done, arg, &err)) == NULL)
		goto refuse;
	op->query = true;
	return (op);
refuse:
	hp_refuse(vm, &err, done, arg);
	return (NULL);
}

/* A question's only answer ends it. */
static void
hp_query_answer(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	hp_answer(op, ret, err);
	hp_op_free(op);
}

/* --- query-pci-slots ---------------------------------------------------- */

static void
hp_slots_done(struct hp_op *op, struct pci_map *m, const struct qmp_error *err)
{
	hp_scan_end(op);
	if (m == NULL)
		hp_query_answer(op, NULL, err);
	else {
		pci_map_apply(m, op->vm->resv);
		hp_query_answer(op, pci_map_json(m), NULL);
	}
}

void
hp_slots(struct hp_vm *vm, hp_done_fn *done, void *arg)
{
	struct hp_op	*op;

	op = hp_query_new(vm, "query-pci-slots", "", "query-pci", done, arg);
	if (op != NULL)
		hp_scan_start(op, hp_slots_done);
}

/* --- has-device --------------------------------------------------------- */

static bool
hp_list_has(const json_t *list, const char *key, const char *a,
    const char *b)
{
	const json_t	*e;
	const char	*n;
	size_t		 i;

	json_array_foreach(list, i, e) {
		n = json_string_value(json_object_get(e, key));
		if (n != NULL && (strcmp(n, a) == 0 ||
		    (b != NULL && strcmp(n, b) == 0)))
			return (true);
	}
	return (false);
}

static void
hp_has_answer(struct hp_op *op, bool present)
{
	hp_query_answer(op, json_pack("{s:b}", "present", present), NULL);
}

static void
hp_has_nodes_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	if (err != NULL)
		hp_query_answer(op, NULL, err);
	else
		hp_has_answer(op, hp_list_has(ret, "node-name", op->id,
		    op->node));
}

static void
hp_has_periph_done(struct hp_op *op, json_t *ret,
    const struct qmp_error *err)
{
	if (err == NULL && hp_list_has(ret, "name", op->id, NULL))
		hp_has_answer(op, true);
	else if (!vmq_has_command(op->vm->q, "query-named-block-nodes"))
		hp_has_answer(op, false);
	else
		hp_exec(op, "query-named-block-nodes", NULL, NULL, 0,
		    hp_has_nodes_done);
}

void
hp_has_device(struct hp_vm *vm, const char *id, hp_done_fn *done, void *arg)
{
	struct hp_op		*op;
	struct qmp_error	 err;

	if (!hp_id_valid(id)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "invalid device id");
		hp_refuse(vm, &err, done, arg);
		return;
	}
	/* not an operation on the id: no lock */
	op = hp_query_new(vm, "has-device", id, "qom-list", done, arg);
	if (op != NULL)
		hp_qom_peripheral(op, hp_has_periph_done);
}

/* --- reconciliation ----------------------------------------------------- */

static void
hp_rec_periph_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	const char	*action;
	bool		 present;
	size_t		 i;

	if (err != NULL) {
		hp_query_answer(op, NULL, err);
		return;
	}
	present = hp_list_has(ret, "name", op->id, NULL);
	/* Everything runs as undo steps: each tolerates "not found". */
	op->undoing = true;
	if (op->kind == HP_CPU || op->resize) {
		/* a CPU has no backend: each one is in or out, as QEMU has
		   it; nothing is left half-done whatever the step was. A
		   resize left requested-size to QEMU, the guest follows it
		   (or not) with no one waiting */
		action = "finished";
	} else if (op->add && present) {
		action = "finished";
		/* the fdset, if the add had not come to remove-fd */
		if (op->kind == HP_DISK)
			hp_push_undo_of(op, ST_ADDFD, 0);
	} else if (op->add) {
		/* what the add may have made before device_add */
		action = "undone";
		if (op->kind == HP_NIC) {
			for (i = 0; i < op->nfds; i++)
				hp_push_undo_of(op, ST_GETFD, (int)i);
			hp_push_undo_of(op, ST_NETDEV_ADD, 0);
		} else if (op->kind == HP_MEM) {
			hp_push_undo_of(op, ST_OBJECT_ADD, 0);
		} else {
			hp_push_undo_of(op, ST_ADDFD, 0);
			hp_push_undo_of(op, ST_BLOCKDEV_ADD, 0);
		}
	} else if (present) {
		/* the guest has not let go yet: wait for it as a pending
		   unplug whose client is long gone */
		action = "pending";
		op->undoing = false;
		op->pending = true;
		hp_del_steps(op);
	} else {
		/* the device is out: the rest of the del is still due,
		   pushed last first so that it runs in the del's order */
		action = "finished";
		hp_del_steps(op);
		for (; op->nsteps > 1; op->nsteps--)
			hp_push_undo(op, op->steps[op->nsteps - 1].k,
			    op->steps[op->nsteps - 1].arg);
		op->nsteps = 0;
	}
	hp_log(op->vm, LOG_NOTICE, "journal: %s %s was interrupted; device "
	    "%s: %s", op->name, op->id, present ? "present" : "absent",
	    action);
	hp_answer(op, json_pack("{s:s, s:s}", "id", op->id, "action", action),
	    NULL);
	hp_next(op);
}

void
hp_reconcile(struct hp_vm *vm, const json_t *rec, hp_done_fn *done, void *arg)
{
	/* n / 2 is the kind, n % 2 == 0 an add */
	static const char *const names[] = { "nic-add", "nic-del", "disk-add",
	    "disk-del", "cpu-add", "cpu-del", "mem-add", "mem-del",
	    "mem-resize" };
	static const char *const kinds[] = { "nic", "disk", "cpu", "mem",
	    "mem" };
	struct hp_op		*op;
	struct qmp_error	 err;
	const char		*id, *opname, *kind, *s;
	const json_t		*v;
	size_t			 i, n;

	id = json_string_value(json_object_get(rec, "id"));
	opname = json_string_value(json_object_get(rec, "op"));
	kind = json_string_value(json_object_get(rec, "kind"));
	if (!hp_id_valid(id) || opname == NULL || kind == NULL) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "journal record without "
		    "a valid id, op or kind");
		goto refuse;
	}
	for (n = 0; n < 9; n++)
		if (strcmp(names[n], opname) == 0)
			break;
	if (n == 9 || strcmp(kind, kinds[n / 2]) != 0 || !hp_ready(vm) ||
	    !vmq_has_command(vm->q, "qom-list")) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "cannot reconcile %s "
		    "now", id);
		goto refuse;
	}
	if (hp_op_find(vm, id) != NULL) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "an operation on device "
		    "'%s' is already in progress", id);
		goto refuse;
	}
	if ((op = hp_op_alloc(vm, names[n], id, done, arg, &err)) == NULL)
		goto refuse;
	op->resize = n == 8;
	op->kind = op->resize ? HP_MEM : (enum hp_kind)(n / 2);
	op->add = n % 2 == 0 && !op->resize;
	op->reconcile = true;
	/* the names the dead broker used, not fresh ones */
	if ((s = json_string_value(json_object_get(rec, "netdev"))) != NULL)
		snprintf(op->netdev, sizeof op->netdev, "%s", s);
	if ((s = json_string_value(json_object_get(rec, "node"))) != NULL)
		snprintf(op->node, sizeof op->node, "%s", s);
	if ((s = json_string_value(json_object_get(rec, "opaque"))) != NULL)
		snprintf(op->opaque, sizeof op->opaque, "%s", s);
	/* a mem-del that had not read its DIMM's backend yet: the name
	   mem-add gives */
	s = json_string_value(json_object_get(rec, "memdev"));
	if (op->kind == HP_MEM)
		snprintf(op->memdev, sizeof op->memdev, s != NULL ? "%s" :
		    "qbmem-%s", s != NULL ? s : id);
	json_array_foreach(json_object_get(rec, "fdnames"), i, v) {
		if (op->nfds == HP_MAX_FDS || !json_is_string(v))
			break;
		snprintf(op->fdname[op->nfds++], HP_NAME_MAX, "%s",
		    json_string_value(v));
	}
	hp_qom_peripheral(op, hp_rec_periph_done);
	return;
refuse:
	hp_refuse(vm, &err, done, arg);
}
