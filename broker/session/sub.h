/*
 * Subscriptions and event fan-out to clients: the publish bus's sink
 * (core/bus.h), plugged in by sub_init().
 */
#ifndef BROKER_SESSION_SUB_H
#define BROKER_SESSION_SUB_H

#include <stdbool.h>
#include <jansson.h>

#include "broker/session/req.h"

struct client;

void	sub_init(void);
/* True if any of the client's subscriptions matches. vm may be NULL. */
bool	sub_wants(const struct client *, const char *vm, const char *event);
bool	sub_glob_ok(const char *);
/* The client goes: its subscriptions with it. */
void	sub_client_free(struct client *);

/* The client's queue drained: a replay goes on. */
void	sub_drained(struct client *);

/* The commands' work; each finishes r. vms and events are arrays of
   globs or NULL (every VM, every event). since (NULL: none) replays the
   event log after that seq, of epoch (NULL: the current one), before
   going live (docs/events.md). All borrowed. */
void	sub_subscribe(struct req *r, struct client *, json_t *vms,
	    json_t *events, json_t *since, json_t *epoch);
void	sub_unsubscribe(struct req *r, struct client *, json_int_t id);
json_t	*sub_list_json(const struct client *);

/* Upgrade (broker/upgrade.h): c's subscriptions, {"next": N, "subs":
   [{"id", "vms", "events"}..]} (null: every), NULL while a replay runs
   or out of memory; sub_import gives them back to c in the new process
   (st hostile: checked as subscribe checks its arguments), -1 if st is
   malformed (what was added stays, client_free takes it). */
json_t	*sub_export(const struct client *);
int	sub_import(struct client *, const json_t *st);

#endif
