/* policy-internal.h - declarations shared by policy/'s files and its unit tests, never by other folders. */
#ifndef DLQ_POLICY_INTERNAL_H
#define DLQ_POLICY_INTERNAL_H

#include "policy.h"

/*
 * policy_classifier_allocs() returns how many allocations PCRE2 has made
 * through pc's allocator since policy_classifier_new() began (compiled code,
 * contexts, the match block, the match block's backtracking frames). The
 * unit tests read it to check that classifying allocates nothing in steady
 * state. Thread: the one using pc.
 */
size_t policy_classifier_allocs(const struct policy_classifier *pc);

/*
 * policy_classifier_cache_stats() sets *hits and *misses to the lookups of
 * pc's classification cache so far (texts too long to cache count as
 * neither). The unit tests read it. Thread: the one using pc.
 */
void policy_classifier_cache_stats(const struct policy_classifier *pc, uint64_t *hits,
                                   uint64_t *misses);

/*
 * policy_builtin_count() returns the number of built-in rules, and
 * policy_builtin_id() the id of built-in rule i (NULL when i is out of
 * range), in match order. Any thread.
 */
size_t policy_builtin_count(void);
const char *policy_builtin_id(size_t i);

#endif
