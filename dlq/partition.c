/* partition.c - which cluster partition a task belongs to (DESIGN section 18). */
#include "dlq.h"

uint32_t
dlq_partition_of(const char *id, size_t len, uint32_t partitions)
{
    if (partitions == 0)
        return 0;
    return (uint32_t)(sc_fnv1a64(id, len) % partitions); /* the KV store's keys use the same */
}
