/*
 * Subscriptions and event fan-out to clients.
 */
#ifndef BROKER_SUB_H
#define BROKER_SUB_H

#include <jansson.h>

/* Publish an event the broker itself makes (JOB_STATUS_CHANGE,
   DEVICE_UNPLUGGED, ...) to every matching subscription. vm may be NULL
   for broker-wide events (then "vm" is omitted). data is stolen (NULL
   means {}). The timestamp is taken now. */
void	sub_publish(const char *vm, const char *event, json_t *data);

#endif
