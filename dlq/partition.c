/* partition.c - which cluster partition a task belongs to (DESIGN section 18). */
#include "dlq.h"

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

uint32_t
dlq_partition_of(const char *id, size_t len, uint32_t partitions)
{
    const unsigned char *p = (const unsigned char *)id;
    uint64_t h = FNV64_OFFSET;

    if (partitions == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return (uint32_t)(h % partitions);
}
